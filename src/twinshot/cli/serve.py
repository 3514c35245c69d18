"""``twinshot serve``: the door-entry service (HTTP API and web pages) over a gallery;
``twinshot keys``: make and remove its API keys.

Keys come from a keys file (``--keys``, hashed at rest; see
:mod:`twinshot.service.keys`) and/or the environment: ``TWINSHOT_ADMIN_KEY`` and
``TWINSHOT_READ_KEY`` (each may hold several keys separated by commas).
"""

from __future__ import annotations

import json
import os
from typing import Optional

import typer

#: Environment variables read by ``twinshot serve`` (plain-text keys, comma-separated).
ENV_READ_KEY = "TWINSHOT_READ_KEY"
ENV_ADMIN_KEY = "TWINSHOT_ADMIN_KEY"


def serve(
    gallery: str = typer.Argument(..., help="The gallery file to serve (create it with `twinshot gallery create`)."),
    model: Optional[str] = typer.Option(None, "--model", help="The model (default: the one stored with the gallery; same fingerprint required)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface; put TLS in front)."),
    port: int = typer.Option(8000, "--port", help="Port to listen on (0: a free one)."),
    keys: Optional[str] = typer.Option(None, "--keys", help=f"API keys file (`twinshot keys add`); also ${ENV_ADMIN_KEY} / ${ENV_READ_KEY}."),
    audit_log: Optional[str] = typer.Option(None, "--audit-log", help="Audit log (JSON lines) of enroll/delete; default GALLERY.audit.log."),
    max_body_mb: float = typer.Option(10.0, "--max-body-mb", help="Largest request body, in MiB."),
    max_pixels: int = typer.Option(25_000_000, "--max-pixels", help="Largest image, in pixels (checked before decoding)."),
    max_images: int = typer.Option(8, "--max-images", help="Most images in one request."),
    workers: int = typer.Option(min(4, os.cpu_count() or 1), "--workers", help="Threads decoding uploaded images."),
    max_batch: int = typer.Option(64, "--max-batch", help="Most identify queries embedded and searched together."),
    torch_threads: int = typer.Option(max(1, (os.cpu_count() or 2) // 2), "--torch-threads", help="torch's threads for inference (default: half the CPUs)."),
    inference: str = typer.Option("auto", "--inference", help="Embed with 'torch', 'onnx' (ONNX Runtime) or 'auto' (ONNX Runtime when installed)."),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn's log level: critical, error, warning, info, debug."),
    read_only: bool = typer.Option(False, "--read-only", help="Serve the gallery read-only: enroll and delete answer 503."),
    search: str = typer.Option("auto", "--search", help="'memory' (load the rows), 'database' (PostgreSQL/Milvus find the candidates: galleries bigger than memory) or 'auto' (database above 2 GiB of vectors where the store and head allow it)."),
) -> None:
    """Serve GALLERY over HTTP: the JSON API (/v1/...), the door page (/door) and the
    admin page (/admin), with API keys, request limits and an audit log."""
    from twinshot.service import KeyRing, Limits, ServiceConfig, create_app, run
    from twinshot.service.app import bind

    ring = KeyRing.from_file(keys) if keys else KeyRing()
    ring = ring + KeyRing.from_secrets(
        read=_split(os.environ.get(ENV_READ_KEY, "")), admin=_split(os.environ.get(ENV_ADMIN_KEY, ""))
    )
    config = ServiceConfig(
        gallery=gallery,
        model=model,
        limits=Limits(max_body_bytes=Limits.body_bytes(max_body_mb), max_pixels=max_pixels, max_images=max_images),
        audit_log=audit_log,
        decode_workers=workers,
        max_batch=max_batch,
        torch_threads=torch_threads,
        inference=inference,
        readonly=read_only,
        search=search,
    )
    sock = bind(host, port)  # a bad or busy port is refused before the gallery is opened
    try:
        app = create_app(config, ring)
    except BaseException:
        sock.close()
        raise
    url_host = f"[{host}]" if ":" in host else host
    url = f"http://{url_host}:{sock.getsockname()[1]}"

    from twinshot.gallery.stores import redact

    shown = redact(gallery)  # a store URI's password is never printed

    def ready() -> None:
        typer.echo(f"twinshot: serving {shown} at {url}  (door page {url}/door, admin page {url}/admin, API docs {url}/docs)", err=True)
        if app.state.engine.read_only_reason is not None:
            typer.echo(f"twinshot: {shown} is read-only here ({app.state.engine.read_only_reason}): enroll and delete will answer 503", err=True)
        if host not in ("127.0.0.1", "localhost", "::1"):
            typer.echo("twinshot: plain HTTP on a non-loopback address: put a TLS-terminating proxy in front", err=True)
        typer.echo(f"listening on {url}")

    run(app, sock, log_level=log_level, on_ready=ready)


def _split(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


keys_app = typer.Typer(help="API keys for `twinshot serve`: a keys file holding only their SHA-256 digests.", no_args_is_help=True)


@keys_app.command("add")
def keys_add(
    keys_file: str = typer.Argument(..., help="The keys file (created if missing, mode 0600)."),
    name: str = typer.Argument(..., help="The key's name: who, in the audit log (e.g. door-1, alice-admin)."),
    role: str = typer.Option("read", "--role", help="'read' (identify, verify, search) or 'admin' (also enroll, delete, list)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Make a new API key and print it. It is shown only this once; the file keeps its hash."""
    from twinshot.service.keys import add_key

    secret = add_key(keys_file, name, role)
    if as_json:
        typer.echo(json.dumps({"keys_file": keys_file, "name": name, "role": role, "key": secret}))
    else:
        typer.echo(secret)
        typer.echo(f"added {role} key {name!r} to {keys_file}; the key above is shown only once", err=True)


@keys_app.command("list")
def keys_list(
    keys_file: str = typer.Argument(..., help="The keys file."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """List the keys' names, roles and creation times (never the keys)."""
    from twinshot.service.keys import read_keys_file

    keys = [{"name": k.name, "role": k.role, "created": k.created} for k in read_keys_file(keys_file)]
    if as_json:
        typer.echo(json.dumps({"keys_file": keys_file, "keys": keys}))
        return
    for k in keys:
        typer.echo(f"{k['name']}\t{k['role']}\t{k['created']}")


@keys_app.command("remove")
def keys_remove(
    keys_file: str = typer.Argument(..., help="The keys file."),
    name: str = typer.Argument(..., help="The key to remove (takes effect when the service restarts)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Remove a key from the keys file."""
    from twinshot.service.keys import remove_key

    remove_key(keys_file, name)
    if as_json:
        typer.echo(json.dumps({"keys_file": keys_file, "removed": name}))
    else:
        typer.echo(f"removed key {name!r} from {keys_file}")


def _standalone() -> typer.Typer:
    """``serve`` and ``keys`` as one app, for ``python -m twinshot.cli.serve`` (used by the
    load benchmark)."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True)
    app.command("serve", help=serve.__doc__)(serve)
    app.add_typer(keys_app, name="keys")
    return app


if __name__ == "__main__":
    import sys

    from twinshot.errors import TwinshotError

    try:
        _standalone()(prog_name="twinshot")
    except TwinshotError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
