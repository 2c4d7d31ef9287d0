"""A year of use and more: the queries a terminal runs most, on histories of growing size.

Three encrypted databases are built side by side in a temporary folder, holding
``Config.rows`` times 1, 10 and 100 commands (10,000, 100,000 and 1,000,000 at the
default scale; ``--quick`` and ``--smoke`` stop at 10 times), and as many
notifications and audit events. The rows go in through the raw engine
(``executemany`` on a ``sqlcipher3`` connection keyed with the page key, the
database's own triggers firing as for any write), because loading is not what is
measured here; the file is the one ``mangostore.open`` made and reads.

The history is one person's terminal use, a command every minute and a half of
working time with nights in between, with a second person's commands mixed in (one in
twenty): ``git`` in about half of the commands, ``pytest`` in a few percent, a deploy
tag in five commands spread over the whole history, an old project's name only in the
oldest commands, and a two-character term in five commands.

Every repository query the library itself runs on these tables is timed, with the
query cache off (each call reads the database, as after a write), and each size is
compared with the smallest: the ratio column is the growth. Recent-N queries read an
index from its newest end, so they should not grow at all.
"""

from __future__ import annotations

import random
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import mangostore
from bench.harness import Config, Measurement, Suite, raw_connection
from mangostore import KdfParams, Settings

PASSPHRASE: Final = "bench: correct horse battery staple"
#: The cheapest Argon2id parameters mangostore accepts: setup only.
FAST_KDF: Final = KdfParams(memory_kib=19_456, iterations=2, parallelism=1)
#: History sizes, as multiples of ``Config.rows``; quick and smoke runs stop at 10.
FACTORS: Final = (1, 10, 100)
#: Rows per ``executemany`` while loading.
CHUNK: Final = 20_000
#: A fixed start (Monday 2 January 2023, 08:00 UTC): the same history on every run.
START_MS: Final = 1_672_646_400_000
DAY_MS: Final = 86_400_000
#: Search terms, from everywhere to almost nowhere.
COMMON_TERM: Final = "git"
MEDIUM_TERM: Final = "pytest"
RARE_TERM: Final = "deploy-canary"
OLD_TERM: Final = "legacy-billing"
SHORT_COMMON_TERM: Final = "ls"
SHORT_RARE_TERM: Final = "zq"
#: Commands holding RARE_TERM or SHORT_RARE_TERM, spread over the whole history.
RARE_COUNT: Final = 5
#: OLD_TERM appears only among this many oldest commands (in a fifth of them).
OLD_SPAN: Final = 5_000
#: Notifications still unread (or undelivered) are among this many newest.
UNREAD_SPAN: Final = 500

# The generator's alphabet has no z or q, so SHORT_RARE_TERM appears only where put.
_SYLLABLES: Final = tuple(c + v for c in "bdfgklmnprstvw" for v in "aeiou")
_TEMPLATES: Final = (
    ("git status", 12),
    ("git diff {file}", 5),
    ("git add {file}", 5),
    ("git commit -m 'fix {word} in {word}'", 5),
    ("git push origin {branch}", 3),
    ("git pull --rebase", 3),
    ("git checkout -b {branch}", 2),
    ("git log --oneline -n {n}", 2),
    ("ls -la {dir}", 8),
    ("cd {dir}", 10),
    ("cat {file}", 4),
    ("vim {file}", 5),
    ("make", 2),
    ("make test", 4),
    ("pytest tests/test_{word}.py -k {word}", 4),
    ("python -m {word}", 2),
    ("npm run {word}", 2),
    ("cargo test {word}", 2),
    ("docker compose up -d {word}", 1),
    ("kubectl get pods -n {word}", 1),
    ("grep -rn {word} {dir}", 3),
    ("rg {word} {dir}", 3),
    ("curl -s https://{word}.example.org/api/{word}", 1),
    ("tail -f /var/log/{word}.log", 1),
)
_EXTENSIONS: Final = ("py", "ts", "md", "toml", "rs", "json")


