"""``mangostore serve``: the local HTTP API of a database (docs/api.md)."""

from __future__ import annotations

from pathlib import Path

import click

from mangostore.cli.common import (
    CommandError,
    Feature,
    existing_database,
    key_file_option,
    open_for,
    plain_option,
)

__all__ = ["serve"]

#: The schema version whose services every route uses (the knowledge graph's last).
API = Feature("the HTTP API", 16)
DEFAULT_PORT = 8766


@click.command("serve")
@existing_database
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to listen on (loopback)."
)
@click.option(
    "--port",
    default=DEFAULT_PORT,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on.",
)
@click.option(
    "--socket",
    "socket_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Listen on this unix socket (mode 0600) instead of --host and --port.",
)
@click.option(
    "--allow-remote",
    is_flag=True,
    help="Accept a --host other machines can reach (put a TLS proxy in front).",
)
@click.option(
    "--max-body-mb",
    default=2,
    show_default=True,
    type=click.IntRange(1, 1024),
    help="Largest request body accepted.",
)
@click.option(
    "--rate",
    default=20.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Requests a second each session may make (bursts of ten times as many).",
)
@click.option("--log-level", default="info", show_default=True, help="uvicorn's log level.")
@plain_option
@key_file_option
def serve(
    path: Path,
    host: str,
    port: int,
    socket_path: Path | None,
    allow_remote: bool,
    max_body_mb: int,
    rate: float,
    log_level: str,
    plain: bool,
    key_file: Path | None,
) -> None:
    """Serve the HTTP API of the database at PATH until interrupted: bearer session
    tokens (POST /v1/login), permissions, problem details; OpenAPI at /docs and
    /openapi.json. Listens on 127.0.0.1 or a unix socket; any other address needs
    --allow-remote. See docs/api.md."""
    try:
        from mangostore.api import ApiSettings
        from mangostore.api.run import check_host
        from mangostore.api.run import serve as run
    except ImportError:
        raise CommandError(
            "the HTTP API needs the server extra: pip install 'mangostore[server]'"
        ) from None
    if socket_path is not None and (host != "127.0.0.1" or port != DEFAULT_PORT):
        raise click.UsageError("--socket replaces --host and --port: give one or the other")
    if socket_path is None:
        check_host(host, allow_remote=allow_remote)
        if allow_remote:
            click.echo(
                f"warning: serving on {host} without TLS; put a TLS proxy in front", err=True
            )
    settings = ApiSettings(
        max_body_bytes=max_body_mb * 1024 * 1024,
        session_rate=rate,
        session_burst=max(int(rate * 10), 1),
    )
    with open_for(path, plain=plain, key_file=key_file, feature=API) as db:
        run(
            db,
            host=host,
            port=port,
            socket_path=socket_path,
            settings=settings,
            log_level=log_level,
        )
