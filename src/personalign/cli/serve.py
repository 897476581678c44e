"""`personalign serve ...`: run the personalization service; manage its API keys."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from personalign.cli import app
from personalign.cli._common import console

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
    policy: Path = typer.Option(None, help="A bounds policy file (universal constraints, trust region)."),
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
        policy=str(policy) if policy else None,
        admin_keys=keys,
        max_body_bytes=max_body_bytes,
    )
    console.print(
        f"personalign serve: model {model}, database {db}, http://{host}:{port}/docs", highlight=False
    )
    if workers > 1:
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


@keys_app.command("create")
def keys_create(
    db: str = typer.Option("personalign-serve.db", "--db", help=DB_HELP),
    person: str = typer.Option(None, "--person", help="The person the key is for (a person-scoped key)."),
    admin: bool = typer.Option(False, "--admin", help="Create an admin key instead."),
    label: str = typer.Option("", help="A note stored with the key."),
) -> None:
    """Create a key and print it once (only its hash is stored)."""
    from personalign.errors import ConfigError
    from personalign.serve import db as sdb
    from personalign.serve.auth import create_key
    from personalign.serve.schemas import PERSON_ID_PATTERN

    if admin == (person is not None):
        raise ConfigError("give exactly one of --person ID or --admin")
    if person is not None and not PERSON_ID_PATTERN.fullmatch(person):
        raise ConfigError(f"person id {person!r}: expected 1-128 characters of A-Z a-z 0-9 _ . : @ -")
    engine = sdb.make_engine(db)
    sdb.migrate(engine)
    with sdb.write_tx(engine) as conn:
        if person is not None:
            sdb.ensure_person(conn, person)
        key, key_id = create_key(conn, "admin" if admin else "person", person, label)
    engine.dispose()
    typer.echo(key)
    who = "admin" if admin else f"person {person}"
    typer.echo(f"key id {key_id} ({who}); store the key now, it is not shown again", err=True)


@keys_app.command("list")
def keys_list(db: str = typer.Option("personalign-serve.db", "--db", help=DB_HELP)) -> None:
    """List key ids, roles and persons (never the keys)."""
    from sqlalchemy import select

    from personalign.serve import db as sdb

    engine = sdb.make_engine(db)
    sdb.migrate(engine)
    k = sdb.api_keys
    with sdb.read_tx(engine) as conn:
        rows = conn.execute(select(k.c.key_id, k.c.role, k.c.person_id, k.c.label, k.c.created_at)).all()
    engine.dispose()
    for r in rows:
        typer.echo(f"{r.key_id}\t{r.role}\t{r.person_id or '-'}\t{r.created_at}\t{r.label}")


@keys_app.command("revoke")
def keys_revoke(
    key_id: str = typer.Argument(..., help="The key id (the part after 'pa_')."),
    db: str = typer.Option("personalign-serve.db", "--db", help=DB_HELP),
) -> None:
    """Delete a key."""
    from personalign.errors import ConfigError
    from personalign.serve import db as sdb

    engine = sdb.make_engine(db)
    sdb.migrate(engine)
    with sdb.write_tx(engine) as conn:
        n = conn.execute(sdb.api_keys.delete().where(sdb.api_keys.c.key_id == key_id)).rowcount
    engine.dispose()
    if not n:
        raise ConfigError(f"no key with id {key_id!r}")
    typer.echo(f"revoked {key_id}")
