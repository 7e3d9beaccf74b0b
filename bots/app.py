"""The one place that wires everything together from one :class:`core.settings.Settings` (cosmicpython's bootstrap).

``async with open_runtime(settings) as runtime:`` opens the database, the SDK clients (created inside the running
loop, as the LINE SDK requires) and the senders; nothing connects at import time. ``serve(runtime)`` runs the web app,
Telegram polling and a background dispatcher until stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from typing import TYPE_CHECKING

from telegram import Bot
from telegram.ext import Application
from telegram.request import HTTPXRequest

from bots.telegram import TelegramBot, TelegramSender
from core.channels import ChannelSender
from core.double_opt_in import EmailSubscriptions
from core.optout import OptOuts
from core.dispatcher import Dispatcher, DispatchPolicy
from core.settings import Settings
from core.subscriptions import SubscriptionService
from storage.database import Database

if TYPE_CHECKING:  # the LINE SDK takes seconds to import: only when LINE is on
    from linebot.v3.messaging import AsyncApiClient, AsyncMessagingApi

    from bots.line import LineWebhook

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
    #: Email double opt-in use cases (always present; without SMTP its requests answer "unavailable").
    email: EmailSubscriptions | None = None
    optouts: OptOuts | None = None
    email_sender: Any = None

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
                runtime.telegram_app = TelegramBot(subscriptions).build_application(
                    token, settings.telegram_api_url, settings.telegram_file_url
                )
                runtime.telegram_bot = runtime.telegram_app.bot
            else:
                # PTB's default request object holds one connection: every send would wait for the previous answer.
                # One connection per dispatcher worker lets the rate limit, not the round trip, set the pace.
                runtime.telegram_bot = Bot(token, base_url=settings.telegram_api_url,
                                           base_file_url=settings.telegram_file_url,
                                           request=HTTPXRequest(connection_pool_size=TELEGRAM_CONNECTIONS))
            runtime.senders["telegram"] = TelegramSender(runtime.telegram_bot, settings.telegram_rate_per_second)
        if settings.line_enabled:
            from linebot.v3.messaging import AsyncApiClient, AsyncMessagingApi, Configuration

            from bots.line import LineSender, LineWebhook

            line_client = AsyncApiClient(
                Configuration(host=settings.line_api_url, access_token=settings.line_channel_access_token)
            )
            runtime.line_api = AsyncMessagingApi(line_client)
            runtime.line_webhook = LineWebhook(settings.line_channel_secret or "", db, subscriptions, runtime.line_api)
            runtime.senders["line"] = LineSender(runtime.line_api, settings.line_multicast_rate_per_second)
        if runtime.telegram_bot is not None and runtime.telegram_app is None:
            await runtime.telegram_bot.initialize()
        yield runtime
    finally:
        if runtime.telegram_bot is not None and runtime.telegram_app is None:
            with contextlib.suppress(Exception):
                await runtime.telegram_bot.shutdown()
        if line_client is not None:
            await line_client.close()
        if runtime.email_sender is not None:
            await runtime.email_sender.close()
        await db.dispose()


@contextlib.asynccontextmanager
async def running_telegram(runtime: Runtime) -> AsyncIterator[None]:
    """Start Telegram polling inside the running loop (not ``run_polling``: the loop is ours; reference/telegram.md)."""
    application = runtime.telegram_app
    if application is None:
        yield
        return
    await application.initialize()
    await TelegramBot.publish_commands(application)
    await application.start()
    assert application.updater is not None
    await application.updater.start_polling(poll_interval=0.0, timeout=10, drop_pending_updates=False)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            await application.updater.stop()
        with contextlib.suppress(Exception):
            await application.stop()
        with contextlib.suppress(Exception):
            await application.shutdown()


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
    """``otayori run``: serve the web app on ``OTAYORI_HTTP_HOST:PORT``, poll Telegram, dispatch in the background,
    and start scheduled issues when due (bots/scheduling.py).

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

        async with running_telegram(runtime):
            dispatcher_task = asyncio.create_task(dispatch_forever(runtime, stop))
            due_task = asyncio.create_task(send_due_forever(runtime, stop))  # scheduled issues (issue 5)
            try:
                await server.serve()
            finally:
                stop.set()
                await dispatcher_task
                await due_task
