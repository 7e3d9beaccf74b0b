"""The ``otayori`` command line (Typer). Every command has ``--help``; errors are one line and a non-zero exit.

Commands (DESIGN.md "Outside contract" -> CLI): ``run``, ``demo``, ``db upgrade``, ``campaign add|list|show``, ``qr``,
``broadcast FILE.md [--topic --channels --at --test]``, ``issues list|show|cancel|send``, ``stats [--chart]``,
``admin-log``, ``consents export``, ``audit``, ``deliveries show|resume|retry-uncertain``, ``withdraw``. Migrations run
before any event loop.
"""

from __future__ import annotations

import asyncio
import errno
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from core.settings import ConfigError, Settings, load_settings

app = typer.Typer(help="otayori (お便り): chat-first newsletters with recorded consent.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
campaign_app = typer.Typer(help="Campaign codes for attribution (seminars, flyers).", no_args_is_help=True)
consents_app = typer.Typer(help="The consent ledger.", no_args_is_help=True)
deliveries_app = typer.Typer(help="Deliveries of an issue.", no_args_is_help=True)
issues_app = typer.Typer(help="Issues: list, show, cancel, send a stored draft.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(campaign_app, name="campaign")
app.add_typer(consents_app, name="consents")
app.add_typer(deliveries_app, name="deliveries")
app.add_typer(issues_app, name="issues")
line_app = typer.Typer(help="LINE account set-up (rich menu).", no_args_is_help=True)
app.add_typer(line_app, name="line")

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
    """Serve: the web app (webhooks, pages), Telegram polling or its webhook, and the background dispatcher, with `.env`.
    With no channel configured: the rehearsal sandbox at http://127.0.0.1:<port>/sandbox (emulators, SMTP sink)."""
    settings = settings_or_exit()
    if not settings.any_channel_enabled:
        _run_rehearsal(settings.http_port)
        return
    try:
        settings.check_for_serving()
    except ConfigError as exc:
        fail(str(exc), 2)
    migrate_or_exit(settings)
    from telegram.error import TelegramError

    from bots.app import serve

    try:
        run_async(lambda: serve(settings))
    except KeyboardInterrupt:
        pass
    except TelegramError as exc:  # e.g. setWebhook refused, or a revoked token: one line, not a traceback
        fail(f"Telegram refused to start: {exc.message}", 1)


def _run_rehearsal(port: int) -> None:
    """``run`` without credentials: the sandbox (bots/sandbox/rehearsal_run.py) on 127.0.0.1:``port``; exit 1 with
    one line when the port is taken."""
    from bots.sandbox.rehearsal_run import serve_rehearsal

    try:
        run_async(lambda: serve_rehearsal(port, announce=lambda line: console.print(line, markup=False,
                                                                                    highlight=False)))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            fail(f"the rehearsal sandbox cannot listen on 127.0.0.1:{port}: the port is in use "
                 "(set OTAYORI_HTTP_PORT)", 1)
        fail(f"the rehearsal sandbox stopped: {type(exc).__name__}: {exc}", 1)


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

        import unicodedata

        try:  # NFKC: full-width digits (２０２６-１２-０５) are how many Japanese keyboards type a date
            date = _dt.date.fromisoformat(unicodedata.normalize("NFKC", date).strip()).isoformat()
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
            _row(table, row.code, row.label, row.event_date or "")
        console.print(table)

    run_async(work)


@campaign_app.command("show")
def campaign_show(code: str = typer.Argument(..., help="The campaign code (case-insensitive).")) -> None:
    """One campaign: label, date, its landing page, and sign-ups and withdrawals per channel."""
    from core.campaigns import CampaignError, get_campaign
    from core.links import join_url
    from core.stats import CHANNELS, campaign_counts

    settings = settings_or_exit()
    existing_database_or_exit(settings)

    async def work(db: Any) -> tuple[Any, Any]:
        try:
            campaign = await get_campaign(db, code)
        except CampaignError as exc:
            fail(str(exc), 2)
        async with db.read() as session:
            return campaign, await campaign_counts(session)

    campaign, (signups, withdrawals) = _with_db(settings, work)
    for name, value in (("code", campaign.code), ("label", campaign.label), ("date", campaign.event_date or ""),
                        ("created", local_time(settings, campaign.created_at)),
                        ("landing page", join_url(settings.public_url, campaign.code))):
        console.print(f"{name}: {value}", markup=False, highlight=False, soft_wrap=True)
    table = Table("channel", "sign-ups", "withdrawals", title="sign-ups and withdrawals (all time)")
    for channel in CHANNELS:
        _row(table, channel, str(signups.get((campaign.code, channel), 0)),
             str(withdrawals.get((campaign.code, channel), 0)))
    console.print(table)


@app.command()
def qr(
    code: str = typer.Argument(..., help="A registered campaign code (otayori campaign add)."),
    out: Path = typer.Option(Path("qr"), "--out", file_okay=False, help="Directory for the files (created)."),
    poster: bool = typer.Option(True, "--poster/--no-poster", help="Also draw the A4 poster (PNG and PDF)."),
) -> None:
    """QR codes (SVG and PNG) for CODE's landing page, Telegram deep link and LINE links, and a printable A4 poster.

    The Telegram bot's username comes from getMe, the LINE basic id from OTAYORI_LINE_BASIC_ID or the bot info API;
    a channel that is not configured gets no code.
    """
    from bots.campaign_kit import write_campaign_kit
    from bots.fonts import FontMissing
    from core.campaigns import CampaignError

    settings = settings_or_exit()
    existing_database_or_exit(settings)
    try:
        kit = run_async(lambda: write_campaign_kit(settings, code, out, poster=poster))
    except CampaignError as exc:
        fail(str(exc), 2)
    except FontMissing as exc:
        fail(str(exc), 1)
    except OSError as exc:
        fail(f"--out {out}: {exc.strerror or exc}", 1)
    for note in kit.notes:
        err.print(f"note: {note}", markup=False, highlight=False)
    for written in kit.codes:
        console.print(f"{written.kind:13} {written.png.name}  {written.svg.name}  {written.url}", markup=False,
                      highlight=False, soft_wrap=True)
    for path in kit.poster:
        console.print(f"{'poster':13} {path.name}", markup=False, highlight=False)


@line_app.command("rich-menu")
def line_rich_menu() -> None:
    """Create the LINE rich menu (登録 / 解除 / 状態 / トピック, a picture in Noto Sans CJK JP), upload its image, set it
    as the default for every user, and delete the menus an earlier run made. Prints the new menu's id."""
    from linebot.v3.messaging import ApiException

    from bots.fonts import FontMissing
    from bots.line_rich_menu import install

    settings = settings_or_exit()
    try:
        done = run_async(lambda: install(settings))
    except FontMissing as exc:
        fail(str(exc), 1)
    except ApiException as exc:
        fail(f"LINE refused the rich menu: {exc.status} {(exc.body or exc.reason or '').strip()}"[:500], 1)
    except OSError as exc:
        fail(f"LINE API unreachable at {settings.line_api_url}: {exc}", 1)
    console.print(f"rich menu {done.rich_menu_id} is the default ({done.image_bytes} bytes PNG)", markup=False,
                  highlight=False)
    for old in done.replaced:
        console.print(f"deleted the earlier menu {old}", markup=False, highlight=False)


# ---- broadcast ---------------------------------------------------------------------------------------------------

def serving_settings_or_exit() -> Settings:
    """Settings for commands that send: a channel must be on and :meth:`Settings.check_for_serving` pass (exit 2).
    They receive no webhooks, so the webhook URL check is ``run``'s alone."""
    settings = settings_or_exit()
    if not settings.any_channel_enabled:
        fail(NO_CHANNEL_HELP, 2)
    try:
        settings.check_for_serving(receiving=False)
    except ConfigError as exc:
        fail(str(exc), 2)
    return settings


#: The setting that turns each channel on, for "not configured" errors.
CHANNEL_SETTINGS = {"telegram": "OTAYORI_TELEGRAM_BOT_TOKEN", "line": "OTAYORI_LINE_CHANNEL_SECRET and _ACCESS_TOKEN",
                    "email": "OTAYORI_SMTP_HOST"}


def topic_or_exit(settings: Settings, given: str | None) -> str | None:
    """``--topic``: a slug or label of OTAYORI_TOPICS, or ``all``/absent (None); exit 2 naming the choices."""
    from core.texts import ReasonError
    from core.topics import resolve_topic

    try:
        return resolve_topic(settings, given)
    except ReasonError as exc:
        fail(f"--topic: {exc}", 2)


def channels_or_exit(settings: Settings, given: str | None) -> list[str] | None:
    """``--channels line,email``: known and configured channels, in the given order (None when absent); exit 2."""
    from core import texts

    if given is None:
        return None
    chosen = list(dict.fromkeys(part.strip().lower() for part in given.split(",") if part.strip()))
    if not chosen:
        fail("--channels: name at least one of line, telegram, email", 2)
    for channel in chosen:
        if channel not in CHANNEL_SETTINGS:
            fail(f"--channels: {texts.text('unknown_channel', 'en', given=channel)}", 2)
        if channel not in settings.enabled_channels:
            fail(f"--channels: {texts.text('channel_off', 'en', channel=channel)} (set {CHANNEL_SETTINGS[channel]})", 2)
    return chosen


def schedule_or_exit(settings: Settings, at: str | None) -> Any:
    """``--at``: the aware UTC moment (:func:`core.schedule.parse_schedule` in OTAYORI_TIMEZONE), or None when
    absent; exit 2 with the reason for a past, malformed or too distant time."""
    from core.schedule import ScheduleError, parse_schedule
    from storage.types import utcnow

    if at is None:
        return None
    try:
        return parse_schedule(at, settings.zone, utcnow())
    except ScheduleError as exc:
        fail(f"--at: {exc}", 2)


#: Bytes read from an --image file at most: well above the 10 MB picture limit, so the limit's reason is what the
#: author reads, yet a wrong file (a video) is never read whole.
IMAGE_READ_LIMIT = 64 * 1024 * 1024


def picture_or_exit(path: Path | None) -> Any:
    """``--image FILE``: its bytes and guessed MIME type as a bots.broadcasting.Picture, or None when absent; exit 2
    for a file over :data:`IMAGE_READ_LIMIT` (the rules themselves are core.media's, checked before sending)."""
    import mimetypes

    from bots.broadcasting import Picture
    from core.media import too_large

    if path is None:
        return None
    size = path.stat().st_size
    if size > IMAGE_READ_LIMIT:
        fail(f"--image: {too_large(size)}", 2)
    return Picture(path.read_bytes(), mimetypes.guess_type(path.name)[0])


def local_time(settings: Settings, moment: Any) -> str:
    """``YYYY-MM-DD HH:MM`` in OTAYORI_TIMEZONE, or an empty string for None."""
    from core.schedule import format_local

    return "" if moment is None else format_local(moment, settings.zone)


@app.command()
def broadcast(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="Markdown issue; first heading = title."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    topic: str | None = typer.Option(None, "--topic", help="Only for subscribers of this topic (a slug or label of "
                                     "OTAYORI_TOPICS; people who chose no topic get every topic). Default: all."),
    channels: str | None = typer.Option(None, "--channels", help="Comma list of line, telegram, email. "
                                        "Default: every configured channel."),
    at: str | None = typer.Option(None, "--at", help='Schedule instead of sending now: "2026-12-01 09:00" '
                                  "(OTAYORI_TIMEZONE) or +30m / +2h / +45s. `otayori run` sends it when due."),
    test: bool = typer.Option(False, "--test", help="Send only to the admins' own subscribed endpoints "
                              "(OTAYORI_TELEGRAM_ADMIN_IDS, OTAYORI_LINE_ADMIN_USER_IDS, and their email); the "
                              "issue is kept as a draft."),
    image: Path | None = typer.Option(None, "--image", exists=True, dir_okay=False, readable=True,
                                      help="A picture (JPEG or PNG, at most 10 MB) sent with the issue as its "
                                      "caption: Telegram photo, LINE image message (needs an https:// "
                                      "OTAYORI_PUBLIC_URL), inline in the email."),
) -> None:
    """Create an issue from FILE.md and send it (or schedule it, or test it); prints the issue id."""
    from core.broadcast import IssueFileError, parse_issue_markdown
    from core.media import MediaError

    if test and at is not None:
        fail("--test and --at cannot be combined: a test is sent at once", 2)
    settings = serving_settings_or_exit()
    try:
        draft = parse_issue_markdown(file.read_text(encoding="utf-8"))
    except (IssueFileError, UnicodeDecodeError) as exc:
        fail(f"{file}: {exc}", 2)
    slug = topic_or_exit(settings, topic)
    chosen = channels_or_exit(settings, channels)
    if test and not (settings.telegram_admin_ids or settings.line_admin_user_ids):
        fail("--test sends to the admins: set OTAYORI_TELEGRAM_ADMIN_IDS or OTAYORI_LINE_ADMIN_USER_IDS", 2)
    when = schedule_or_exit(settings, at)
    picture = picture_or_exit(image)
    migrate_or_exit(settings)
    from bots.broadcasting import broadcast_issue, cli_actor
    from core.issues import IssueStateError

    label = settings.topic_labels.get(slug, "") if slug else "all topics"
    question = "send a test to the admins now?" if test else "send now?"
    if when is not None:
        question = f"schedule for {local_time(settings, when)} ({settings.timezone})?"

    def confirm(counts: dict[str, int], line_quota: int | None) -> bool:
        console.print("test: only the admins' own endpoints" if test else f"topic: {label}", markup=False,
                      highlight=False)
        table = Table("channel", "recipients", "note", title=Text(f"「{draft.title}」"))
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
        return typer.confirm(question, default=False)

    if when is not None:
        try:
            issue_id = run_async(lambda: _schedule_file(settings, draft, when, slug, chosen, confirm, cli_actor(),
                                                        picture))
        except MediaError as exc:
            fail(f"--image: {exc}", 2)
        if issue_id is None:
            err.print("cancelled: nothing was scheduled")
            raise typer.Exit(1)
        console.print(f"scheduled for {local_time(settings, when)} ({settings.timezone}); `otayori run` sends it "
                      "then", markup=False, highlight=False)
        print(issue_id)
        return
    try:
        outcome = run_async(lambda: broadcast_issue(settings, draft, confirm=confirm, out=console, topic=slug,
                                                    channels=chosen, test=test, picture=picture))
    except IssueStateError as exc:
        fail(str(exc), 1)
    except MediaError as exc:
        fail(f"--image: {exc}", 2)
    if outcome is None:
        err.print("cancelled: nothing was sent")
        raise typer.Exit(1)
    if test:
        console.print(f"test sent as issue {outcome[1].issue_id}; the draft is issue {outcome[0]} "
                      f"(send it with `otayori issues send {outcome[0]}`)", markup=False, highlight=False)
    print(outcome[0])


async def _schedule_file(settings: Settings, draft: Any, when: Any, topic: str | None, channels: list[str] | None,
                         confirm: Callable[[dict[str, int], int | None], bool], actor: Any,
                         picture: Any = None) -> int | None:
    """Preview, confirm, store and schedule an issue file (with ``picture``, a bots.broadcasting.Picture, checked
    first); the issue id, or None when not confirmed. Raises core.media.MediaError."""
    from core.broadcast import create_issue, recipient_counts
    from core.issues import schedule_issue
    from core.media import check_image_channels, image_ref, set_issue_image, store_image
    from core.schedule import ScheduleError
    from storage.database import Database

    db = Database(settings.database_url)
    try:
        wanted = channels or settings.enabled_channels
        image = None
        if picture is not None:
            image = await store_image(db, settings, picture.data, picture.content_type)
            check_image_channels(image_ref(settings, image), wanted)
        if not confirm(await recipient_counts(db, wanted, topic=topic), None):
            return None
        issue = await create_issue(db, draft, created_by=actor.key, topic=topic, channels=channels)
        assert issue.id is not None
        if image is not None:
            await set_issue_image(db, issue.id, image, actor=actor)
        try:
            await schedule_issue(db, issue.id, when, actor=actor)
        except ScheduleError:  # the time passed while the author read the preview
            fail("--at: that time has passed meanwhile; nothing was scheduled (the draft is issue "
                 f"{issue.id})", 1)
        return issue.id
    finally:
        await db.dispose()


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
    print_delivery_report(report, f"issue {issue_id}: {report.title} ({report.status})")


def print_delivery_report(report: Any, title: str) -> None:
    """A :class:`core.reports.DeliveryReport` as a table (channel, status, count) and one line per failure reason."""
    table = Table("channel", "status", "count", title=Text(title))
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

    settings = serving_settings_or_exit()
    migrate_or_exit(settings)

    async def work():  # type: ignore[no-untyped-def]
        async with open_runtime(settings) as runtime:
            count = await requeue(runtime.db, issue_id, DeliveryStatus(status), channel=channel)
            if count:
                await runtime.dispatcher().dispatch(issue_id)
            return count, await delivery_report(runtime.db, issue_id)

    try:
        count, report = run_async(work)
    except (LookupError, ValueError) as exc:  # unknown issue; a cancelled one is not sent any more
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


# ---- issues (issue 5 item 9) ---------------------------------------------------------------------------------------

def _with_db(settings: Settings, work: Callable[[Any], Any]) -> Any:
    """Run ``await work(db)`` on a fresh :class:`Database` for ``settings`` (disposed afterwards)."""
    from storage.database import Database

    async def run() -> Any:
        db = Database(settings.database_url)
        try:
            return await work(db)
        finally:
            await db.dispose()

    return run_async(run)


def _counts_cell(counts: dict[str, int], *statuses: str) -> str:
    return str(sum(counts.get(status, 0) for status in statuses))


def _table(title: str, *columns: str, wrap: tuple[str, ...] = ()) -> Table:
    """A rich table whose columns keep their cells on one line, except those named in ``wrap`` (titles, details),
    so that ids, times and counts stay readable in an 80-column terminal."""
    table = Table(title=title)
    for name in columns:
        table.add_column(name, no_wrap=name not in wrap, overflow="fold" if name in wrap else "ellipsis")
    return table


def _row(table: Table, *cells: str) -> None:
    """Add a row of plain text: titles and labels are the author's text, never rich markup (``[test]`` stays)."""
    table.add_row(*(Text(cell) for cell in cells))


def _details_cell(details: dict[str, Any]) -> str:
    """An admin-log row's details, flattened for reading: ``deliveries: line 1, telegram 2; test_issue_id: 4``."""
    def value(item: Any) -> str:
        if isinstance(item, dict):
            return ", ".join(f"{k} {value(v)}" for k, v in sorted(item.items()))
        if isinstance(item, list):
            return ", ".join(value(v) for v in item)
        return str(item)

    return "; ".join(f"{key}: {value(item)}" for key, item in sorted(details.items()))


def _deliveries_cell(counts: dict[str, int]) -> str:
    """``sent 3, skipped 1``: the non-zero delivery counts, in the order of the state machine."""
    order = ("sent", "failed", "uncertain", "skipped", "cancelled", "deferred", "pending", "sending")
    return ", ".join(f"{status} {counts[status]}" for status in order if counts.get(status)) or "—"


def issue_or_exit(settings: Settings, issue_id: int) -> Any:
    """The :class:`core.issues.IssueDetail` of ``issue_id`` from an existing database; exit 1 when there is none."""
    from core.issues import IssueNotFound, issue_detail

    existing_database_or_exit(settings)
    try:
        return _with_db(settings, lambda db: issue_detail(db, issue_id))
    except IssueNotFound as exc:
        fail(str(exc), 1)


@issues_app.command("list")
def issues_list(
    limit: int = typer.Option(20, "--limit", min=1, max=1000, help="How many (newest first)."),
    status: str | None = typer.Option(None, "--status", help="Only draft, scheduled, sending, sent or cancelled."),
    tests: bool = typer.Option(False, "--tests", help="Include test sends."),
) -> None:
    """Issues, newest first: state, topic, schedule, and deliveries by outcome."""
    from core.issues import list_issues
    from storage.models import IssueStatus

    if status is not None and status not in {s.value for s in IssueStatus}:
        fail("--status must be draft, scheduled, sending, sent or cancelled", 2)
    settings = settings_or_exit()
    existing_database_or_exit(settings)
    rows = _with_db(settings, lambda db: list_issues(db, limit=limit, status=status, include_tests=tests))
    table = _table(f"issues (times in {settings.timezone})", "id", "title", "topic", "state", "when", "deliveries",
                   wrap=("title", "deliveries"))
    for row in rows:
        issue = row.issue
        title = issue.title or "(no title yet)"
        if issue.test_of is not None:
            title = f"[test of {issue.test_of}] {title}"
        when = local_time(settings, issue.started_at or issue.scheduled_at or issue.created_at)
        _row(table, str(issue.id), title, issue.topic or "all", issue.status, when, _deliveries_cell(row.counts))
    console.print(table)


@issues_app.command("show")
def issues_show(issue_id: int = typer.Argument(..., help="The issue id.")) -> None:
    """One issue: its state, topic, channels, times, deliveries per channel and status, failure reasons."""
    settings = settings_or_exit()
    detail = issue_or_exit(settings, issue_id)
    issue = detail.issue
    facts = [
        ("title", issue.title or "(no title yet)"),
        ("state", issue.status),
        ("topic", f"{issue.topic} ({settings.topic_labels.get(issue.topic, '?')})" if issue.topic else "all"),
        ("channels", ", ".join(issue.channels) if issue.channels else "every configured channel"),
        ("created", f"{local_time(settings, issue.created_at)} by {issue.created_by}"),
        ("scheduled", local_time(settings, issue.scheduled_at)),
        ("started", local_time(settings, issue.started_at)),
        ("finished", local_time(settings, issue.finished_at)),
        ("cancelled", local_time(settings, issue.cancelled_at)),
        ("test of", str(issue.test_of) if issue.test_of is not None else ""),
    ]
    for name, value in facts:
        if value:
            console.print(f"{name:>10}: {value}", markup=False, highlight=False)
    print_delivery_report(detail.report, f"issue {issue_id} deliveries")


@issues_app.command("cancel")
def issues_cancel(
    issue_id: int = typer.Argument(..., help="The issue id."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Cancel a draft, a scheduled issue, or a running broadcast (deliveries not yet started are cancelled; sent ones
    stay sent)."""
    from bots.broadcasting import cli_actor
    from core.issues import IssueStateError, cancel_issue

    settings = settings_or_exit()
    detail = issue_or_exit(settings, issue_id)
    if not yes and not typer.confirm(f"cancel issue {issue_id} 「{detail.issue.title}」 ({detail.issue.status})?",
                                     default=False):
        err.print("nothing was cancelled")
        raise typer.Exit(1)
    try:
        result = _with_db(settings, lambda db: cancel_issue(db, issue_id, actor=cli_actor()))
    except IssueStateError as exc:
        fail(str(exc), 1)
    console.print(f"issue {issue_id} cancelled (was {result.previous_status}): {result.cancelled} deliveries "
                  f"cancelled, {result.sent} already sent stay sent, {result.in_flight} in flight finish",
                  markup=False, highlight=False)


@issues_app.command("send")
def issues_send(
    issue_id: int = typer.Argument(..., help="A draft (e.g. kept by `broadcast --test`) or a scheduled issue."),
    at: str | None = typer.Option(None, "--at", help='Schedule instead: "2026-12-01 09:00" or +30m / +2h / +45s.'),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Send a stored draft now (or schedule it with --at)."""
    from bots.broadcasting import cli_actor, send_stored_issue
    from core.issues import IssueStateError, check_complete, check_sendable, check_transition, schedule_issue
    from core.schedule import ScheduleError

    settings = serving_settings_or_exit()
    when = schedule_or_exit(settings, at)
    detail = issue_or_exit(settings, issue_id)
    try:
        # Refuse a wrong state (a sent issue too) before asking and before connecting to any platform; the use case
        # checks again, atomically.
        if when is None:
            check_sendable(detail.issue)
        else:
            check_transition(detail.issue, "scheduled", "schedule")
            check_complete(detail.issue)
    except IssueStateError as exc:
        fail(str(exc), 1)
    what = f"schedule for {local_time(settings, when)}" if when is not None else "send now"
    if not yes and not typer.confirm(f"{what}: issue {issue_id} 「{detail.issue.title}」?", default=False):
        err.print("nothing was sent")
        raise typer.Exit(1)
    try:
        if when is not None:
            _with_db(settings, lambda db: schedule_issue(db, issue_id, when, actor=cli_actor()))
            console.print(f"scheduled for {local_time(settings, when)} ({settings.timezone})", markup=False,
                          highlight=False)
        else:
            run_async(lambda: send_stored_issue(settings, issue_id, actor=cli_actor(), out=console))
    except (IssueStateError, ScheduleError) as exc:
        fail(str(exc), 1)
    print(issue_id)


# ---- stats and the admin log (issue 5 items 1 and 8) -------------------------------------------------------------

@app.command()
def stats(
    chart: Path | None = typer.Option(None, "--chart", dir_okay=False, help="Also draw sign-ups over time per "
                                      "channel into this PNG file."),
    days: int = typer.Option(30, "--days", min=1, max=3660, help="Days the chart covers (today included)."),
    issues: int = typer.Option(5, "--issues", min=0, max=100, help="How many recent issues to show."),
    as_json: bool = typer.Option(False, "--json", help="Print the numbers as JSON instead of tables."),
) -> None:
    """Subscribers per channel and topic, new and withdrawn (7 and 30 days), sign-ups per campaign, recent issues."""
    from core.stats import collect_stats, signups_per_day

    settings = settings_or_exit()
    existing_database_or_exit(settings)
    report = _with_db(settings, lambda db: collect_stats(db, settings, last_issues=issues))
    if as_json:
        print(json.dumps(stats_json(settings, report), ensure_ascii=False, indent=2))
    else:
        print_stats(settings, report)
    if chart is not None:
        from bots.charts import write_signup_chart

        series = _with_db(settings, lambda db: signups_per_day(db, settings.zone, days=days))
        size = write_signup_chart(chart, series)
        err.print(f"chart written to {chart} ({size} bytes)", markup=False, highlight=False)


def stats_json(settings: Settings, report: Any) -> dict[str, Any]:
    """The stats as JSON-able data (``otayori stats --json``): the same numbers as the tables."""
    return {
        "generated_at": report.generated_at.isoformat(),
        "timezone": settings.timezone,
        "subscribers": report.subscribers,
        "by_channel": report.by_channel,
        "by_topic": {slug: {"label": label, "subscribers": report.subscribers_by_topic[slug],
                            "by_channel": {c: n for (c, t), n in report.by_channel_topic.items() if t == slug}}
                     for slug, label in settings.topic_labels.items()},
        "movement": {f"{m.days}d": {"new": m.new, "withdrawn": m.withdrawn} for m in report.movement},
        "signups_by_campaign": [{"campaign": campaign, "channel": channel, "signups": count}
                                for (campaign, channel), count in sorted(report.signups_by_campaign.items(),
                                                                         key=lambda item: (item[0][0] or "", item[0][1]))],
        "withdrawals_by_campaign": [{"campaign": campaign, "channel": channel, "withdrawals": count}
                                    for (campaign, channel), count in sorted(
                                        report.withdrawals_by_campaign.items(),
                                        key=lambda item: (item[0][0] or "", item[0][1]))],
        "issues": [{"id": r.issue_id, "title": r.title, "topic": r.topic, "status": r.status,
                    "started_at": r.started_at.isoformat() if r.started_at else None, "counts": r.counts,
                    "unsubscribes_48h": r.unsubscribes_48h} for r in report.issues],
    }


def print_stats(settings: Settings, report: Any) -> None:
    """The stats as rich tables on stdout."""
    from core.stats import CHANNELS

    labels = settings.topic_labels
    audience = Table("channel", "all topics", *labels.values(), title=f"subscribers: {report.subscribers} people")
    for channel in CHANNELS:
        _row(audience, channel, str(report.by_channel[channel]),
             *(str(report.by_channel_topic[(channel, slug)]) for slug in labels))
    _row(audience, "people", str(report.subscribers), *(str(report.subscribers_by_topic[slug]) for slug in labels))
    console.print(audience)
    movement = Table("channel", *(f"{kind} {m.days}d" for m in report.movement for kind in ("new", "withdrawn")),
                     title="new and withdrawn")
    for channel in CHANNELS:
        movement.add_row(channel, *(str(getattr(m, kind)[channel]) for m in report.movement
                                    for kind in ("new", "withdrawn")))
    console.print(movement)
    campaigns = Table("campaign", *CHANNELS, "total", title="sign-ups / withdrawals per campaign")
    seen = {c for c, _ in report.signups_by_campaign} | {c for c, _ in report.withdrawals_by_campaign}
    for campaign in sorted(seen, key=lambda c: (c is None, c or "")):
        new = [report.signups_by_campaign.get((campaign, channel), 0) for channel in CHANNELS]
        gone = [report.withdrawals_by_campaign.get((campaign, channel), 0) for channel in CHANNELS]
        _row(campaigns, campaign or "(none)", *(f"{n} / {g}" for n, g in zip(new, gone, strict=True)),
             f"{sum(new)} / {sum(gone)}")
    console.print(campaigns)
    recent = _table(f"recent issues (times in {settings.timezone})", "id", "title", "topic", "started", "sent",
                    "failed", "skipped", "unsub 48h", wrap=("title",))
    for r in report.issues:
        _row(recent, str(r.issue_id), r.title, r.topic or "all", local_time(settings, r.started_at),
                       _counts_cell(r.counts, "sent"), _counts_cell(r.counts, "failed", "uncertain"),
                       _counts_cell(r.counts, "skipped"), str(r.unsubscribes_48h))
    console.print(recent)


@app.command("admin-log")
def admin_log_command(limit: int = typer.Option(50, "--limit", min=1, max=10000, help="How many (newest first).")) -> None:
    """The admin log: who did what and when (and refused attempts), newest first, one line each."""
    from core.admins import admin_log

    settings = settings_or_exit()
    existing_database_or_exit(settings)
    rows = _with_db(settings, lambda db: admin_log(db, limit=limit))
    if not rows:
        console.print("the admin log is empty", markup=False, highlight=False)
    # One line per entry, like a log (greppable, and readable in any terminal width).
    for row in rows:
        parts = [local_time(settings, row.occurred_at), f"{row.channel}:{row.actor}", row.action]
        if row.outcome != "ok":
            parts.append(row.outcome.upper())
        if row.issue_id is not None:
            parts.append(f"issue {row.issue_id}")
        if row.details:
            parts.append(_details_cell(row.details))
        console.print("  ".join(parts), markup=False, highlight=False, soft_wrap=True)
    console.print(f"(times in {settings.timezone}; newest first)", markup=False, highlight=False)


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
