"""The tour's shared state and the steps that tell the rest of the story: quiet hours,
two devices syncing through a local sync server, a verified restore, the HTTP API and
the performance report.

Servers run in this process on a loopback socket the system chose a port for; they
need the ``server`` extra and are skipped (saying so) without it.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import httpx
import uuid6
from rich.console import Console
from rich.table import Table
from rich.text import Text

import mangostore
from mangostore.cli.common import CommandError, human_bytes, is_internal_table

if TYPE_CHECKING:
    from mangostore.records import Notification

#: The passphrase of the demo databases. It is printed: they are thrown away.
DEMO_PASSPHRASE = "mango-demo-passphrase"  # noqa: S105 (public by design)
DEMO_EMAIL = "ada@example.com"
#: The password of the demo's second user, who logs in (printed for the same reason).
DEMO_PASSWORD = "a long demo password"  # noqa: S105
#: Seconds a server thread gets to start listening or to stop.
SERVER_WAIT_S = 15.0
SERVER_EXTRA = "pip install 'mangostore[server]'"


@dataclass
class Tour:
    """What the steps share: where to write, the open database, the ids made so far,
    and what must be stopped or closed when the tour ends (last first)."""

    out: Console
    folder: Path
    db: mangostore.Database | None = None
    ids: dict[str, str] = field(default_factory=dict)
    closers: list[tuple[str, Callable[[], None]]] = field(default_factory=list)

    @property
    def path(self) -> Path:
        """The demo database file."""
        return self.folder / "demo.db"

    def database(self) -> mangostore.Database:
        """Return the open database (a step that needs one runs after ``create_database``)."""
        if self.db is None:
            raise CommandError("demo step ran before the database was created")
        return self.db

    def on_cleanup(self, what: str, close: Callable[[], None]) -> None:
        """Call ``close`` when the tour ends, even on failure; ``what`` says what it did
        ("stopped the sync server")."""
        self.closers.append((what, close))

    def clean_up(self) -> list[str]:
        """Run every cleanup, last registered first; return what was stopped or closed.

        Every cleanup runs even when one fails; the first failure is raised after.
        """
        done: list[str] = []
        failure: BaseException | None = None
        while self.closers:
            what, close = self.closers.pop()
            try:
                close()
            except Exception as exc:  # the others still run; raised below
                failure = failure or exc
            else:
                done.append(what)
        if self.db is not None:
            self.db.close()
            self.db = None
            done.append(f"closed {self.path.name}")
        if failure is not None:
            raise failure
        return done


class Step(NamedTuple):
    """One step of the tour: a title and the function that performs it."""

    title: str
    run: Callable[[Tour], None]


def new_id() -> str:
    """A new UUIDv7 row id."""
    return str(uuid6.uuid7())


def now_ms() -> int:
    """The time now, in epoch milliseconds."""
    return int(time.time() * 1000)


class LoopbackServer:
    """An ASGI app served by uvicorn in a thread, on a loopback socket whose port the
    system chose (so it never clashes with another server)."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        # log_config=None: the demo's own logging stays as it is.
        config = uvicorn.Config(app, log_config=None, log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name=f"mangostore-demo-server-{self.port}",
            daemon=True,
        )

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start serving and wait until the server listens.

        Raises:
            CommandError: it did not start in time.
        """
        self._thread.start()
        deadline = time.monotonic() + SERVER_WAIT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise CommandError("the demo's server on loopback did not start; run it again")
            time.sleep(0.01)

    def stop(self) -> None:
        """Ask the server to exit, wait for its thread, and close the socket."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(SERVER_WAIT_S)
        self._socket.close()


def _server_available(tour: Tour, what: str) -> bool:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        tour.out.print(f"Skipped: {what} needs the server extra ({SERVER_EXTRA}).")
        return False
    return True


# -- notifications ---------------------------------------------------------------------


class DemoDesktop:
    """The demo's desktop deliverer: it prints what a pop-up would show."""

    method = "desktop"

    def __init__(self, out: Callable[[], Console]) -> None:
        self._out = out

    def deliver(self, notification: Notification) -> None:
        """Show the notification (printed)."""
        self._out().print(Text(f"  [desktop pop-up] {notification.title}: {notification.message}"))


def _night_zone(at_ms: int) -> tuple[str, str]:
    """A zone where it is 23:xx at ``at_ms``, and its offset as ``UTC+hh:00``."""
    utc_hour = dt.datetime.fromtimestamp(at_ms / 1000, dt.UTC).hour
    hours = (23 - utc_hour) % 24
    hours = hours - 24 if hours > 14 else hours
    # IANA's Etc/GMT zones are named with the sign reversed: Etc/GMT-5 is UTC+05:00.
    zone = "Etc/UTC" if hours == 0 else f"Etc/GMT{-hours:+d}"
    return zone, f"UTC{hours:+03d}:00"


