"""The reader pool: bounds, acquire timeout, idle expiry (with a fake clock), closing."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import sqlcipher3
from tests.conftest import FAST_KDF, PASSPHRASE

import mangostore
from mangostore import Settings
from mangostore.engine.pool import ReaderPool
from mangostore.errors import DatabaseClosedError, PoolTimeoutError


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Factory:
    """Makes real in-memory connections and remembers them."""

    def __init__(self) -> None:
        self.made: list[Any] = []
        self.fail_next = False

    def __call__(self) -> Any:
        if self.fail_next:
            self.fail_next = False
            raise OSError("cannot open")
        conn = sqlcipher3.connect(":memory:", isolation_level=None, check_same_thread=False)
        self.made.append(conn)
        return conn


def is_closed(conn: Any) -> bool:
    try:
        conn.execute("SELECT 1")
    except sqlcipher3.ProgrammingError:
        return True
    return False


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def factory() -> Factory:
    return Factory()


def make_pool(
    factory: Factory,
    clock: FakeClock,
    *,
    max_size: int = 3,
    acquire_timeout_s: float = 0,
    idle_timeout_s: float = 30,
) -> ReaderPool:
    return ReaderPool(
        factory,
        max_size=max_size,
        acquire_timeout_s=acquire_timeout_s,
        idle_timeout_s=idle_timeout_s,
        clock=clock,
    )


def test_defaults_follow_the_design(encrypted_db: mangostore.Database) -> None:
    assert Settings().pool_max_readers == 10
    assert encrypted_db.store.pool is not None
    stats = encrypted_db.store.pool.stats()
    assert stats.max_size == 10
    assert stats.open <= 1  # made lazily


def test_connections_are_made_lazily_and_reused(factory: Factory, clock: FakeClock) -> None:
    pool = make_pool(factory, clock)
    assert pool.stats().open == 0
    with pool.reader() as first:
        pass
    with pool.reader() as second:
        assert second is first
    assert len(factory.made) == 1


def test_most_recently_used_first(factory: Factory, clock: FakeClock) -> None:
    pool = make_pool(factory, clock)
    with pool.reader() as a, pool.reader() as b:
        pass
    # a was returned last, so it is handed out first.
    with pool.reader() as again:
        assert again is a
    with pool.reader() as again:
        assert again is a
    with pool.reader() as x, pool.reader() as y:
        assert {x, y} == {a, b}


def test_bounded_and_timeout(factory: Factory, clock: FakeClock) -> None:
    pool = make_pool(factory, clock, max_size=2)
    with pool.reader(), pool.reader():
        stats = pool.stats()
        assert (stats.open, stats.in_use, stats.idle) == (2, 2, 0)
        with pytest.raises(PoolTimeoutError, match="pool_max_readers"), pool.reader():
            pass
    assert len(factory.made) == 2
    assert pool.stats().idle == 2


def test_waiter_gets_a_returned_connection(factory: Factory, clock: FakeClock) -> None:
    pool = make_pool(factory, clock, max_size=1, acquire_timeout_s=60)
    got: list[Any] = []
    with pool.reader() as held:
        waiter = threading.Thread(target=lambda: got.append(pool._acquire()))
        waiter.start()
        while pool.stats().waiting == 0:
            waiter.join(0.001)
    waiter.join()
    assert got == [held]
    assert pool.stats().waiting == 0
    pool._release(got[0])


def test_waiter_times_out_by_the_clock(factory: Factory) -> None:
    class Ticking(FakeClock):
        """Every reading moves time on by one second."""

        def __call__(self) -> float:
            self.now += 1
            return self.now

    pool = ReaderPool(factory, max_size=1, acquire_timeout_s=2, idle_timeout_s=100, clock=Ticking())
    with pool.reader(), pytest.raises(PoolTimeoutError), pool.reader():
        pass
    assert pool.stats().waiting == 0


def test_idle_connections_expire(factory: Factory, clock: FakeClock) -> None:
    pool = make_pool(factory, clock, idle_timeout_s=30)
    with pool.reader() as a, pool.reader() as b:
        pass
    clock.advance(29)
    pool.sweep()
    assert pool.stats().open == 2
    assert not is_closed(a)
    clock.advance(1)
    pool.sweep()
    assert pool.stats().open == 0
    assert is_closed(a)
    assert is_closed(b)


def test_expired_connections_are_closed_on_acquire(factory: Factory, clock: FakeClock) -> None:
    pool = make_pool(factory, clock, idle_timeout_s=30)
    with pool.reader() as old:
        pass
    clock.advance(31)
    with pool.reader() as new:
        assert new is not old
        assert is_closed(old)
        assert pool.stats().open == 1


def test_expired_connections_are_closed_on_release(factory: Factory, clock: FakeClock) -> None:
    pool = make_pool(factory, clock, idle_timeout_s=30)
    with pool.reader() as busy:
        with pool.reader() as idle:
            pass
        clock.advance(31)
    assert is_closed(idle)
    assert not is_closed(busy)
    assert pool.stats().open == 1


def test_recently_used_connection_survives(factory: Factory, clock: FakeClock) -> None:
    pool = make_pool(factory, clock, idle_timeout_s=30)
    with pool.reader() as conn:
        pass
    for _ in range(5):
        clock.advance(20)
        with pool.reader() as again:
            assert again is conn
    assert len(factory.made) == 1


def test_factory_failure_frees_the_slot(factory: Factory, clock: FakeClock) -> None:
    pool = make_pool(factory, clock, max_size=1)
    factory.fail_next = True
    with pytest.raises(OSError, match="cannot open"), pool.reader():
        pass
    assert pool.stats().open == 0
    with pool.reader():
        assert pool.stats().open == 1


def test_transaction_left_open_is_rolled_back(factory: Factory, clock: FakeClock) -> None:
    pool = make_pool(factory, clock)
    with pool.reader() as conn:
        conn.execute("BEGIN")
    assert not conn.in_transaction
    with pool.reader() as again:
        assert again is conn


def test_broken_connection_is_discarded(factory: Factory, clock: FakeClock) -> None:
    pool = make_pool(factory, clock)
    with pool.reader() as conn:
        conn.execute("BEGIN")
        conn.close()
    assert pool.stats().open == 0
    with pool.reader() as fresh:
        assert fresh is not conn


def test_close(factory: Factory, clock: FakeClock) -> None:
    pool = make_pool(factory, clock)
    with pool.reader() as lent:
        with pool.reader() as idle:
            pass
        pool.close()
        assert is_closed(idle)
        assert not is_closed(lent)  # still in use
    assert is_closed(lent)
    assert pool.stats().open == 0
    with pytest.raises(DatabaseClosedError), pool.reader():
        pass


def test_close_wakes_waiters(factory: Factory, clock: FakeClock) -> None:
    pool = make_pool(factory, clock, max_size=1, acquire_timeout_s=60)
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            pool._acquire()
        except BaseException as exc:
            errors.append(exc)

    with pool.reader():
        waiter = threading.Thread(target=wait)
        waiter.start()
        while pool.stats().waiting == 0:
            waiter.join(0.001)
        pool.close()
        waiter.join()
    assert len(errors) == 1
    assert isinstance(errors[0], DatabaseClosedError)


# -- through the database -------------------------------------------------------------


def test_query_times_out_when_every_reader_is_busy(db_path: Path) -> None:
    settings = Settings(kdf=FAST_KDF, pool_max_readers=2, pool_acquire_timeout_ms=0)
    with mangostore.create(db_path, passphrase=PASSPHRASE, settings=settings).db as db:
        assert db.store.pool is not None
        with db.store.pool.reader(), db.store.pool.reader():
            with pytest.raises(PoolTimeoutError):
                db.query("SELECT 1")
            # Inside a transaction, reads use the writer and need no reader.
            with db.transaction():
                assert db.query("SELECT 1")[0][0] == 1
        assert db.query("SELECT 1")[0][0] == 1


def test_query_that_begins_is_refused(encrypted_db: mangostore.Database) -> None:
    # A reader left inside BEGIN would pin an old snapshot for every later query.
    with pytest.raises(mangostore.errors.QueryError):
        encrypted_db.query("BEGIN")
    encrypted_db.execute(
        "INSERT INTO users (id, username, created_at, updated_at) VALUES ('u', 'a', 1, 1)"
    )
    assert encrypted_db.query("SELECT count(*) FROM users")[0][0] == 1


def test_pool_idle_timeout_setting_is_used(db_path: Path) -> None:
    settings = Settings(kdf=FAST_KDF, pool_idle_timeout_ms=1500, pool_acquire_timeout_ms=2500)
    with mangostore.create(db_path, passphrase=PASSPHRASE, settings=settings).db as db:
        assert db.store.pool is not None
        assert db.store.pool._idle_timeout_s == 1.5
        assert db.store.pool._acquire_timeout_s == 2.5
