"""The ``otayori`` command line (Typer). Every command has ``--help``; errors are one line and a non-zero exit.

Commands (DESIGN.md "Outside contract" -> CLI): ``run``, ``demo``, ``db upgrade``, ``campaign add|list``,
``broadcast FILE.md``, ``consents export``, ``audit``, ``deliveries show``. Migrations run before any event loop.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from core.settings import ConfigError, Settings, load_settings

app = typer.Typer(help="otayori (お便り): chat-first newsletters with recorded consent.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
campaign_app = typer.Typer(help="Campaign codes for attribution (seminars, flyers).", no_args_is_help=True)
consents_app = typer.Typer(help="The consent ledger.", no_args_is_help=True)
deliveries_app = typer.Typer(help="Deliveries of an issue.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(campaign_app, name="campaign")
app.add_typer(consents_app, name="consents")
app.add_typer(deliveries_app, name="deliveries")

console = Console()
err = Console(stderr=True)

NO_CHANNEL_HELP = (
    "no channel is configured: set OTAYORI_TELEGRAM_BOT_TOKEN (Telegram), or OTAYORI_LINE_CHANNEL_SECRET and "
    "OTAYORI_LINE_CHANNEL_ACCESS_TOKEN (LINE), in .env (see .env.example and the README); "
    "`make demo` rehearses everything locally"
)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` (one line) to stderr and exit with ``code``."""
    typer.echo(f"error: {' '.join(message.split())}", err=True)  # always exactly one line
    raise typer.Exit(code)


def settings_or_exit(**overrides: Any) -> Settings:
    """Load settings; on a bad setting print one line naming it and exit 2."""
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        fail(str(exc), 2)


def existing_database_or_exit(settings: Settings) -> None:
    """For commands that only read: refuse a SQLite file that does not exist (a mistyped path must not look like an
    empty, clean ledger), then bring its schema up to date."""
    path = settings.sqlite_path()
    if path is not None and not path.exists():
        fail(f"no database at {path} (check OTAYORI_DATABASE_URL, or create it with `otayori db upgrade`)", 1)
    migrate_or_exit(settings)


def migrate_or_exit(settings: Settings) -> None:
    """Upgrade the database before any event loop starts; one line and exit 1 when it cannot be reached."""
    from storage.migrate import upgrade

    try:
        upgrade(settings.database_url)
    except Exception as exc:  # the driver's error, reported in one line
        fail(f"database upgrade failed ({settings.database_url.split('://')[0]}): {type(exc).__name__}: {exc}".splitlines()[0])


def run_async(factory: Callable[[], Any]) -> Any:
    """Run a coroutine factory in a fresh event loop; turn our known errors into one-line exits."""
    try:
        return asyncio.run(factory())
    except ConfigError as exc:
        fail(str(exc), 2)


# ---- serving -----------------------------------------------------------------------------------------------------

@app.command()
def run() -> None:
    """Serve: the web app (webhooks, privacy page), Telegram polling and the background dispatcher, with `.env`."""
    settings = settings_or_exit()
    if not settings.any_channel_enabled:
        fail(NO_CHANNEL_HELP, 2)
    try:
        settings.check_for_serving()
    except ConfigError as exc:
        fail(str(exc), 2)
    if settings.telegram_enabled and settings.telegram_mode == "webhook":
        fail("OTAYORI_TELEGRAM_MODE: webhook mode is not available yet; use polling (the default)", 2)
    migrate_or_exit(settings)
    from bots.app import serve

    try:
        run_async(lambda: serve(settings))
    except KeyboardInterrupt:
        pass


@app.command()
def demo(
    directory: Path = typer.Option(Path("var/demo"), help="Working directory (wiped and recreated)."),
    attendees: int = typer.Option(30, min=4, max=500, help="Seminar attendees (about half on each platform)."),
) -> None:
    """Rehearse a seminar end to end on local emulators (ignores .env) and check what the emulators received."""
    from bots.demo import run_demo

    code = run_demo(directory, attendees=attendees)
    raise typer.Exit(code)


