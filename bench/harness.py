"""The set-up every benchmark in ``bench/`` shares, around the code it measures (nothing here is measured itself).

* **Readers**: :func:`import_readers` writes subscribers, active opt-in endpoints and their consent events in one
  transaction (the hash chain computed with ``core.consent``'s own functions); :func:`reader_database` migrates a
  database, imports readers and verifies the whole chain; :func:`reader_template` makes a copyable directory of that,
  and :func:`fresh_copy` a copy for one run. :func:`address_for` gives each channel's addresses.
* **The issue**: :func:`new_issue` creates and enqueues it (``core.broadcast``); :func:`delivery_counts` reads the
  outcome.
* **Processes**: :func:`run_child` runs a script in a child process, bounded, and returns the JSON it printed last;
  :func:`peak_rss_mb` is a process's own peak RSS; :class:`Emulators` runs the Telegram and LINE emulators and the
  SMTP sink each in its own process; :func:`emulator_settings` points a dispatcher at them with our limits lifted.
* **Reports**: :func:`load_average`, :func:`median_of`, :func:`markdown_table`, :func:`spread_row`.

Loopback only; every wait is bounded. The product's modules are imported inside the functions, after this module has
put the repository on ``sys.path``, so a script imports quickly and a child process loads only what it uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the scripts run as `python bench/x.py`: the product's packages live in ROOT
    sys.path.insert(0, str(ROOT))

#: The issue the delivery benchmarks send (Japanese, bold, full-width punctuation, an ampersand).
ISSUE_TITLE = "12月のIT通信"
ISSUE_BODY = "**二段階認証**を有効にしましょう。\n\n勉強会: 12月5日(金)19時〜 新宿 & オンライン"
#: "Lifted" rate limits: far above anything loopback can reach, so our limiters never wait.
UNLIMITED = 1_000_000.0
#: Credentials of the emulators started by :class:`Emulators` (never real ones).
TELEGRAM_TOKEN = "123456:BENCH-core-overhead"
LINE_TOKEN = "bench-line-access-token"
LINE_SECRET = "bench-line-channel-secret"
SECRET_KEY = "bench-secret-key-0123456789abcdefghijklmnopqrstuvwxyz-core"
#: Upper bound (seconds) for the emulators to start.
START_TIMEOUT = 60.0
#: Rows per INSERT statement when importing readers.
_CHUNK = 10_000


def address_for(channel: str, index: int) -> str:
    """Reader ``index``'s address on ``channel``: a LINE userId (``U`` + 32 hex digits), a Telegram chat id (a user's
    private chat), an email address. Deterministic, so emulators, sink and database agree."""
    if channel == "line":
        return f"U{index:032x}"
    if channel == "telegram":
        return str(700_000_000 + index)
    return f"reader{index}@example.jp"


# ------------------------------------------------------------------------------------------------- readers


@dataclass
class _LedgerRow:
    """The attributes :func:`core.consent.hashed_record` reads, without building 100,000 ORM objects."""

    id: int
    occurred_at: Any
    subscriber_id: int
    endpoint_id: int
    channel: str
    action: str
    basis: str
    source: str
    campaign: None = None
    topics: None = None
    wording_version: None = None
    wording_sha256: None = None
    evidence: dict[str, Any] | None = None
    address_hmac: str = ""
    prev_hash: str = ""
    hash: str = ""


async def import_readers(db: Any, readers: Mapping[str, Sequence[str]]) -> list[tuple[int, str, str]]:
    """Import ``readers`` (``{channel: [address, ...]}``) into ``db`` (a :class:`storage.database.Database`) in one
    write transaction: per address a subscriber, an ``active`` ``opt_in`` endpoint (LINE ones marked friends) and one
    consent event (``grant``; ``confirm`` for email; source ``import``).

    The events are inserted in bulk rather than through ``core.consent.append`` (which reads the chain head per row)
    but built with the same functions — ``ledger_key``, ``address_hmac``, ``hashed_record``, ``chain_hash`` —
    continuing the chain from its current head, so the result is what ``append`` would have written (check it with
    :func:`verify_ledger`). Returns ``[(endpoint_id, channel, address), ...]`` in order.
    """
    from sqlalchemy import func, select

    from core.consent import GENESIS_HASH, address_hmac, canonical_json, chain_hash, hashed_record, ledger_key
    from storage.models import ConsentEvent, Endpoint, Subscriber
    from storage.types import utcnow

    made: list[tuple[int, str, str]] = []
    async with db.write() as session:
        await db.lock_ledger(session)
        key = await ledger_key(session)
        head = (await session.exec(select(ConsentEvent.id, ConsentEvent.hash)  # type: ignore[call-overload]
                                   .order_by(ConsentEvent.id.desc()).limit(1))).first()  # type: ignore[union-attr]
        next_event, prev_hash = (head[0] + 1, head[1]) if head else (1, GENESIS_HASH)
        connection = await session.connection()
        next_subscriber = (await connection.execute(select(func.coalesce(func.max(Subscriber.id), 0)))).scalar_one() + 1
        next_endpoint = (await connection.execute(select(func.coalesce(func.max(Endpoint.id), 0)))).scalar_one() + 1
        now = utcnow()
        subscribers, endpoints, events = [], [], []
        evidence = json.loads(canonical_json({"import": "bench"}))  # stored exactly as it is hashed
        for channel, addresses in readers.items():
            for address in addresses:
                subscribers.append({"id": next_subscriber, "created_at": now, "language": "ja"})
                endpoints.append({"id": next_endpoint, "subscriber_id": next_subscriber, "channel": channel,
                                  "address": address, "state": "active", "basis": "opt_in",
                                  "friend": True if channel == "line" else None,
                                  "created_at": now, "updated_at": now})
                row = _LedgerRow(id=next_event, occurred_at=now, subscriber_id=next_subscriber,
                                 endpoint_id=next_endpoint, channel=channel,
                                 action="confirm" if channel == "email" else "grant", basis="opt_in",
                                 source="import", evidence=evidence, address_hmac=address_hmac(key, channel, address),
                                 prev_hash=prev_hash)
                row.hash = prev_hash = chain_hash(prev_hash, hashed_record(row))  # type: ignore[arg-type]
                events.append({name: getattr(row, name) for name in (
                    "id", "occurred_at", "subscriber_id", "endpoint_id", "channel", "action", "basis", "source",
                    "campaign", "topics", "wording_version", "wording_sha256", "evidence", "address_hmac",
                    "prev_hash", "hash")})
                made.append((next_endpoint, channel, address))
                next_subscriber, next_endpoint, next_event = next_subscriber + 1, next_endpoint + 1, next_event + 1
        for table, rows in ((Subscriber, subscribers), (Endpoint, endpoints), (ConsentEvent, events)):
            for i in range(0, len(rows), _CHUNK):
                await connection.execute(table.__table__.insert(), rows[i : i + _CHUNK])  # type: ignore[attr-defined]
    return made


async def verify_ledger(db: Any) -> int:
    """Verify the whole hash chain (``core.consent.verify_chain``); returns the number of events. Raises
    ``RuntimeError`` on any problem."""
    from sqlmodel import select

    from core.consent import verify_chain
    from storage.models import ConsentEvent

    async with db.read() as session:
        query = select(ConsentEvent).order_by(ConsentEvent.id)  # type: ignore[arg-type]
        events = list((await session.exec(query)).all())
    problems = verify_chain(events)
    if problems:
        raise RuntimeError(f"ledger chain broken: {problems[:3]}")
    return len(events)


async def reader_database(database_url: str, readers: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """Migrate the database at ``database_url`` (Alembic, in a thread), :func:`import_readers`, then
    :func:`verify_ledger`. Returns ``{"import_seconds", "verify_seconds", "events"}``."""
    from storage.database import Database
    from storage.migrate import upgrade

    await asyncio.to_thread(upgrade, database_url)
    db = Database(database_url)
    try:
        started = time.perf_counter()
        await import_readers(db, readers)
        imported = time.perf_counter() - started
        started = time.perf_counter()
        events = await verify_ledger(db)
        return {"import_seconds": imported, "verify_seconds": time.perf_counter() - started, "events": events}
    finally:
        await db.dispose()


async def reader_template(directory: Path, readers: Mapping[str, Sequence[str]]) -> float:
    """A directory holding a sandbox stack's files (``bots.sandbox.stack.sandbox_settings``: its secret key and SQLite
    file) with ``readers`` imported: copy it per run with :func:`fresh_copy`. Returns the seconds the import took."""
    from bots.sandbox.stack import sandbox_settings

    timings = await reader_database(sandbox_settings(directory).database_url, readers)
    return timings["import_seconds"]


def fresh_copy(template: Path, rundir: Path) -> str:
    """Replace ``rundir`` by a copy of ``template`` (see :func:`reader_template`); returns its database URL."""
    shutil.rmtree(rundir, ignore_errors=True)
    shutil.copytree(template, rundir)
    return f"sqlite+aiosqlite:///{rundir / 'otayori.sqlite3'}"


# ------------------------------------------------------------------------------------------------- the issue


async def new_issue(database_url: str, channels: Sequence[str], *, title: str = ISSUE_TITLE,
                    body: str = ISSUE_BODY) -> tuple[int, dict[str, int], float]:
    """Create the bench issue and enqueue it on ``channels``; returns (issue id, deliveries per channel, seconds the
    enqueue took)."""
    from core.broadcast import IssueDraft, create_issue, enqueue
    from storage.database import Database

    db = Database(database_url)
    try:
        issue = await create_issue(db, IssueDraft(title, body), created_by="bench")
        started = time.perf_counter()
        counts = await enqueue(db, issue.id, list(channels))
        return int(issue.id), counts, time.perf_counter() - started
    finally:
        await db.dispose()


async def delivery_counts(database_url: str, issue_id: int) -> dict[str, dict[str, int]]:
    """``{channel: {status: count}}`` of the issue's deliveries."""
    from sqlalchemy import func, select

    from storage.database import Database
    from storage.models import Delivery

    db = Database(database_url)
    try:
        async with db.read() as session:
            query = (select(Delivery.channel, Delivery.status, func.count())  # type: ignore[call-overload]
                     .where(Delivery.issue_id == issue_id).group_by(Delivery.channel, Delivery.status))
            rows = (await session.exec(query)).all()
    finally:
        await db.dispose()
    found: dict[str, dict[str, int]] = {}
    for channel, status, count in rows:
        found.setdefault(channel, {})[status] = int(count)
    return found


