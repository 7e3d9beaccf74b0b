"""The one place that wires everything together from one :class:`core.settings.Settings` (cosmicpython's bootstrap).

``async with open_runtime(settings) as runtime:`` opens the database, the SDK clients (created inside the running
loop, as the LINE SDK requires) and the senders; nothing connects at import time. ``serve(runtime)`` runs the web app,
Telegram polling (or its webhook: bots/telegram_webhook.py) and a background dispatcher until stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from typing import TYPE_CHECKING

from telegram import Bot
from telegram.ext import Application
from telegram.request import HTTPXRequest

from bots.desk import ChatOut, DeskEdge
from bots.telegram import TelegramBot, TelegramOut, TelegramSender
from core.broadcast import IssueDraft
from core.channels import ChannelSender
from core.chat import ChatRouter
from core.desk import AuthorDesk
from core.issues import issue_detail
from core.reader_replies import ReaderReplies
from core.double_opt_in import EmailSubscriptions
from core.optout import OptOuts
from core.dispatcher import Dispatcher, DispatchPolicy
from core.settings import Settings
from core.subscriptions import SubscriptionService
from storage.database import Database

if TYPE_CHECKING:  # the LINE SDK takes seconds to import: only when LINE is on
    from linebot.v3.messaging import AsyncApiClient, AsyncMessagingApi

    from bots.line import LineWebhook
    from bots.telegram_webhook import TelegramWebhook

log = logging.getLogger(__name__)

#: Seconds between background dispatcher rounds in ``run`` (picks up retries and deliveries left by other processes).
DISPATCH_INTERVAL = 2.0
#: HTTP connections of the sending bot's pool: one per dispatcher worker (DispatchPolicy.concurrency) and a spare.
TELEGRAM_CONNECTIONS = DispatchPolicy.concurrency + 1


@dataclass
class Runtime:
    """Everything assembled: settings, database, use cases, SDK clients, senders."""

    settings: Settings
    db: Database
    subscriptions: SubscriptionService
    senders: dict[str, ChannelSender] = field(default_factory=dict)
    telegram_bot: Bot | None = None
    telegram_app: Application | None = None
    line_api: AsyncMessagingApi | None = None
    line_webhook: LineWebhook | None = None
    #: Telegram webhook intake (``OTAYORI_TELEGRAM_MODE=webhook`` with ``telegram_updates``); None when polling.
    telegram_webhook: TelegramWebhook | None = None
    #: Email double opt-in use cases (always present; without SMTP its requests answer "unavailable").
    email: EmailSubscriptions | None = None
    optouts: OptOuts | None = None
    email_sender: Any = None
    #: The chat router (core.chat: admins' desk, reader replies, the grammar) and the edge that carries out its
    #: effects (bots.desk: background broadcasts with progress, forwarded reader messages, answers, the chart).
    router: ChatRouter | None = None
    desk_edge: DeskEdge | None = None

    def enabled_channels(self) -> list[str]:
        """Channels that have credentials (and so a sender)."""
        return list(self.senders)

    def dispatcher(self, policy: DispatchPolicy | None = None) -> Dispatcher:
        """A dispatcher over this runtime's senders."""
        return Dispatcher(self.db, self.senders, self.subscriptions, policy=policy)

    async def line_quota_remaining(self) -> int | None:
        """LINE messages left this month, or None (no LINE, no limit, or unreadable)."""
        sender = self.senders.get("line")
        if sender is None:
            return None
        return await sender.quota_remaining()  # type: ignore[attr-defined]

    async def process_line_events(self, keys: list[str]) -> None:
        """Process stored LINE events (called after the webhook answered 200)."""
        if self.line_webhook is not None:
            await self.line_webhook.process_stored(keys)