# ---- database ----------------------------------------------------------------------------------------------------

@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the migrations that ship with otayori to OTAYORI_DATABASE_URL."""
    settings = settings_or_exit()
    migrate_or_exit(settings)
    console.print("database is up to date", highlight=False)


# ---- campaigns ---------------------------------------------------------------------------------------------------

@campaign_app.command("add")
def campaign_add(
    code: str = typer.Argument(..., help="1-64 characters of A-Z a-z 0-9 _ - (the Telegram deep-link alphabet)."),
    label: str = typer.Option("", "--label", help="Human label, e.g. '12月 東京セミナー'."),
    date: str | None = typer.Option(None, "--date", help="Event date, e.g. 2026-12-05."),
) -> None:
    """Register a campaign code."""
    from core.campaigns import CampaignError, add_campaign
    from storage.database import Database

    if date is not None:
        import datetime as _dt

        try:
            date = _dt.date.fromisoformat(date).isoformat()
        except ValueError:
            fail(f"--date must be a date like 2026-12-05 (got {date!r})", 2)
    settings = settings_or_exit()
    migrate_or_exit(settings)

    async def work() -> None:
        db = Database(settings.database_url)
        try:
            campaign = await add_campaign(db, code, label, date)
        except CampaignError as exc:
            fail(str(exc), 2)
        finally:
            await db.dispose()
        console.print(f"campaign {campaign.code} added", markup=False, highlight=False)

    run_async(work)


@campaign_app.command("list")
def campaign_list() -> None:
    """List campaign codes."""
    from core.campaigns import list_campaigns
    from storage.database import Database

    settings = settings_or_exit()
    existing_database_or_exit(settings)

    async def work() -> None:
        db = Database(settings.database_url)
        try:
            rows = await list_campaigns(db)
        finally:
            await db.dispose()
        table = Table("code", "label", "date")
        for row in rows:
            table.add_row(row.code, row.label, row.event_date or "")
        console.print(table)

    run_async(work)


# ---- broadcast ---------------------------------------------------------------------------------------------------

@app.command()
def broadcast(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="Markdown issue; first heading = title."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Create an issue from FILE.md and send it to every consented subscriber; prints the issue id."""
    from core.broadcast import IssueFileError, parse_issue_markdown

    settings = settings_or_exit()
    if not settings.any_channel_enabled:
        fail(NO_CHANNEL_HELP, 2)
    try:
        settings.check_for_serving()
    except ConfigError as exc:
        fail(str(exc), 2)
    try:
        draft = parse_issue_markdown(file.read_text(encoding="utf-8"))
    except (IssueFileError, UnicodeDecodeError) as exc:
        fail(f"{file}: {exc}", 2)
    migrate_or_exit(settings)
    from bots.broadcasting import broadcast_issue

    def confirm(counts: dict[str, int], line_quota: int | None) -> bool:
        table = Table("channel", "recipients", "note", title=f"「{draft.title}」")
        for channel, count in counts.items():
            note = ""
            if channel == "line" and line_quota is not None:
                note = f"LINE quota left this month: {line_quota}"
                if count > line_quota:
                    note += f" — {count - line_quota} will be deferred"
            table.add_row(channel, str(count), note)
        console.print(table)
        if yes:
            return True
        return typer.confirm("send now?", default=False)

    result = run_async(lambda: broadcast_issue(settings, draft, confirm=confirm, out=console))
    if result is None:
        err.print("cancelled: nothing was sent")
        raise typer.Exit(1)
    print(result.issue_id)


# ---- ledger ------------------------------------------------------------------------------------------------------

