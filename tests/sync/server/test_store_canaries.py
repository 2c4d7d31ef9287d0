"""The sync server's store holds no plaintext: canary texts sealed into batches and a
snapshot by a device are nowhere in the SQLite file's bytes or in the PostgreSQL rows
(read back as bytes and as text), in any letter case.

A control text pushed unsealed must be found by the same search, so the search
really reads what the store keeps.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.sync.server.conftest import StoreTarget

from mangostore.sync.batches import Batch, open_batch, open_body, pack_body, seal_batch, seal_doc
from mangostore.sync.changes import Cell, RowState, encode_state
from mangostore.sync.server.sql_store import SqlRelayStore

VAULT = "vault-canary"
DEVICE = "dev-canary"
NOW = 1_700_000_000_000
CANARIES = [
    "zqcanaryusername",
    "zq.canary.mail@example.org",
    "ZqCanaryPreferenceValue",
    "/home/zq/canary-project-path",
    "zq canary message to the assistant",
    "zq-canary-memory-value",
]
CONTROL = "zq-control-sent-unsealed"


def _states(round_: int) -> list[list[object]]:
    """Row states carrying every canary, as a device encodes them."""
    user = RowState(
        "users",
        f"u{round_}",
        NOW + round_,
        DEVICE,
        False,
        {
            "id": f"u{round_}",
            "username": CANARIES[0],
            "email": CANARIES[1],
            "preferences": f'{{"note": "{CANARIES[2]}"}}',
            "voice_print": CANARIES[5].encode(),
        },
        {"username": Cell(NOW + round_, DEVICE, None)},
        {},
    )
    project = RowState(
        "projects",
        f"p{round_}",
        NOW + round_,
        DEVICE,
        False,
        {"id": f"p{round_}", "user_id": f"u{round_}", "path": CANARIES[3], "name": CANARIES[4]},
    )
    return [encode_state(user), encode_state(project)]


def _sealed_history(store: SqlRelayStore, key: bytes) -> list[Batch]:
    store.create_vault(VAULT, os.urandom(32), NOW)
    store.admit_device(VAULT, DEVICE, NOW)
    batches = [
        seal_batch(
            key,
            vault_id=VAULT,
            device_id=DEVICE,
            number=n,
            schema_version=3,
            states=_states(n),
            erasures=[],
            keys=[],
            ack=0,
        )
        for n in range(1, 6)
    ]
    for batch in batches:
        store.push(VAULT, DEVICE, batch.number, 3, batch.body, NOW)
    snapshot = seal_doc(key, b"snapshot/0", pack_body(_states(99), [], [], 5))
    store.put_snapshot_part(VAULT, "snap", DEVICE, 5, 3, 0, True, snapshot, NOW)
    store.push(VAULT, "dev-control", 1, 3, CONTROL.encode(), NOW)
    return batches


def _sqlite_bytes(target: StoreTarget) -> bytes:
    """The store's file and its write-ahead log, as they are on disk."""
    db = Path(target.location)
    return b"".join(p.read_bytes() for p in sorted(db.parent.glob(db.name + "*")))


def _postgres_rows(target: StoreTarget) -> tuple[bytes, str]:
    """Every row of every table of the store, as raw values and as PostgreSQL text."""
    import psycopg
    from psycopg import sql

    raw: list[bytes] = []
    text: list[str] = []
    with psycopg.connect(target.location) as conn:
        tables = [
            str(name)
            for (name,) in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (target.schema,),
            )
        ]
        assert "relay_batches" in tables
        assert "relay_snapshot_parts" in tables
        for table in tables:
            name = sql.Identifier(target.schema, table)
            for row in conn.execute(sql.SQL("SELECT * FROM {}").format(name)):
                raw.extend(v if isinstance(v, bytes) else str(v).encode() for v in row)
            for (whole,) in conn.execute(sql.SQL("SELECT t::text FROM {} AS t").format(name)):
                text.append(str(whole))
    return b"\n".join(raw), "\n".join(text)


def test_the_store_holds_no_canary_in_clear(
    relay_target: StoreTarget, relay_store: SqlRelayStore
) -> None:
    key = os.urandom(32)
    batches = _sealed_history(relay_store, key)

    # The canaries are in what the store keeps, sealed: a device opens them again.
    stored = relay_store.pull(VAULT, 0, 100)
    assert [b.body for b in stored[:5]] == [b.body for b in batches]
    reopened = open_batch(key, Batch(VAULT, DEVICE, 1, 3, stored[0].body))
    assert reopened.states[0].values["username"] == CANARIES[0]
    latest = relay_store.latest_snapshot(VAULT)
    assert latest is not None
    part = relay_store.snapshot_part(VAULT, latest.snapshot_id, 0)
    assert part is not None
    assert open_body(key, b"snapshot/0", part, "snapshot").states[1].values["path"] == CANARIES[3]

    if relay_target.kind == "sqlite":
        places = {"file": _sqlite_bytes(relay_target).lower()}
    else:
        raw, text = _postgres_rows(relay_target)
        places = {"rows": raw.lower(), "rows as text": text.lower().encode()}
    assert CONTROL.encode() in places.get("file", places.get("rows", b""))
    for place, found in places.items():
        for canary in CANARIES:
            assert canary.lower().encode() not in found, f"the store's {place} hold {canary!r}"
