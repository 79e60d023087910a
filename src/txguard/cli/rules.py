"""``txguard rules``: check, sign and try out a rules file before it goes live."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

KEY_ENV_DEFAULT = "TXGUARD_RULES_SIGNING_KEY"


def _known_features(spec: Path | None, extra: list[str], no_spec: bool) -> list[str]:
    """Feature names a condition may use: the feature spec's (default spec unless told)."""
    import importlib

    names: list[str] = list(extra)
    if no_spec:
        return names
    try:
        mod: Any = importlib.import_module("txguard.features.spec")
    except ImportError:  # pragma: no cover - the feature package ships with txguard
        return names
    if spec is not None:
        names.extend(mod.FeatureSpec.from_yaml(spec).names)
    elif hasattr(mod, "default_spec"):
        names.extend(mod.default_spec().names)
    return names


def _key(key_env: str | None) -> str | None:
    import os

    from txguard.domain.errors import ConfigurationError

    if key_env is None:
        return None
    key = os.environ.get(key_env)
    if not key:
        raise ConfigurationError(f"environment variable {key_env} (the signing key) is not set")
    return key


def _load(path: Path, spec: Path | None, feature: list[str], no_spec: bool, key: str | None) -> Any:
    from txguard.domain.errors import ValidationError
    from txguard.rules.rules import RuleSet

    try:
        return RuleSet.load(
            path, known_features=_known_features(spec, feature, no_spec), signing_key=key
        )
    except ValidationError as e:
        for err in e.errors:  # one problem per line, like a compiler
            typer.echo(str(err), err=True)
        typer.echo(f"error: {len(e.errors)} problem(s) in {path}", err=True)
        raise typer.Exit(2) from None


SpecOpt = Annotated[
    Path | None, typer.Option("--spec", help="feature spec YAML (default: the built-in spec)")
]
FeatureOpt = Annotated[
    list[str] | None, typer.Option("--feature", help="an extra known feature name (repeatable)")
]
NoSpecOpt = Annotated[bool, typer.Option("--no-spec", help="know no features from a spec")]


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Rules and lists: check, sign, try on an event.", no_args_is_help=True)
    app.add_typer(group, name="rules")

    @group.command("check")
    def check(
        file: Annotated[Path, typer.Argument(help="rules YAML file")],
        spec: SpecOpt = None,
        feature: FeatureOpt = None,
        no_spec: NoSpecOpt = False,
        key_env: Annotated[
            str | None,
            typer.Option(help="verify signatures with the key in this environment variable"),
        ] = None,
    ) -> None:
        """Validate a rules file and its lists; print every problem as file:line: message."""
        rs = _load(file, spec, feature or [], no_spec, _key(key_env))
        typer.echo(f"ok: {file}: {rs.summary()}")
        for r in rs.rules:
            typer.echo(f"  rule {r.id:<32} {r.hit.effect:<13} line {r.line}")
        for lst in rs.lists.values():
            where = ", ".join(lst.fields) or "in_list() only"
            typer.echo(
                f"  list {lst.name:<32} {lst.kind.value:<13} {len(lst.values):>7,} on {where}"
            )

    @group.command("sign")
    def sign(
        file: Annotated[Path, typer.Argument(help="rules YAML file")],
        key_env: Annotated[
            str, typer.Option(help="environment variable holding the signing key")
        ] = KEY_ENV_DEFAULT,
        spec: SpecOpt = None,
        feature: FeatureOpt = None,
        no_spec: NoSpecOpt = False,
    ) -> None:
        """Write FILE.sig and a .sig for every list file it names (HMAC-SHA256, hex)."""
        from txguard.rules.signing import sign_file

        key = _key(key_env)
        assert key is not None
        rs = _load(file, spec, feature or [], no_spec, None)  # refuse to sign a broken file
        for p in rs.files:
            typer.echo(f"signed {p} -> {sign_file(p, key)}")

    @group.command("test")
    def test(  # noqa: PLR0917 - a Typer command: one parameter per option
        file: Annotated[Path, typer.Argument(help="rules YAML file")],
        event: Annotated[Path, typer.Option(help="a transaction event as JSON")],
        features: Annotated[Path | None, typer.Option(help="JSON object of feature values")] = None,
        spec: SpecOpt = None,
        feature: FeatureOpt = None,
        no_spec: NoSpecOpt = False,
    ) -> None:
        """Evaluate one event: print each hit and the combined outcome."""
        import orjson

        from txguard.domain.errors import FieldError, ValidationError
        from txguard.domain.events import parse_transaction

        rs = _load(file, spec, feature or [], no_spec, None)
        try:
            ev = parse_transaction(orjson.loads(event.read_bytes()))
            feats = orjson.loads(features.read_bytes()) if features else {}
        except (OSError, orjson.JSONDecodeError) as e:
            raise ValidationError([FieldError("event/features", str(e))]) from None
        if not isinstance(feats, dict) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in feats.values()
        ):
            raise ValidationError([FieldError("features", "expected an object of numbers")])
        outcome = rs.outcome(ev, {k: float(v) for k, v in feats.items()})
        for h in outcome.hits:
            mark = " (cancelled by allow)" if h in outcome.suppressed else ""
            typer.echo(
                f"hit {h.kind} {h.rule_id}: {h.effect} {h.score_delta:+.2f} {h.reason}{mark}"
            )
        forced = outcome.action.value if outcome.action else "none"
        typer.echo(
            f"outcome: forced={forced} score_delta={outcome.score_delta:+.3f} "
            f"allowed={str(outcome.allowed).lower()} ({len(outcome.hits)} hits)"
        )