@consents_app.command("export")
def consents_export(
    fmt: str = typer.Option("jsonl", "--format", help="jsonl or csv."),
    out: Path | None = typer.Option(None, "--out", help="Write to this file instead of stdout."),
) -> None:
    """Export the consent ledger: one record per event (fields in the README)."""
    from core.audit import export_consents
    from storage.database import Database

    if fmt not in ("jsonl", "csv"):
        fail("--format must be jsonl or csv", 2)
    settings = settings_or_exit()
    existing_database_or_exit(settings)

    async def work() -> int:
        db = Database(settings.database_url)
        try:
            if out is None:
                # The export is a record of consent: UTF-8 whatever the locale (a cp932 or C-locale stdout cannot
                # encode every name and emoji, and would stop mid-file with a traceback).
                reconfigure = getattr(sys.stdout, "reconfigure", None)
                if reconfigure is not None:
                    reconfigure(encoding="utf-8")
                return await export_consents(db, sys.stdout, fmt)
            with out.open("w", encoding="utf-8", newline="") as handle:
                return await export_consents(db, handle, fmt)
        finally:
            await db.dispose()

    count = run_async(work)
    if out is not None:
        err.print(f"{count} records written to {out}", markup=False, highlight=False)


@app.command()
def audit() -> None:
    """Recompute the ledger's hash chain and check every attempted delivery had consent; non-zero on a violation."""
    from core.audit import audit as run_audit
    from storage.database import Database

    settings = settings_or_exit()
    existing_database_or_exit(settings)

    async def work():  # type: ignore[no-untyped-def]
        db = Database(settings.database_url)
        try:
            return await run_audit(db)
        finally:
            await db.dispose()

    report = run_async(work)
    for problem in report.chain_problems:
        console.print(f"ledger event {problem.event_id}: {problem.problem}", markup=False, highlight=False)
    for v in report.delivery_violations:
        console.print(
            f"delivery {v.delivery_id} (issue {v.issue_id}, endpoint {v.endpoint_id}, {v.channel}): "
            f"latest consent at first attempt was {v.latest_action or 'none'}",
            markup=False, highlight=False,
        )
    console.print(f"{report.events} ledger events, {report.deliveries} attempted deliveries checked: "
                  f"{'OK' if report.ok else 'VIOLATIONS FOUND'}", markup=False, highlight=False)
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def withdraw(
    address: str = typer.Argument(..., help="Email address, LINE user id or Telegram chat id."),
    channel: str | None = typer.Option(None, "--channel", help="email, line or telegram (default: look everywhere)."),
    via: str = typer.Option(..., "--via", help="How the opt-out arrived: phone, mail or in_person."),
    note: str | None = typer.Option(None, "--note", help="Free text kept in the evidence."),
) -> None:
    """Record an opt-out that arrived another way (phone, reply mail, in person); effective at once."""
    from core.double_opt_in import AddressError
    from core.optout import OptOuts
    from storage.database import Database

    if channel not in (None, "email", "line", "telegram"):
        fail("--channel must be email, line or telegram", 2)
    if via not in ("phone", "mail", "in_person"):
        fail("--via must be phone, mail or in_person", 2)
    if not address.strip():
        fail("ADDRESS is empty", 2)
    settings = settings_or_exit()
    migrate_or_exit(settings)

    async def work():  # type: ignore[no-untyped-def]
        db = Database(settings.database_url)
        try:
            return await OptOuts(db, settings).withdraw_by_admin(address, channel, via, note)
        finally:
            await db.dispose()

    try:
        withdrawn, endpoints = run_async(work)
    except AddressError as exc:
        fail(f"not a valid email address: {exc}", 2)
    except LookupError as exc:
        fail(str(exc), 1)
    for endpoint in endpoints:
        console.print(f"{endpoint.channel} {endpoint.address}: {endpoint.state}", markup=False, highlight=False)
    console.print(f"{withdrawn} endpoint(s) withdrawn", markup=False, highlight=False)


