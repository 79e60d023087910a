"""``txguard models``: list, show, promote, rollback, verify and diff registry versions."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from txguard.model.registry import Registry

models_app = typer.Typer(help="The signed model registry.", no_args_is_help=True)

RegistryOpt = Annotated[
    Path | None, typer.Option(help="registry directory (default: $TXGUARD_HOME/registry)")
]


def _registry(path: Path | None) -> Registry:
    from txguard.cli._common import settings
    from txguard.model.registry import Registry

    s = settings()
    return Registry(path or s.registry_dir, s.signing_key.get_secret_value())


def _json(obj: Any) -> str:
    import orjson

    return orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY).decode()


def _num(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else "-"


@models_app.command("list")
def list_(registry: RegistryOpt = None) -> None:
    """Every version with its stage and headline test metrics."""
    reg = _registry(registry)
    infos = reg.list()
    if not infos:
        typer.echo(f"no model versions in {reg.root}")
        return
    typer.echo(f"{'version':<30}{'stage':<12}{'AUC':>8}{'AP':>8}{'CP@100':>8}  policy")
    for i in infos:
        m = i.metrics
        typer.echo(
            f"{i.version:<30}{i.stage:<12}{_num(m.get('auc_roc')):>8}"
            f"{_num(m.get('average_precision')):>8}{_num(m.get('cp_at_100')):>8}  "
            f"{i.policy_version}"
        )


@models_app.command("show")
def show(version: str, registry: RegistryOpt = None) -> None:
    """Manifest, metadata, metrics and policy of a version (verifies it first)."""
    typer.echo(_json(_registry(registry).show(version)))


@models_app.command("verify")
def verify(
    version: Annotated[str | None, typer.Argument(help="a version (default: every one)")] = None,
    registry: RegistryOpt = None,
) -> None:
    """Check signatures and file hashes; exit 2 on the first version that does not verify."""
    reg = _registry(registry)
    versions = [version] if version else [i.version for i in reg.list()]
    for v in versions:
        manifest = reg.verify(v)
        typer.echo(f"{v}: OK (signature and {len(manifest['files'])} file hashes)")


@models_app.command("promote")
def promote(version: str, registry: RegistryOpt = None) -> None:
    """Make a version production (the previous one is archived)."""
    reg = _registry(registry)
    reg.promote(version)
    typer.echo(f"{version} is production")


@models_app.command("rollback")
def rollback(registry: RegistryOpt = None) -> None:
    """Put the previous production version back."""
    v = _registry(registry).rollback()
    typer.echo(f"rolled back: {v} is production")


@models_app.command("diff")
def diff(a: str, b: str, registry: RegistryOpt = None) -> None:
    """What differs between two versions (metrics, policy, metadata)."""
    reg = _registry(registry)
    reg.verify(a)
    reg.verify(b)
    typer.echo(_json(reg.diff(a, b)))


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
