"""``txguard keys create|list|revoke``: manage API keys in the configured key store.

The plaintext key and its signing secret are printed once, by ``create``; nothing can show them
again. Revocation reaches running servers within ``TXGUARD_KEY_CACHE_TTL_SECONDS`` (5 s).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Option(help="who or what uses the key, e.g. 'checkout-service'")],
    role: Annotated[
        list[str],
        typer.Option("--role", "-r", help="scorer, analyst, auditor or admin; repeatable"),
    ],
    expires_in_days: Annotated[
        float | None, typer.Option(help="expire after this many days (default: never)")
    ] = None,
    require_signature: Annotated[
        bool, typer.Option(help="every request with this key must be signed")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Create a key; prints the key (and signing secret) ONCE."""
    from datetime import timedelta

    import orjson

    from txguard.cli._common import settings
    from txguard.domain.clock import SystemClock
    from txguard.domain.errors import FieldError, ValidationError
    from txguard.security.keys import parse_roles
    from txguard.security.keystore import open_key_store

    clock = SystemClock()
    expires_at = None
    if expires_in_days is not None:
        if expires_in_days <= 0:
            raise ValidationError([FieldError("expires_in_days", "must be > 0")])
        expires_at = clock.now() + timedelta(days=expires_in_days)
    store = open_key_store(settings(), clock=clock)
    key, secret, rec = store.create_key(
        name=name,
        roles=parse_roles(role),
        expires_at=expires_at,
        require_signature=require_signature,
    )
    if json_output:
        doc = {
            "key_id": rec.key_id,
            "key": key,
            "signing_secret": secret,
            "roles": sorted(r.value for r in rec.roles),
            "expires_at": rec.expires_at.isoformat() if rec.expires_at else None,
        }
        typer.echo(orjson.dumps(doc).decode())
        return
    typer.echo(f"key id:          {rec.key_id}")
    typer.echo(f"roles:           {', '.join(sorted(r.value for r in rec.roles))}")
    typer.echo(f"expires:         {rec.expires_at.isoformat() if rec.expires_at else 'never'}")
    typer.echo(f"api key:         {key}")
    if secret:
        typer.echo(f"signing secret:  {secret}")
    typer.echo("Store these now: they are not shown again.", err=True)


@keys_app.command("list")
def list_keys(
    json_output: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """List keys (ids, names, roles, state) — never the keys themselves."""
    import orjson

    from txguard.cli._common import settings
    from txguard.domain.clock import SystemClock
    from txguard.security.keystore import open_key_store

    clock = SystemClock()
    now = clock.now()
    rows: list[dict[str, Any]] = []
    for rec in open_key_store(settings(), clock=clock).list_keys():
        state = "active"
        if rec.revoked_at is not None:
            state = "revoked"
        elif not rec.active_at(now):
            state = "expired"
        rows.append(
            {
                "key_id": rec.key_id,
                "name": rec.name,
                "roles": sorted(r.value for r in rec.roles),
                "state": state,
                "signed": "required"
                if rec.require_signature
                else ("able" if rec.can_sign else "-"),
                "created_at": rec.created_at.isoformat(timespec="seconds"),
                "expires_at": rec.expires_at.isoformat(timespec="seconds")
                if rec.expires_at
                else None,
            }
        )
    if json_output:
        typer.echo(orjson.dumps(rows).decode())
        return
    if not rows:
        typer.echo("no keys")
        return
    for r in rows:
        typer.echo(
            f"{r['key_id']}  {r['state']:<8} {','.join(r['roles']):<24} signed={r['signed']:<8} "
            f"created={r['created_at']} expires={r['expires_at'] or 'never'}  {r['name']}"
        )


@keys_app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="the key id, e.g. txg_3f9a0c1b")]) -> None:
    """Revoke a key (servers stop accepting it within the key cache TTL)."""
    from txguard.cli._common import settings
    from txguard.domain.clock import SystemClock
    from txguard.security.keystore import open_key_store

    s = settings()
    rec = open_key_store(s, clock=SystemClock()).revoke_key(key_id.strip())
    assert rec.revoked_at is not None
    typer.echo(
        f"revoked {rec.key_id} at {rec.revoked_at.isoformat(timespec='seconds')}; servers "
        f"refuse it within {s.key_cache_ttl_seconds:g} s"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