@contextlib.asynccontextmanager
async def open_runtime(settings: Settings, *, telegram_updates: bool = False) -> AsyncIterator[Runtime]:
    """Open a :class:`Runtime` for ``settings``.

    ``telegram_updates``: also build the PTB ``Application`` that receives updates (``run``, ``demo``); without it
    only a bare ``Bot`` is made for sending (the CLI broadcast must not poll: it would fight ``run`` for updates).
    The caller upgrades the database first (migrations run before the event loop: storage.migrate).
    """
    db = Database(settings.database_url)
    subscriptions = SubscriptionService(db, settings)
    optouts = OptOuts(db, settings)
    runtime = Runtime(settings=settings, db=db, subscriptions=subscriptions, optouts=optouts)
    line_client: AsyncApiClient | None = None
    line_data_client: AsyncApiClient | None = None
    desk = AuthorDesk(db, settings, enabled_channels=runtime.enabled_channels,
                      line_quota=runtime.line_quota_remaining)
    readers = ReaderReplies(db, settings)
    runtime.router = ChatRouter(settings, subscriptions, desk, readers)
    outs: dict[str, ChatOut] = {}
    runtime.desk_edge = DeskEdge(db, settings, desk, readers, outs, functools.partial(_dispatch_followed, runtime))
    try:
        if settings.email_enabled:
            from bots.mailing import ConfirmationMails, build_email_sender  # only when email is on

            runtime.email_sender = build_email_sender(settings, optouts)
            runtime.senders["email"] = runtime.email_sender
            runtime.email = EmailSubscriptions(db, settings, ConfirmationMails(settings, runtime.email_sender))
        else:
            runtime.email = EmailSubscriptions(db, settings, None)
        subscriptions.email = runtime.email
        if settings.telegram_enabled:
            token = settings.telegram_bot_token or ""
            if telegram_updates:
                webhook_mode = settings.telegram_mode == "webhook"
                runtime.telegram_app = TelegramBot(subscriptions, runtime.router, runtime.desk_edge).build_application(
                    token, settings.telegram_api_url, settings.telegram_file_url, polling=not webhook_mode
                )
                runtime.telegram_bot = runtime.telegram_app.bot
                if webhook_mode:
                    from bots.telegram_webhook import TelegramWebhook

                    runtime.telegram_webhook = TelegramWebhook(runtime.telegram_app, db,
                                                               settings.telegram_webhook_secret or "")
            else:
                # PTB's default request object holds one connection: every send would wait for the previous answer.
                # One connection per dispatcher worker lets the rate limit, not the round trip, set the pace.
                runtime.telegram_bot = Bot(token, base_url=settings.telegram_api_url,
                                           base_file_url=settings.telegram_file_url,
                                           request=HTTPXRequest(connection_pool_size=TELEGRAM_CONNECTIONS))
            runtime.senders["telegram"] = TelegramSender(runtime.telegram_bot, settings.telegram_rate_per_second)
            outs["telegram"] = TelegramOut(runtime.telegram_bot)
        if settings.line_enabled:
            from linebot.v3.messaging import AsyncApiClient, AsyncMessagingApi, AsyncMessagingApiBlob, Configuration

            from bots.line import LineOut, LineSender, LineWebhook

            line_client = AsyncApiClient(
                Configuration(host=settings.line_api_url, access_token=settings.line_channel_access_token)
            )
            # The data API (message content) is another host: its own Configuration (reference/line.md).
            line_data_client = AsyncApiClient(
                Configuration(host=settings.line_data_api_url, access_token=settings.line_channel_access_token)
            )
            runtime.line_api = AsyncMessagingApi(line_client)
            runtime.line_webhook = LineWebhook(settings.line_channel_secret or "", db, subscriptions, runtime.line_api,
                                               runtime.router, runtime.desk_edge,
                                               AsyncMessagingApiBlob(line_data_client))
            outs["line"] = LineOut(runtime.line_api)
            runtime.senders["line"] = LineSender(runtime.line_api, settings.line_multicast_rate_per_second)
        if runtime.telegram_bot is not None and runtime.telegram_app is None:
            await runtime.telegram_bot.initialize()
        yield runtime
    finally:
        await runtime.desk_edge.close()  # background broadcasts stop; the outbox keeps what was not sent
        if runtime.telegram_bot is not None and runtime.telegram_app is None:
            with contextlib.suppress(Exception):
                await runtime.telegram_bot.shutdown()
        if line_client is not None:
            await line_client.close()
        if line_data_client is not None:
            await line_data_client.close()
        if runtime.email_sender is not None:
            await runtime.email_sender.close()
        await db.dispose()