# ------------------------------------------------------------------------------------------------- processes


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB: ``VmHWM`` of /proc/self/status, which counts this program only
    (``getrusage``'s ``ru_maxrss`` may carry the high-water mark of the process image before ``exec``);
    ``ru_maxrss`` where /proc is missing."""
    with contextlib.suppress(OSError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def run_child(script: str | Path, args: Sequence[str], timeout: float) -> dict[str, Any]:
    """Run ``python script *args`` in a child process (working directory :data:`ROOT`) and return the JSON object it
    printed last on a line starting with ``{``. Bounded: the child is killed after ``timeout`` seconds
    (``TimeoutError``). Raises ``RuntimeError`` with the end of its stderr when it fails or prints no JSON."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(script).resolve()), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=str(ROOT))
    try:
        out, err = await asyncio.wait_for(child.communicate(), timeout=timeout)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    if child.returncode != 0 or not lines:
        raise RuntimeError(f"child {list(args[:2])} failed ({child.returncode}): "
                           f"{err.decode(errors='replace')[-4000:]}")
    return json.loads(lines[-1])


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (bound then released: a tiny race we accept in a benchmark)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Emulators:
    """The Telegram and LINE emulators and the SMTP sink, each a ``python -m bots.sandbox…`` process on 127.0.0.1
    with no rate limit of its own (see :meth:`start`); output goes to files in ``workdir``."""

    workdir: Path
    telegram_port: int = 0
    line_port: int = 0
    smtp_port: int = 0
    processes: tuple[subprocess.Popen[bytes], ...] = ()

    @property
    def telegram_url(self) -> str:
        return f"http://127.0.0.1:{self.telegram_port}"

    @property
    def line_url(self) -> str:
        return f"http://127.0.0.1:{self.line_port}"

    @property
    def smtp_log(self) -> Path:
        return self.workdir / "smtp_sink.out"

    def start(self) -> None:
        """Start the processes and wait until each port accepts (at most :data:`START_TIMEOUT` s, else
        ``RuntimeError`` after stopping them)."""
        self.telegram_port, self.line_port, self.smtp_port = free_port(), free_port(), free_port()
        commands = {
            "telegram": ["bots.sandbox.telegram_api", "--token", TELEGRAM_TOKEN, "--port", str(self.telegram_port)],
            "line": ["bots.sandbox.line_api", "--token", LINE_TOKEN, "--secret", LINE_SECRET,
                     "--port", str(self.line_port)],
            "smtp": ["bots.sandbox.smtp_sink", "--port", str(self.smtp_port)],
        }
        started = []
        for name, args in commands.items():
            out = open(self.smtp_log if name == "smtp" else self.workdir / f"{name}.out", "wb")  # noqa: SIM115
            err = open(self.workdir / f"{name}.err", "wb")  # noqa: SIM115
            started.append(subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, stdout=out, stderr=err,
                                            stdin=subprocess.DEVNULL))
        self.processes = tuple(started)
        deadline = time.monotonic() + START_TIMEOUT
        for port in (self.telegram_port, self.line_port, self.smtp_port):
            while True:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
                if time.monotonic() > deadline or any(p.poll() is not None for p in self.processes):
                    self.stop()
                    raise RuntimeError(f"an emulator did not start; see {self.workdir}/*.err")
                time.sleep(0.1)

    def stop(self) -> None:
        """Terminate the processes this object started (and only those)."""
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def smtp_received(self) -> int:
        """Messages the SMTP sink received so far (it prints ``#<count> …`` per message)."""
        last = 0
        with open(self.smtp_log, "rb") as log:
            for line in log:
                if line.startswith(b"#"):
                    last = int(line[1:].split(b" ", 1)[0])
        return last

    async def register(self, counts: Mapping[str, int], concurrency: int = 32) -> None:
        """Make the first ``counts["telegram"]`` Telegram users of :func:`address_for` (who started the bot) known to
        the emulator (``POST /_emulator/users``).

        LINE users are not registered: the LINE emulator accepts a multicast to unknown users and just does not
        deliver to them, and registering 70,000 friends one request at a time would take minutes; count the
        recipients in the multicast requests it accepted instead (:meth:`counters`)."""
        import aiohttp

        semaphore = asyncio.Semaphore(concurrency)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

            async def post(url: str, body: dict[str, Any]) -> None:
                async with semaphore, session.post(url, json=body) as answer:
                    if answer.status != 200:
                        raise RuntimeError(f"{url}: {answer.status} {await answer.text()}")

            jobs = [post(f"{self.telegram_url}/_emulator/users", {"user_id": int(address_for("telegram", i)),
                                                                   "started": True})
                    for i in range(counts.get("telegram", 0))]
            await asyncio.gather(*jobs)

    async def accepted_multicasts(self) -> list[dict[str, Any]]:
        """The multicast requests the LINE emulator answered 200, as it records them (``body["to"]``: recipients)."""
        import aiohttp

        async with aiohttp.ClientSession() as session, session.get(f"{self.line_url}/_emulator/requests") as answer:
            return [r for r in (await answer.json())["requests"]
                    if r["path"].endswith("/multicast") and r["status"] == 200]

    async def counters(self) -> dict[str, int]:
        """Cumulative counters: Telegram messages sent, LINE recipients in accepted multicast requests, LINE
        multicast requests, SMTP messages received."""
        import aiohttp

        async with aiohttp.ClientSession() as session, session.get(f"{self.telegram_url}/_emulator/") as answer:
            telegram = (await answer.json())["sent"]
        requests = await self.accepted_multicasts()
        line = sum(len(r["body"]["to"]) for r in requests)
        return {"telegram": int(telegram), "line": line, "line_requests": len(requests),
                "email": self.smtp_received()}


def emulator_settings(database_url: str, emulators: Mapping[str, Any], smtp_connections: int) -> Any:
    """Settings (``core.settings.Settings``) for a dispatcher against :class:`Emulators` (``emulators``:
    ``telegram_url``, ``line_url``, ``smtp_port``) with **our rate limits lifted** (:data:`UNLIMITED` for Telegram,
    LINE and SMTP): callers that want other limits ``model_copy`` them."""
    from core.settings import Settings

    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=database_url,
        secret_key=SECRET_KEY,
        sender_name="山田IT事務所",
        sender_postal_address="東京都千代田区千代田1-1",
        sender_contact="info@example.jp",
        mail_from="news@example.jp",
        public_url="http://127.0.0.1:8000",
        telegram_bot_token=TELEGRAM_TOKEN,
        telegram_api_url=f"{emulators['telegram_url']}/bot",
        telegram_file_url=f"{emulators['telegram_url']}/file/bot",
        line_channel_secret=LINE_SECRET,
        line_channel_access_token=LINE_TOKEN,
        line_api_url=emulators["line_url"],
        smtp_host="127.0.0.1",
        smtp_port=emulators["smtp_port"],
        smtp_security="none",
        telegram_rate_per_second=UNLIMITED,
        line_multicast_rate_per_second=UNLIMITED,
        smtp_rate_per_second=UNLIMITED,
        smtp_connections=smtp_connections,
    )


# ------------------------------------------------------------------------------------------------- reports


def load_average() -> str:
    """The 1/5/15-minute load averages as ``"a / b / c"``."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def median_of(runs: Sequence[Mapping[str, Any]], name: str, attr: str) -> float:
    """The median over ``runs`` (each ``{name: result}``) of ``getattr(run[name], attr)``."""
    return statistics.median(getattr(run[name], attr) for run in runs)


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """The lines of a Markdown table: ``columns`` as the header, the first column left-aligned and the others (the
    figures) right-aligned, one line per row of cells (already formatted, or anything ``str`` shows)."""
    lines = ["| " + " | ".join(columns) + " |", "|---" + "|---:" * (len(columns) - 1) + "|"]
    lines.extend("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows)
    return lines


#: Columns of a table made of :func:`spread_row` rows.
SPREAD_COLUMNS = ("measure", "median", "min", "max", "goal")


def spread_row(name: str, values: Sequence[float], fmt: str, goal: str = "") -> list[str]:
    """A row ``name | median | min | max | goal`` of ``values``, each formatted with ``fmt`` (e.g. ``"{:.1f}"``)."""
    return [name, *(fmt.format(f(values)) for f in (statistics.median, min, max)), goal]
