"""`personalign serve ...`: run the personalization service; manage its API keys."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from personalign.cli.app import app
from personalign.cli.common import allow_callable_option, console
from personalign.errors import ConfigError

if TYPE_CHECKING:
    from personalign.serve.service import ServeConfig

# the service's default (personalign.serve.middleware.MAX_INFLIGHT, not imported here: FastAPI loads lazily)
MAX_INFLIGHT = 64

serve_app = typer.Typer(
    help="Run the personalization HTTP service (FastAPI + uvicorn), or manage its API keys.",
    invoke_without_command=True,
)
keys_app = typer.Typer(help="Create, list and revoke API keys (stored as hashes in the service's database).")
serve_app.add_typer(keys_app, name="keys")
app.add_typer(serve_app, name="serve")

DB_HELP = "Database: a SQLite file path or sqlite:///FILE (default), or postgresql://user:pw@host/db."


@serve_app.callback()
def serve(
    ctx: typer.Context,
    model: Path = typer.Option(None, "--model", help="A saved model directory (save_pretrained)."),
    db: str = typer.Option("personalign-serve.db", "--db", help=DB_HELP),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (loopback by default)."),
    port: int = typer.Option(8000, help="TCP port."),
    policy: str | None = typer.Option(
        None, help="A bounds policy: a preset (rules, default, synthetic) or a policy file (.yaml/.toml)."
    ),
    admin_key: list[str] = typer.Option(
        None,
        "--admin-key",
        help="An admin API key accepted in addition to those in the database (repeatable; "
        "also read from PERSONALIGN_ADMIN_KEY).",
    ),
    workers: int = typer.Option(
        1, help="Worker processes (several need PostgreSQL, or share one SQLite file)."
    ),
    log_level: str = typer.Option("warning", help="uvicorn log level."),
    max_body_bytes: int = typer.Option(512 * 1024, help="Largest accepted request body (larger: 413)."),
    body_timeout: float = typer.Option(
        10.0,
        "--body-timeout",
        min=0.01,
        help="Seconds a request body may take to arrive (then 408, connection closed).",
    ),
    max_inflight: int = typer.Option(
        MAX_INFLIGHT,
        "--max-inflight",
        min=1,
        help="Requests one worker serves at once; beyond it the service answers 503 with Retry-After at once "
        "instead of queueing (/v1/health is always served).",
    ),
    group_commit: bool = typer.Option(
        True,
        "--group-commit/--no-group-commit",
        help="SQLite: store feedback from many requests in one commit (one fsync), each acknowledged only "
        "after its commit; off: one transaction per judgment.",
    ),
    follow_interval: float = typer.Option(
        1.0,
        "--follow-interval",
        min=0.0,
        help="Seconds between a worker's looks at the database for a model another worker's admin reload "
        "published (0: never follow).",
    ),
    allow_callable: list[str] = allow_callable_option(),
    model_root: Path = typer.Option(
        None,
        "--model-root",
        help="The admin reload loads models and policies only under this folder (default: the folder "
        "holding --model).",
    ),
) -> None:
    """Serve personalized scores, online feedback and active questions for every person over HTTP."""
    if ctx.invoked_subcommand is not None:
        return
    if model is None:
        raise typer.BadParameter("--model DIR is required to serve", param_hint="--model")
    import uvicorn

    from personalign.serve.app import ENV_CONFIG, ServeConfig, config_to_env, create_app

    keys = list(admin_key or [])
    if os.environ.get("PERSONALIGN_ADMIN_KEY"):
        keys.append(os.environ["PERSONALIGN_ADMIN_KEY"])
    cfg = ServeConfig(
        model_dir=str(model),
        db_url=db,
        policy=policy or None,
        admin_keys=keys,
        max_body_bytes=max_body_bytes,
        allow_callables=list(allow_callable),
        body_timeout_s=body_timeout,
        model_root=str(model_root) if model_root else None,
        max_inflight=max_inflight,
        group_commit=group_commit,
        follow_interval_s=follow_interval,
    )
    console.print(
        f"personalign serve: model {model}, database {db}, http://{host}:{port}/docs", highlight=False
    )
    if workers > 1:
        # the command line's model is published once, here; every worker (and any uvicorn restarts) starts
        # from what the database names, so a restarted worker runs the model a reload switched to
        publish_start(cfg)
        cfg.start_from_database = True
        os.environ[ENV_CONFIG] = config_to_env(cfg)
        uvicorn.run(
            "personalign.serve.app:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
        )
    else:
        uvicorn.run(create_app(cfg), host=host, port=port, log_level=log_level)


def publish_start(cfg: ServeConfig) -> int:
    """Publish the configured model as the one every worker serves (a start counts as a reload)."""
    from personalign.serve import db as sdb

    if not Path(cfg.model_dir).is_dir():  # said once here, not once by each worker
        raise ConfigError(f"model directory {cfg.model_dir} does not exist")
    with sdb.open_database(cfg.db_url) as engine, sdb.write_tx(engine) as conn:
        return sdb.publish_served(conn, str(Path(cfg.model_dir).resolve()), cfg.policy)


@keys_app.command("create")
def keys_create(
    db: str = typer.Option("personalign-serve.db", "--db", help=DB_HELP),
    person: str = typer.Option(None, "--person", help="The person the key is for (a person-scoped key)."),
    admin: bool = typer.Option(False, "--admin", help="Create an admin key instead."),
    label: str = typer.Option("", help="A note stored with the key."),
) -> None:
    """Create a key and print it once (only its hash is stored)."""
    from personalign.serve import auth
    from personalign.serve.db import open_database, write_tx

    if admin == (person is not None):
        raise ConfigError("give exactly one of --person ID or --admin")
    if person is not None:
        auth.check_person_id(person)  # before the database file is created
    with open_database(db) as engine, write_tx(engine) as conn:
        if person is not None:
            key, key_id = auth.create_person_key(conn, person, label)
        else:
            key, key_id = auth.create_key(conn, "admin", None, label)
    typer.echo(key)
    who = "admin" if admin else f"person {person}"
    typer.echo(f"key id {key_id} ({who}); store the key now, it is not shown again", err=True)


@keys_app.command("list")
def keys_list(db: str = typer.Option("personalign-serve.db", "--db", help=DB_HELP)) -> None:
    """List key ids, roles and persons (never the keys)."""
    from personalign.serve import auth
    from personalign.serve.db import open_database, read_tx

    with open_database(db) as engine, read_tx(engine) as conn:
        rows = auth.list_keys(conn)
    for r in rows:
        typer.echo(f"{r.key_id}\t{r.role}\t{r.person_id or '-'}\t{r.created_at}\t{r.label}")


@keys_app.command("revoke")
def keys_revoke(
    key_id: str = typer.Argument(..., help="The key id (the part after 'pa_')."),
    db: str = typer.Option("personalign-serve.db", "--db", help=DB_HELP),
) -> None:
    """Delete a key."""
    from personalign.serve import auth
    from personalign.serve.db import open_database, write_tx

    with open_database(db) as engine, write_tx(engine) as conn:
        revoked = auth.revoke_key(conn, key_id)
    if not revoked:
        raise ConfigError(f"no key with id {key_id!r}")
    typer.echo(f"revoked {key_id}")