@dataclass(frozen=True, slots=True)
class History:
    """One built database and what its queries need."""

    path: Path
    size: int
    user_id: str
    project_id: str
    since_ms: int
    tail_seq: int


# -- data -------------------------------------------------------------------------------


class _Maker:
    """Makes the rows of one history, deterministically."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        rnd = self.random
        self.words = [
            "".join(rnd.choice(_SYLLABLES) for _ in range(rnd.randint(2, 4))) for _ in range(400)
        ]
        self.dirs = [f"~/src/{w}" for w in self.words[:40]]
        folders = ("src", "lib", "tests", "docs")
        self.files = [
            f"{rnd.choice(folders)}/{rnd.choice(self.words)}.{rnd.choice(_EXTENSIONS)}"
            for _ in range(3_000)
        ]
        templates, weights = zip(*_TEMPLATES, strict=True)
        self.templates: tuple[str, ...] = templates
        self.weights: tuple[int, ...] = weights

    def uuid(self, ms: int) -> str:
        """A UUIDv7-shaped id at ``ms``, from the seeded generator."""
        bits = self.random.getrandbits(74)
        value = (ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | (bits >> 62) << 64 | 0b10 << 62
        return str(uuid.UUID(int=value | (bits & ((1 << 62) - 1))))

    def command(self) -> str:
        rnd = self.random
        template = rnd.choices(self.templates, self.weights)[0]
        return template.format_map(_Fill(self))

    def output(self) -> str | None:
        rnd = self.random
        if rnd.random() >= 0.3:
            return None
        lines = rnd.randint(1, 6)
        return "\n".join(
            f"{rnd.choice(self.words)} {rnd.choice(self.files)} ok" for _ in range(lines)
        )


class _Fill(dict[str, str]):
    """Fills a command template's fields with fresh random values."""

    def __init__(self, maker: _Maker) -> None:
        super().__init__()
        self.maker = maker

    def __missing__(self, key: str) -> str:
        m, rnd = self.maker, self.maker.random
        if key == "file":
            return rnd.choice(m.files)
        if key == "dir":
            return rnd.choice(m.dirs)
        if key == "branch":
            return f"feature/{rnd.choice(m.words)}-{rnd.randint(1, 999)}"
        if key == "n":
            return str(rnd.randint(1, 50))
        return rnd.choice(m.words)


def _timestamps(maker: _Maker, count: int) -> Iterator[int]:
    """One person's working time: a command every 90 s on average, a night every 400."""
    ts = START_MS
    for n in range(count):
        ts += int(maker.random.expovariate(1 / 90_000)) + 1
        if n % 400 == 399:
            ts += 14 * 3_600_000
        yield ts


