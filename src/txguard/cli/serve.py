"""``txguard serve``: the scoring service (uvicorn + the FastAPI app)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve(  # noqa: PLR0917 - one Typer option per parameter
        host: Annotated[str | None, typer.Option(help="bind address [TXGUARD_HOST]")] = None,
        port: Annotated[int | None, typer.Option(help="port [TXGUARD_PORT, 8000]")] = None,
        workers: Annotated[
            int | None, typer.Option(help="worker processes (>1 needs Redis + PostgreSQL)")
        ] = None,
        home: Annotated[Path | None, typer.Option(help="data directory [TXGUARD_HOME]")] = None,
        rules: Annotated[Path | None, typer.Option(help="rules YAML [TXGUARD_RULES_PATH]")] = None,
        log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "warning",
    ) -> None:
        """Serve the scoring API (OpenAPI at /docs). Configuration: TXGUARD_* variables."""
        import uvicorn

        from txguard.domain.errors import ConfigurationError
        from txguard.settings import load_settings

        # the options become environment variables so every worker process sees them
        for name, value in (
            ("TXGUARD_HOST", host),
            ("TXGUARD_PORT", port),
            ("TXGUARD_WORKERS", workers),
            ("TXGUARD_HOME", home),
            ("TXGUARD_RULES_PATH", rules),
        ):
            if value is not None:
                os.environ[name] = str(value)
        settings = load_settings()
        if settings.workers > 1 and not (settings.redis_url and settings.database_url):
            raise ConfigurationError(
                "--workers > 1 needs shared state: set TXGUARD_REDIS_URL and TXGUARD_DATABASE_URL "
                "(in-process feature state and one SQLite hash chain belong to one process)"
            )
        if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            # one /metrics for all workers: each writes its values to files here (see
            # monitor.metrics); emptied at start, as prometheus_client requires
            metrics_dir = settings.home / "run" / f"prometheus-{os.getpid()}"
            shutil.rmtree(metrics_dir, ignore_errors=True)
            metrics_dir.mkdir(parents=True)
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        if settings.rules_path is not None and not settings.rules_path.exists():
            raise ConfigurationError(f"rules file not found: {settings.rules_path}")
        typer.echo(
            f"txguard serving on http://{settings.host}:{settings.port} "
            f"(docs: http://{settings.host}:{settings.port}/docs, workers: {settings.workers})",
            err=True,
        )
        uvicorn.run(
            "txguard.api.app:app_from_env",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            loop="uvloop",
            # uvicorn's httptools protocol, each answer in one write (see txguard.api.http)
            http="txguard.api.http:OneWriteHttpToolsProtocol",
            access_log=False,
            log_level=log_level,
            timeout_graceful_shutdown=10,
        )