@contextlib.asynccontextmanager
async def running_telegram(runtime: Runtime, webhook_url: str | None = None) -> AsyncIterator[None]:
    """Start receiving Telegram updates inside the running loop (not ``run_polling``: the loop is ours;
    reference/telegram.md): polling, or in webhook mode process the updates stored before a stop, then
    ``setWebhook`` to ``webhook_url`` (default ``{OTAYORI_PUBLIC_URL}/webhooks/telegram``). Call it once the web
    app listens, so Telegram's first delivery finds it. The webhook is left set on exit: Telegram keeps the updates
    that arrive while otayori is down and delivers them when it is back.

    Raises ``telegram.error.TelegramError`` when Telegram refuses the token or the webhook.
    """
    application = runtime.telegram_app
    if application is None:
        yield
        return
    await application.initialize()
    await TelegramBot.publish_commands(application)
    await application.start()
    if runtime.telegram_webhook is not None:
        from bots.telegram_webhook import webhook_url as default_webhook_url

        recovered = await runtime.telegram_webhook.recover()
        if recovered:
            log.info("processed %d Telegram updates stored before a restart", recovered)
        await runtime.telegram_webhook.register(webhook_url or default_webhook_url(runtime.settings.public_url))
    else:
        assert application.updater is not None
        await application.updater.start_polling(poll_interval=0.0, timeout=10, drop_pending_updates=False)
    try:
        yield
    finally:
        if application.updater is not None:
            with contextlib.suppress(Exception):
                await application.updater.stop()
        with contextlib.suppress(Exception):
            await application.stop()
        with contextlib.suppress(Exception):
            await application.shutdown()


async def _dispatch_followed(runtime: Runtime, issue_id: int, enqueued: dict[str, int]) -> object:
    """Dispatch one issue for the author's desk (bots.desk follows it from the outbox): LINE deliveries over the
    month's quota are deferred first, exactly as for a CLI broadcast. ``run``'s background dispatcher may send some
    of the rows instead: the channel lease lets one dispatcher at a time send on a channel, and each row is claimed
    once."""
    from bots.broadcasting import dispatch_and_report  # imports this module

    detail = await issue_detail(runtime.db, issue_id)
    return await dispatch_and_report(runtime, issue_id, enqueued, IssueDraft(detail.issue.title, detail.issue.body_md),
                                     with_image=bool(detail.issue.image_sha256))


async def dispatch_forever(runtime: Runtime, stop: asyncio.Event, interval: float = DISPATCH_INTERVAL) -> None:
    """Background dispatcher for ``run``: every ``interval`` seconds send whatever is due; never dies on an error."""
    dispatcher = runtime.dispatcher()
    while not stop.is_set():
        try:
            await dispatcher.dispatch(wait_for_retries=False)
        except Exception:  # keep serving; the next round retries
            log.exception("dispatcher round failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)


async def serve(settings: Settings) -> None:
    """``otayori run``: serve the web app on ``OTAYORI_HTTP_HOST:PORT``, then receive Telegram updates (polling, or
    ``setWebhook`` once the app listens), dispatch in the background, and start scheduled issues when due
    (bots/scheduling.py).

    Runs until interrupted (Ctrl-C / SIGTERM). LINE events stored before a crash are processed first.
    """
    import uvicorn

    from bots.web import create_app

    async with open_runtime(settings, telegram_updates=True) as runtime:
        if runtime.line_webhook is not None:
            recovered = await runtime.line_webhook.recover()
            if recovered:
                log.info("processed %d LINE events stored before a restart", recovered)
        config = uvicorn.Config(create_app(runtime), host=settings.http_host, port=settings.http_port,
                                log_level="info", lifespan="off")
        server = uvicorn.Server(config)
        stop = asyncio.Event()
        from bots.scheduling import send_due_forever  # imports bots.broadcasting, which imports this module

        # The web app listens first: in webhook mode setWebhook comes after, so Telegram's first POST finds it.
        server_task = asyncio.create_task(server.serve())
        try:
            await _until_listening(server, server_task)
            async with running_telegram(runtime):
                dispatcher_task = asyncio.create_task(dispatch_forever(runtime, stop))
                due_task = asyncio.create_task(send_due_forever(runtime, stop))  # scheduled issues (issue 5)
                try:
                    await server_task
                finally:
                    stop.set()
                    await dispatcher_task
                    await due_task
        finally:
            if not server_task.done():
                server.should_exit = True
                await server_task


async def _until_listening(server: Any, task: asyncio.Task[None], timeout: float = 30.0) -> None:
    """Wait until uvicorn's ``server`` listens (``server.started``); re-raise its error if it stopped before that
    (e.g. the port is taken). Bounded: at most ``timeout`` seconds, then ``TimeoutError``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not server.started:
        if task.done():
            await task  # raises what stopped it
            raise RuntimeError("the web server stopped before it listened")
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"the web server did not listen within {timeout:.0f} s")
        await asyncio.sleep(0.05)