def quiet_hours(tour: Tour) -> None:
    """Send a notification in the user's quiet hours: held, then delivered after."""
    db, user = tour.database(), tour.ids["user"]
    notify = db.notify
    notify.register_deliverer(DemoDesktop(lambda: tour.out))
    notify.register_type("build.failed", category="project", template="{project} failed")
    zone, offset = _night_zone(db.clock.now_ms())
    notify.set_timezone(user, zone)
    notify.set_preferences(
        user, "build.failed", delivery_methods=["desktop", "log"], quiet_hours=("22:00", "07:00")
    )
    local = dt.datetime.now(notify.timezone(user)).strftime("%H:%M")
    tour.out.print(
        f"Ada's quiet hours are 22:00-07:00; the demo puts her in {zone} ({offset}), "
        f"where it is night now: {local}."
    )
    sent = notify.send(user, "build.failed", {"project": "site"}, project_id=tour.ids["project"])
    states = {s.method: s for s in notify.deliveries(sent.id)}
    if sent.scheduled_at is None:
        raise CommandError("the demo's notification was not held through quiet hours")
    held_until = sent.scheduled_at
    until = dt.datetime.fromtimestamp(held_until / 1000, notify.timezone(user)).strftime("%H:%M")
    tour.out.print(
        f"Sent '{sent.message}': status {sent.status}; "
        f"log: {states['log'].status}; desktop: {states['desktop'].status}, held until {until}."
    )
    report = notify.deliver_due()
    tour.out.print(f"The scheduler runs now: {report.delivered} delivered (still quiet hours).")
    tour.out.print(f"The scheduler runs at {until} her time:")
    report = notify.deliver_due(now=held_until)
    after = db.notifications.get(sent.id)
    tour.out.print(f"{report.delivered} delivered; the notification is now {after.status}.")


# -- sync through a local sync server --------------------------------------------------


def sync_through_server(tour: Tour) -> None:
    """Start a sync server on loopback, attach this database, join a second device
    through the join URL, and send a change each way."""
    if not _server_available(tour, "the sync server"):
        sync_in_memory(tour)
        return
    from mangostore.sync.joining import join
    from mangostore.sync.server.app import create_app
    from mangostore.sync.server.sqlite_store import SqliteRelayStore

    laptop, user = tour.database(), tour.ids["user"]
    relay_path = tour.folder / "relay.db"
    store = SqliteRelayStore(relay_path)
    tour.on_cleanup("closed the sync server's store", store.close)
    server = LoopbackServer(create_app(store))
    server.start()
    tour.on_cleanup(f"stopped the sync server on port {server.port}", server.stop)
    tour.out.print(f"Sync server listening on {server.url} (store: {relay_path.name}).")
    join_url = laptop.sync.attach(server.url)
    laptop.sync.sync()
    tour.out.print(f"The laptop (demo.db) attached; others join with {join_url}")
    desktop = join(join_url, tour.folder / "desktop.db", passphrase=DEMO_PASSPHRASE).db
    tour.on_cleanup("closed desktop.db", desktop.close)
    tour.out.print(
        f"The desktop joined through that URL and synced: it has "
        f"{desktop.users.count()} users and {desktop.command_history.count()} commands."
    )
    laptop.command_history.create(
        user_id=user, command="make demo", command_type="keyboard", timestamp=now_ms()
    )
    laptop.sync.sync()
    desktop.sync.sync()
    newest = desktop.command_history.list(order_by="-timestamp", limit=1)[0]
    tour.out.print(f"laptop -> desktop: the desktop now has the command {newest.command!r}.")
    desktop.users.update(user, preferences={"theme": "light", "voice": True})
    desktop.sync.sync()
    laptop.sync.sync()
    prefs = laptop.users.get(user).preferences
    tour.out.print(f"desktop -> laptop: the laptop now has preferences {json.dumps(prefs)}.")
    stored = b"".join(p.read_bytes() for p in tour.folder.glob("relay.db*") if p.is_file())
    tour.out.print(
        f"The server keeps {len(stored):,} bytes, none of them readable: "
        f"'{DEMO_EMAIL}' appears in them: {DEMO_EMAIL.encode() in stored}."
    )


def sync_in_memory(tour: Tour) -> None:
    """Without the server extra: two devices of the vault sync through a relay in memory."""
    from mangostore.sync import MemoryRelay

    laptop, user = tour.database(), tour.ids["user"]
    relay = MemoryRelay()  # keeps only sealed batches, as the sync server would
    laptop.sync.enable(relay)
    desktop, _key = laptop.sync.new_device(tour.folder / "desktop.db", DEMO_PASSPHRASE)
    tour.on_cleanup("closed desktop.db", desktop.close)
    desktop.sync.connect(relay)
    laptop.sync.sync()
    desktop.sync.sync()
    tour.out.print(f"Instead, a relay in memory: the desktop has {desktop.users.count()} users.")
    desktop.users.update(user, preferences={"theme": "light", "voice": True})
    desktop.sync.sync()
    laptop.sync.sync()
    prefs = laptop.users.get(user).preferences
    tour.out.print(f"desktop -> laptop: the laptop now has preferences {json.dumps(prefs)}.")


# -- backup and restore ----------------------------------------------------------------