def _command_rows(
    maker: _Maker, size: int, users: tuple[str, str], projects: list[str]
) -> Iterator[tuple[Any, ...]]:
    rnd = maker.random
    step = max(1, size // RARE_COUNT)
    for n, ts in enumerate(_timestamps(maker, size)):
        user = users[1] if n % 20 == 19 else users[0]
        command = maker.command()
        if n % step == step // 2:
            command = f"./deploy.sh {RARE_TERM}-{n} && echo {SHORT_RARE_TERM}"
        elif n < OLD_SPAN and n % 5 == 0:
            command = f"cd ~/src/{OLD_TERM} && make run"
        kind = rnd.choices(("keyboard", "voice", "ai"), (7, 2, 1))[0]
        exit_code = rnd.choices((0, 1, 2, 127, 130), (85, 10, 2, 2, 1))[0]
        project = rnd.choice(projects) if user == users[0] and rnd.random() < 0.8 else None
        yield (
            maker.uuid(ts),
            user,
            project,
            command,
            kind,
            int(rnd.lognormvariate(5, 1.5)),
            exit_code,
            maker.output(),
            rnd.choice(maker.dirs),
            ts,
            round(rnd.uniform(0.6, 1.0), 3) if kind == "voice" else None,
            int(kind == "ai"),
        )


COMMAND_COLUMNS: Final = (
    "id",
    "user_id",
    "project_id",
    "command",
    "command_type",
    "execution_time",
    "exit_code",
    "output",
    "working_directory",
    "timestamp",
    "voice_confidence",
    "ai_suggested",
)
NOTIFICATION_COLUMNS: Final = (
    "id",
    "user_id",
    "project_id",
    "notification_type_id",
    "title",
    "message",
    "priority",
    "status",
    "delivered_at",
    "read_at",
    "dismissed_at",
    "expires_at",
    "created_at",
)
EVENT_COLUMNS: Final = (
    "id",
    "user_id",
    "event_type",
    "severity",
    "source_component",
    "risk_score",
    "resolved",
    "timestamp",
    "seq",
)


def _notification_rows(
    maker: _Maker, size: int, users: tuple[str, str], projects: list[str], types: list[str]
) -> Iterator[tuple[Any, ...]]:
    rnd = maker.random
    for n, ts in enumerate(_timestamps(maker, size)):
        user = users[1] if n % 20 == 19 else users[0]
        # Old notifications were read or dismissed long ago; the unread are recent.
        weights = (50, 10, 30, 5, 5) if n >= size - UNREAD_SPAN else (75, 25, 0, 0, 0)
        status = rnd.choices(("read", "dismissed", "delivered", "pending", "failed"), weights)[0]
        delivered = ts + 500 if status in ("read", "dismissed", "delivered") else None
        yield (
            maker.uuid(ts),
            user,
            rnd.choice(projects) if user == users[0] and rnd.random() < 0.5 else None,
            rnd.choice(types),
            f"{rnd.choice(maker.words)} finished",
            f"{rnd.choice(maker.words)} in {rnd.choice(maker.dirs)} took {rnd.randint(1, 600)} s",
            rnd.choices(("low", "normal", "high", "critical"), (20, 60, 15, 5))[0],
            status,
            delivered,
            ts + 60_000 if status == "read" else None,
            ts + 90_000 if status == "dismissed" else None,
            ts + 7 * DAY_MS if rnd.random() < 0.1 else None,
            ts,
        )


def _event_rows(maker: _Maker, size: int, users: tuple[str, str]) -> Iterator[tuple[Any, ...]]:
    rnd = maker.random
    for n, ts in enumerate(_timestamps(maker, size)):
        draw = n % 20
        user = users[1] if draw == 19 else None if draw == 18 else users[0]
        kind, component = rnd.choices(
            (
                ("auth", "auth.login"),
                ("access", "permissions"),
                ("command", "terminal"),
                ("data", "privacy"),
                ("auth", "sessions"),
            ),
            (30, 30, 25, 5, 10),
        )[0]
        yield (
            maker.uuid(ts),
            user,
            kind,
            rnd.choices(("info", "warning", "error", "critical"), (85, 10, 4, 1))[0],
            component,
            round(rnd.random(), 3),
            0,
            ts,
            n + 1,
        )


def build(folder: Path, size: int) -> History:
    """Make an encrypted database in ``folder`` holding ``size`` commands, notifications
    and audit events, and return what the timed queries need."""
    path = folder / f"history-{size}.db"
    settings = Settings(kdf=FAST_KDF)
    with mangostore.create(path, passphrase=PASSPHRASE, settings=settings).db as db:
        assert db.keyring is not None
        page_key = db.keyring.subkey("page")
        person = db.users.create(username="ann").id
        other = db.users.create(username="bob").id
        projects = [
            db.projects.create(user_id=person, name=f"p{n}", path=f"/home/ann/src/p{n}").id
            for n in range(12)
        ]
        types = [
            db.notify.register_type(name, category="project", template="{title}").id
            for name in ("build_finished", "tests_failed", "deploy_done", "review", "reminder")
        ]
    maker = _Maker(seed=size)
    users = (person, other)
    writer = raw_connection(path, page_key, writer=True)
    try:
        for table, columns, rows in (
            ("command_history", COMMAND_COLUMNS, _command_rows(maker, size, users, projects)),
            (
                "notifications",
                NOTIFICATION_COLUMNS,
                _notification_rows(maker, size, users, projects, types),
            ),
            ("security_events", EVENT_COLUMNS, _event_rows(maker, size, users)),
        ):
            _load(writer, table, columns, rows)
        last_ts = writer.execute("SELECT max(timestamp) FROM command_history").fetchone()[0]
    finally:
        writer.close()
    return History(
        path=path,
        size=size,
        user_id=person,
        project_id=projects[0],
        since_ms=int(last_ts) - 7 * DAY_MS,
        tail_seq=max(0, size - 50),
    )


def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def _load(
    writer: Any, table: str, columns: tuple[str, ...], rows: Iterator[tuple[Any, ...]]
) -> None:
    sql = _insert_sql(table, columns)
    while True:
        chunk = [row for _, row in zip(range(CHUNK), rows, strict=False)]
        if not chunk:
            return
        writer.execute("BEGIN IMMEDIATE")
        writer.executemany(sql, chunk)
        writer.execute("COMMIT")


# -- the queries --------------------------------------------------------------------------

#: A timed query: its group name, calls per round at scale 1, and the call itself.
Query = tuple[str, int, Callable[[mangostore.Database, History], object]]

QUERIES: Final[tuple[Query, ...]] = (
    (
        "command_history.recent(limit=20)",
        50,
        lambda db, h: db.command_history.recent(h.user_id, limit=20),
    ),
    (
        "command_history.list(user_id, order_by='-timestamp', limit=20)",
        50,
        lambda db, h: db.command_history.list(user_id=h.user_id, order_by="-timestamp", limit=20),
    ),
    (
        "command_history.recent(project, limit=20)",
        50,
        lambda db, h: db.command_history.recent(h.user_id, h.project_id, limit=20),
    ),
    (
        f"command_history.search({COMMON_TERM!r}): half the commands",
        20,
        lambda db, h: db.command_history.search(h.user_id, COMMON_TERM),
    ),
    (
        f"command_history.search({MEDIUM_TERM!r}): a few percent",
        20,
        lambda db, h: db.command_history.search(h.user_id, MEDIUM_TERM),
    ),
    (
        f"command_history.search({RARE_TERM!r}): five commands",
        10,
        lambda db, h: db.command_history.search(h.user_id, RARE_TERM),
    ),
    (
        f"command_history.search({OLD_TERM!r}): oldest commands only",
        10,
        lambda db, h: db.command_history.search(h.user_id, OLD_TERM),
    ),
    (
        f"command_history.search({SHORT_COMMON_TERM!r}): two characters, common",
        20,
        lambda db, h: db.command_history.search(h.user_id, SHORT_COMMON_TERM),
    ),
    (
        f"command_history.search({SHORT_RARE_TERM!r}): two characters, five commands",
        10,
        lambda db, h: db.command_history.search(h.user_id, SHORT_RARE_TERM),
    ),
    ("command_history.stats()", 10, lambda db, h: db.command_history.stats(h.user_id)),
    (
        "command_history.stats(since=a week ago)",
        10,
        lambda db, h: db.command_history.stats(h.user_id, since=h.since_ms),
    ),
    (
        "command_history.count(user_id): reads every entry",
        3,
        lambda db, h: db.command_history.count(user_id=h.user_id),
    ),
    ("notify.unread(limit=20)", 50, lambda db, h: db.notify.unread(h.user_id, limit=20)),
    ("notify.history(limit=20)", 50, lambda db, h: db.notify.history(h.user_id, limit=20)),
    (
        "notify.history(status='read', limit=20)",
        50,
        lambda db, h: db.notify.history(h.user_id, status="read", limit=20),
    ),
    (
        "notifications.count(user_id, status='delivered')",
        50,
        lambda db, h: db.notifications.count(user_id=h.user_id, status="delivered"),
    ),
    (
        "audit.events(user_id, limit=50): the oldest",
        20,
        lambda db, h: db.audit.events(user_id=h.user_id, limit=50),
    ),
    (
        "audit.events(user_id, after_seq): the newest",
        20,
        lambda db, h: db.audit.events(user_id=h.user_id, after_seq=h.tail_seq),
    ),
    (
        "security_events.list(user_id, order_by='-seq', limit=20)",
        50,
        lambda db, h: db.security_events.list(user_id=h.user_id, order_by="-seq", limit=20),
    ),
    ("audit.count(): reads every entry", 3, lambda db, h: db.audit.count()),
)


def sizes(config: Config) -> list[int]:
    """History sizes for ``config``: up to 100 times ``Config.rows`` in a full run, 10
    times in a quick or smoke one."""
    factors = FACTORS if config.scale >= 1 else FACTORS[:2]
    return [config.rows * f for f in factors]


def run(config: Config) -> list[Measurement]:
    """Build the histories in a temporary folder, time every query on each, return the rows."""
    results: list[Measurement] = []
    with tempfile.TemporaryDirectory(prefix="mangostore-bench-") as tmp:
        histories = [build(Path(tmp), size) for size in sizes(config)]
        # The query cache off: every call reads the file, as the first call after a write.
        settings = Settings(kdf=FAST_KDF, cache_queries=False)
        databases = [
            mangostore.open(h.path, passphrase=PASSPHRASE, settings=settings) for h in histories
        ]
        try:
            for group, number, query in QUERIES:
                suite = Suite(f"history: {group}", config)
                first = None
                for db, history in zip(databases, histories, strict=True):
                    name = f"{history.size:,} rows"
                    suite.add(
                        name,
                        lambda db=db, history=history, query=query: query(db, history),
                        number=number,
                        baseline=first,
                    )
                    first = first or name
                results += suite.run()
            results += _bench_writes(config, Path(tmp))
        finally:
            for db in databases:
                db.close()
    return results


def _bench_writes(config: Config, folder: Path) -> list[Measurement]:
    """What the indexes, the trigram index and the weekly totals cost a write: the same
    rows inserted by ``executemany`` before migration 15 and after it."""
    suite = Suite("history: command_history executemany, 1,000 rows", config)
    settings = Settings(kdf=FAST_KDF)
    sql = _insert_sql("command_history", COMMAND_COLUMNS)
    before = "schema 14 (before the history indexes)"
    writers = []
    try:
        for version, label in ((14, before), (None, "latest schema")):
            path = folder / f"writes-{version}.db"
            with mangostore.create(path, passphrase=PASSPHRASE, settings=settings).db as db:
                assert db.keyring is not None
                page_key = db.keyring.subkey("page")
                person = db.users.create(username="ann").id
                project = db.projects.create(user_id=person, name="p", path="/p").id
                if version is not None:
                    db.migrate(to=version)
            maker = _Maker(seed=7)
            batches = iter(
                [
                    list(_command_rows(maker, 1_000, (person, person), [project]))
                    for _ in range(config.total_calls(1))
                ]
            )
            writer = raw_connection(path, page_key, writer=True)
            writers.append(writer)

            def once(writer: Any = writer, batches: Iterator[Any] = batches) -> None:
                writer.execute("BEGIN IMMEDIATE")
                writer.executemany(sql, next(batches))
                writer.execute("COMMIT")

            suite.add(label, once, number=1, baseline=None if version is not None else before)
        return suite.run()
    finally:
        for writer in writers:
            writer.close()