@deliveries_app.command("show")
def deliveries_show(issue_id: int = typer.Argument(..., help="The issue id printed by `otayori broadcast`.")) -> None:
    """Counts of an issue's deliveries by channel and status, and the reasons for failures."""
    from core.reports import delivery_report
    from storage.database import Database

    settings = settings_or_exit()
    existing_database_or_exit(settings)

    async def work():  # type: ignore[no-untyped-def]
        db = Database(settings.database_url)
        try:
            return await delivery_report(db, issue_id)
        finally:
            await db.dispose()

    report = run_async(work)
    if report is None:
        fail(f"no issue {issue_id}", 1)
    table = Table("channel", "status", "count", title=f"issue {issue_id}: {report.title} ({report.status})")
    for (channel, status), count in sorted(report.counts.items()):
        table.add_row(channel, status, str(count))
    console.print(table)
    for (channel, reason), count in sorted(report.failure_reasons.items()):
        console.print(f"{channel}: {count} × {reason}", markup=False, highlight=False)


def _requeue_and_send(issue_id: int, status: str, channel: str | None) -> None:
    """Re-queue an issue's deferred/uncertain deliveries and send them now; prints counts."""
    from bots.app import open_runtime
    from core.broadcast import requeue
    from core.reports import delivery_report
    from storage.models import DeliveryStatus

    settings = settings_or_exit()
    try:
        settings.check_for_serving()
    except ConfigError as exc:
        fail(str(exc), 2)
    migrate_or_exit(settings)

    async def work():  # type: ignore[no-untyped-def]
        async with open_runtime(settings) as runtime:
            count = await requeue(runtime.db, issue_id, DeliveryStatus(status), channel=channel)
            if count:
                await runtime.dispatcher().dispatch(issue_id)
            return count, await delivery_report(runtime.db, issue_id)

    try:
        count, report = run_async(work)
    except LookupError as exc:
        fail(str(exc), 1)
    console.print(f"{count} {status} deliveries re-queued", markup=False, highlight=False)
    if report is not None:
        console.print(", ".join(f"{k} {v}" for k, v in sorted(report.by_status().items())), markup=False,
                      highlight=False)


@deliveries_app.command("resume")
def deliveries_resume(
    issue_id: int = typer.Argument(..., help="The issue id."),
    channel: str | None = typer.Option(None, "--channel", help="Only this channel (line, telegram, email)."),
) -> None:
    """Send an issue's deferred deliveries (e.g. after the LINE plan or month changed, or the relay is back)."""
    _requeue_and_send(issue_id, "deferred", channel)


@deliveries_app.command("retry-uncertain")
def deliveries_retry_uncertain(
    issue_id: int = typer.Argument(..., help="The issue id."),
    channel: str | None = typer.Option(None, "--channel", help="Only this channel (telegram, email)."),
) -> None:
    """Re-send deliveries that were in flight at a crash (Telegram/email cannot tell whether they arrived):
    only when the author asks, because some readers may get the issue twice."""
    _requeue_and_send(issue_id, "uncertain", channel)


def _click_exceptions():  # type: ignore[no-untyped-def]
    """Click's exception module: Typer >= 0.22 vendors Click as ``typer._click``, older Typer uses Click itself."""
    try:
        from typer._click import exceptions
    except ImportError:  # pragma: no cover - depends on the installed Typer
        from click import exceptions  # type: ignore[no-redef]
    return exceptions


def main() -> None:
    """Console-script entry point: every error is one line (``error: …``); usage errors exit 2, others 1."""
    exceptions = _click_exceptions()
    try:
        code = app(standalone_mode=False)
    except exceptions.UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            sys.exit(2)  # Typer has printed the group's help already
        where = f" (see: {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
        typer.echo(f"error: {' '.join(exc.format_message().split())}{where}", err=True)
        sys.exit(2)
    except exceptions.ClickException as exc:
        typer.echo(f"error: {' '.join(exc.format_message().split())}", err=True)
        sys.exit(exc.exit_code)
    except (typer.Abort, EOFError):
        typer.echo("error: aborted (no answer): nothing was sent", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("error: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # the one-line rule holds for surprises too (the type says where to look)
        first = (str(exc).strip().splitlines() or [""])[0]
        typer.echo(f"error: {type(exc).__name__}: {first}"[:500], err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