def backup_and_restore(tour: Tour) -> None:
    """Back up to a folder, verify the backup, restore it into a new database, and
    compare the row counts."""
    db = tour.database()
    folder = tour.folder / "backups"
    manifest = db.backup.create(folder)
    tour.out.print(
        f"Backup {manifest.id} ({manifest.kind}): {manifest.plain_bytes:,} bytes of rows, "
        f"{manifest.stored_bytes:,} stored (zstd, then AES-256-GCM) in {folder.name}/."
    )
    verified = db.backup.verify(folder)
    tour.out.print(
        f"Verified: {verified.ok} ({verified.objects_checked} objects' SHA-256, the "
        "signature, and a trial restore)."
    )
    into = tour.folder / "restored.db"
    restored = db.backup.restore(into, passphrase=DEMO_PASSPHRASE, to=folder)
    with mangostore.open(into, DEMO_PASSPHRASE, create=False) as copy:
        in_copy = {t.name: t.rows for t in copy.status().tables}
    table = Table(title="Rows: the backup's snapshot and the restored database")
    for column in ("Table", "Backed up", "Restored"):
        table.add_column(column)
    for name, rows in sorted(manifest.tables.items()):
        if rows and not is_internal_table(name):
            table.add_row(name, str(rows), str(in_copy.get(name, "missing")))
    tour.out.print(table)
    same = all(restored.tables.get(name) == rows for name, rows in manifest.tables.items())
    tour.out.print(
        f"Restored into {into.name} (it opens with the passphrase); all "
        f"{len(manifest.tables)} tables' row counts match: {same}."
    )
    if not same:
        raise CommandError("the restored database's row counts differ from the backup's")


# -- the HTTP API ----------------------------------------------------------------------


def api_request(tour: Tour) -> None:
    """Serve the HTTP API on loopback, log in over HTTP, and ask who is logged in."""
    if not _server_available(tour, "the HTTP API"):
        return
    from mangostore.api import create_app

    server = LoopbackServer(create_app(tour.database()))
    server.start()
    tour.on_cleanup(f"stopped the HTTP API on port {server.port}", server.stop)
    with httpx.Client(base_url=server.url, timeout=10.0) as client:
        login = client.post("/v1/login", json={"username": "ops", "password": DEMO_PASSWORD})
        tour.out.print(f"POST {server.url}/v1/login  -> {login.status_code}")
        headers = {"Authorization": f"Bearer {login.json()['token']}"}
        me = client.get("/v1/me", headers=headers)
        body = me.json()
        tour.out.print(
            f"GET  /v1/me  -> {me.status_code}  username {body['user']['username']!r}, "
            f"session {body['session']['security_level']}"
        )
        denied = client.get("/v1/commands", headers=headers)
        tour.out.print(
            f"GET  /v1/commands  -> {denied.status_code} {denied.json().get('title')} "
            "(no grant: denied, and the denial is audited)"
        )


# -- stats -----------------------------------------------------------------------------


def stats_with_recommendations(tour: Tour) -> None:
    """Run a query the indexes do not serve, then show the performance report's
    figures and its recommendations for the application's tables."""
    db = tour.database()
    for _ in range(3):
        db.query(
            "SELECT count(*) FROM command_history WHERE working_directory = ?",
            ("/home/ada/code/mango",),
            use_cache=False,
        )
    report = db.performance_report()
    disk, query = report.disk_usage, report.query_performance
    tour.out.print(
        f"File {human_bytes(disk.file_bytes)}, WAL {human_bytes(disk.wal_bytes)}; "
        f"{query.total_queries:,} statements timed ({query.total_time_ms:,.1f} ms), "
        f"{query.slow_runs} slow."
    )
    for tier in report.cache_performance.tiers:
        if tier.available and tier.hit_rate is not None:
            tour.out.print(f"The {tier.tier} cache answered {tier.hit_rate:.0%} of lookups.")
    tables = {t.name for t in db.status().tables if not is_internal_table(t.name)}
    # Index advice about mangostore's own tables (and indexes a short run left unused)
    # is counted, not listed: the full report lists it.
    about_indexes = ("add_index", "drop_unused_index")
    shown = [
        r
        for r in report.recommendations
        if r.kind not in about_indexes or r.subject is None or r.subject in tables
    ]
    hidden = Counter(r.kind for r in report.recommendations if r not in shown)
    tour.out.print("Recommendations:")
    for item in shown:
        tour.out.print(Text(f"  [{item.severity}] {item.message}"))
        if item.action:
            tour.out.print(Text(f"    do: {item.action}"))
    if not shown:
        tour.out.print("  none: nothing measured calls for a change")
    tour.out.print(
        f"Not listed here: {hidden['add_index']} index suggestions for mangostore's own "
        f"tables and {hidden['drop_unused_index']} indexes this short run did not use; "
        "`mangostore stats PATH` shows the whole report."
    )


def clean_up(tour: Tour) -> None:
    """Stop the servers and close every database."""
    for what in tour.clean_up():
        tour.out.print(what[:1].upper() + what[1:] + ".")
