"""The key hierarchy on its own: KDF bounds, sub-keys, recovery keys and the keyring sidecar.

Tests here drive :mod:`mangostore.keys` directly; opening databases is in
``test_open.py``. Private attributes (``_master``) are read only to check that key
material never shows where it must not.
"""

from __future__ import annotations

import base64
import json
import multiprocessing
import threading
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.conftest import FAST_KDF, PASSPHRASE

from mangostore import KdfParams
from mangostore.errors import (
    ConfigurationError,
    KeyringCorruptError,
    KeyringError,
    KeyringMissingError,
    WrongPassphraseError,
)
from mangostore.keys import kdf as kdf_module
from mangostore.keys.kdf import (
    MAX_ITERATIONS,
    MAX_MEMORY_KIB,
    MAX_PARALLELISM,
    MIN_ITERATIONS,
    MIN_MEMORY_KIB,
    derive_kek,
)
from mangostore.keys.keyring import (
    MAX_KEYRING_BYTES,
    DataKeyEntry,
    Keyring,
    format_recovery_key,
    keyring_path,
    parse_recovery_key,
)
from mangostore.keys.keyring_file import checksum
from mangostore.keys.subkeys import PURPOSES, derive_subkey

BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def secret_forms(ring: Keyring, *extra: str) -> list[str]:
    """Every text form in which a key of ``ring`` (or an ``extra`` secret) could leak."""
    keys = [ring._master, *(ring.subkey(p) for p in PURPOSES)]
    forms = [*extra]
    for key in keys:
        forms += [key.hex(), key.hex().upper(), base64.b64encode(key).decode(), repr(key)]
    return forms


def forbid_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any Argon2id derivation fail the test."""

    def refuse(**_: Any) -> bytes:
        """Stand in for Argon2id and fail."""
        raise AssertionError("Argon2id ran although the parameters should have been refused")

    monkeypatch.setattr(kdf_module, "hash_secret_raw", refuse)


@pytest.fixture
def ring_file(tmp_path: Path) -> tuple[Path, Keyring, str]:
    """A keyring written to disk: its path, the unlocked keyring and its recovery key."""
    path = keyring_path(tmp_path / "vault.db")
    ring, recovery = Keyring.create(path, PASSPHRASE, FAST_KDF, page_encryption=True)
    return path, ring, recovery


def reseal_checksum(doc: dict[str, Any]) -> None:
    """Recompute the keyless checksum, as a deliberate editor of the file would."""
    doc["checksum"] = checksum(doc)


# -- KDF parameters ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        KdfParams(memory_kib=1),
        KdfParams(memory_kib=MIN_MEMORY_KIB - 1),
        KdfParams(memory_kib=10**9),
        KdfParams(memory_kib=MAX_MEMORY_KIB + 1),
        KdfParams(iterations=MIN_ITERATIONS - 1),
        KdfParams(iterations=MAX_ITERATIONS + 1),
        KdfParams(parallelism=0),
        KdfParams(parallelism=MAX_PARALLELISM + 1),
        KdfParams(memory_kib=True),
        KdfParams(iterations=2.5),  # type: ignore[arg-type]
        KdfParams(parallelism="4"),  # type: ignore[arg-type]
    ],
    ids=repr,
)
def test_unsafe_kdf_params_are_refused_before_derivation(
    params: KdfParams, monkeypatch: pytest.MonkeyPatch
) -> None:
    forbid_argon2(monkeypatch)
    with pytest.raises(ConfigurationError, match="outside the safe range"):
        params.check()
    with pytest.raises(ConfigurationError):
        derive_kek(PASSPHRASE, b"s" * 16, params)


def test_kdf_bounds_are_inclusive() -> None:
    KdfParams(MIN_MEMORY_KIB, MIN_ITERATIONS, 1).check()
    KdfParams(MAX_MEMORY_KIB, MAX_ITERATIONS, MAX_PARALLELISM).check()
    FAST_KDF.check()
    KdfParams().check()


def test_kdf_json_round_trip() -> None:
    assert KdfParams.from_json(FAST_KDF.to_json()) == FAST_KDF


@pytest.mark.parametrize(
    "record",
    [
        None,
        [],
        {"alg": "scrypt", "memory_kib": 65536, "iterations": 3, "parallelism": 4},
        {"alg": "argon2id", "iterations": 3, "parallelism": 4},
        {"alg": "argon2id", "memory_kib": 1, "iterations": 3, "parallelism": 4},
        {"alg": "argon2id", "memory_kib": 10**9, "iterations": 3, "parallelism": 4},
        {"alg": "argon2id", "memory_kib": 65536.0, "iterations": 3, "parallelism": 4},
    ],
)
def test_kdf_record_from_keyring_is_validated(record: Any) -> None:
    with pytest.raises(KeyringCorruptError):
        KdfParams.from_json(record)


def test_derive_kek_is_deterministic_and_salted() -> None:
    salt = b"\x01" * 16
    first = derive_kek(PASSPHRASE, salt, FAST_KDF)
    assert len(first) == 32
    assert derive_kek(PASSPHRASE, salt, FAST_KDF) == first
    assert derive_kek(PASSPHRASE, b"\x02" * 16, FAST_KDF) != first
    assert derive_kek(PASSPHRASE + "!", salt, FAST_KDF) != first


def test_derive_kek_refuses_empty_passphrase_and_short_salt() -> None:
    with pytest.raises(ConfigurationError, match="non-empty"):
        derive_kek("", b"s" * 16, FAST_KDF)
    with pytest.raises(ConfigurationError, match="salt"):
        derive_kek(PASSPHRASE, b"short", FAST_KDF)


def test_passphrase_is_unicode_normalised() -> None:
    """The same passphrase typed composed or decomposed gives the same key."""
    composed = "caf\u00e9 cr\u00e8me br\u00fbl\u00e9e"
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    salt = b"\x03" * 16
    assert derive_kek(composed, salt, FAST_KDF) == derive_kek(decomposed, salt, FAST_KDF)


def test_argon2_failure_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from argon2.exceptions import HashingError

    def fail(**_: Any) -> bytes:
        """Fail as Argon2id does when it cannot allocate its memory."""
        raise HashingError("Memory allocation error")

    monkeypatch.setattr(kdf_module, "hash_secret_raw", fail)
    with pytest.raises(ConfigurationError, match="smaller KDF parameters") as info:
        derive_kek(PASSPHRASE, b"s" * 16, FAST_KDF)
    assert PASSPHRASE not in str(info.value)


# -- sub-keys ---------------------------------------------------------------------------


def test_subkeys_are_distinct_per_purpose() -> None:
    master = bytes(range(32))
    keys = {p: derive_subkey(master, p, salt=b"vault") for p in PURPOSES}
    assert len(set(keys.values())) == len(PURPOSES)
    assert all(len(k) == 32 for k in keys.values())
    assert master not in keys.values()


def test_subkeys_are_deterministic_per_master_and_vault() -> None:
    master = bytes(range(32))
    for purpose in PURPOSES:
        first = derive_subkey(master, purpose, salt=b"vault")
        assert derive_subkey(master, purpose, salt=b"vault") == first
        assert derive_subkey(master, purpose, salt=b"other vault") != first
        assert derive_subkey(bytes(32), purpose, salt=b"vault") != first


@pytest.mark.parametrize("purpose", ["", "Page", "pages", "master", "page ", "blind_index"])
def test_unknown_purpose_is_a_value_error(purpose: str) -> None:
    with pytest.raises(ValueError, match="unknown key purpose"):
        derive_subkey(bytes(32), purpose, salt=b"vault")


def test_keyring_subkeys_match_hkdf_of_master(ring_file: tuple[Path, Keyring, str]) -> None:
    _, ring, _ = ring_file
    for purpose in PURPOSES:
        expected = derive_subkey(ring._master, purpose, salt=ring.vault_id.encode())
        assert ring.subkey(purpose) == expected
    with pytest.raises(ValueError, match="unknown key purpose"):
        ring.subkey("nonsense")


# -- recovery key text ------------------------------------------------------------------


@st.composite
def retyped_recovery_keys(draw: st.DrawFn) -> tuple[bytes, str]:
    """32 random bytes and their recovery key as a person might retype it."""
    raw = draw(st.binary(min_size=32, max_size=32))
    chars = format_recovery_key(raw).replace("-", "")
    out = []
    for ch in chars:
        out.append(draw(st.sampled_from([ch.upper(), ch.lower()])))
        out.append(draw(st.sampled_from(["", "", "-", " ", "  ", " - "])))
    return raw, draw(st.sampled_from(["", " ", "\t"])) + "".join(out)


@given(st.binary(min_size=32, max_size=32))
def test_recovery_key_round_trip(raw: bytes) -> None:
    text = format_recovery_key(raw)
    assert parse_recovery_key(text) == raw
    groups = text.split("-")
    assert len(groups) == 13
    assert all(len(g) == 4 and set(g) <= set(BASE32) for g in groups)


@given(retyped_recovery_keys())
def test_recovery_key_survives_retyping(case: tuple[bytes, str]) -> None:
    raw, typed = case
    assert parse_recovery_key(typed) == raw


@given(st.text())
def test_recovery_key_garbage_is_refused(text: str) -> None:
    cleaned = "".join(ch for ch in text.upper() if ch.isalnum())
    if len(cleaned) == 52 and set(cleaned) <= set(BASE32):
        return  # a well-formed key by chance: nothing to refuse
    with pytest.raises(WrongPassphraseError, match="not a mangostore recovery key") as info:
        parse_recovery_key(text)
    if len(text.strip()) >= 8:  # the message never echoes what was typed
        assert text not in str(info.value)


@given(
    st.binary(min_size=32, max_size=32),
    st.integers(min_value=0, max_value=51),
    st.sampled_from(["0", "1", "8", "9", "drop", "add"]),
)
def test_recovery_key_near_misses_are_refused(raw: bytes, index: int, change: str) -> None:
    chars = format_recovery_key(raw).replace("-", "")
    if change == "drop":
        typed = chars[:index] + chars[index + 1 :]
    elif change == "add":
        typed = chars[:index] + "A" + chars[index:]
    else:
        typed = chars[:index] + change + chars[index + 1 :]
    with pytest.raises(WrongPassphraseError):
        parse_recovery_key(typed)


# -- creating and unlocking -------------------------------------------------------------


def test_create_then_unlock_with_passphrase_and_recovery_key(
    ring_file: tuple[Path, Keyring, str],
) -> None:
    path, ring, recovery = ring_file
    by_pass = Keyring.unlock(path, passphrase=PASSPHRASE)
    by_recovery = Keyring.unlock(path, recovery_key=recovery.lower().replace("-", " "))
    assert by_pass._master == ring._master == by_recovery._master
    assert by_pass.vault_id == ring.vault_id
    assert by_pass.kdf == FAST_KDF
    assert by_pass.page_encryption is True
    assert path.stat().st_mode & 0o777 == 0o600


def test_wrong_passphrase_and_recovery_key(ring_file: tuple[Path, Keyring, str]) -> None:
    path, _, recovery = ring_file
    before = path.read_bytes()
    with pytest.raises(WrongPassphraseError, match="wrong passphrase"):
        Keyring.unlock(path, passphrase=PASSPHRASE + " ")
    other = format_recovery_key(bytes(32))
    assert other != recovery
    with pytest.raises(WrongPassphraseError, match="wrong recovery key"):
        Keyring.unlock(path, recovery_key=other)
    with pytest.raises(ConfigurationError):
        Keyring.unlock(path)
    assert path.read_bytes() == before


def test_unlock_missing_keyring(tmp_path: Path) -> None:
    with pytest.raises(KeyringMissingError, match="restore it"):
        Keyring.unlock(tmp_path / "nowhere.db.keyring", passphrase=PASSPHRASE)


def test_create_refuses_to_overwrite_a_keyring(ring_file: tuple[Path, Keyring, str]) -> None:
    path, _, _ = ring_file
    before = path.read_bytes()
    with pytest.raises(KeyringError, match="stale keyring") as info:
        Keyring.create(path, "another passphrase", FAST_KDF, page_encryption=True)
    assert not isinstance(info.value, KeyringMissingError | KeyringCorruptError)
    assert path.read_bytes() == before


def test_create_does_not_overwrite_a_keyring_that_appears_meanwhile(
    ring_file: tuple[Path, Keyring, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two creators racing: the one that finishes second must not replace the first's keyring."""
    path, _, _ = ring_file
    before = path.read_bytes()
    real_exists = Path.exists
    # The early check sees nothing, as if the other creator wrote just after it.
    monkeypatch.setattr(Path, "exists", lambda self: False if self == path else real_exists(self))
    with pytest.raises(KeyringError, match="stale keyring"):
        Keyring.create(path, "another passphrase", FAST_KDF, page_encryption=True)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".keyring-")] == []


def test_create_with_empty_passphrase_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "x.db.keyring"
    with pytest.raises(ConfigurationError):
        Keyring.create(path, "", FAST_KDF, page_encryption=True)
    assert not path.exists()


def test_create_refuses_unsafe_params(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_argon2(monkeypatch)
    path = tmp_path / "x.db.keyring"
    with pytest.raises(ConfigurationError):
        Keyring.create(path, PASSPHRASE, KdfParams(memory_kib=1), page_encryption=True)
    assert not path.exists()


def test_repr_and_describe_show_no_key(ring_file: tuple[Path, Keyring, str]) -> None:
    _, ring, recovery = ring_file
    shown = repr(ring) + repr(ring.describe()) + str(ring.describe())
    for secret in secret_forms(ring, PASSPHRASE, recovery):
        assert secret not in shown
    assert ring.vault_id in shown


def test_sidecar_holds_no_secret(ring_file: tuple[Path, Keyring, str]) -> None:
    path, ring, recovery = ring_file
    ring.put_data_key(DataKeyEntry("k1", "user-1", b"w" * 60))
    text = path.read_text()
    for secret in secret_forms(ring, PASSPHRASE, recovery, recovery.replace("-", "")):
        assert secret not in text


# -- damaged keyrings -------------------------------------------------------------------


def _flip_b64(text: str) -> str:
    """Change one character in the middle of base64 text to another valid one."""
    i = len(text) // 2
    return text[:i] + ("B" if text[i] != "B" else "C") + text[i + 1 :]


def _edit_doc(fn: Any) -> Any:
    """Turn an edit of the parsed keyring into an edit of its bytes."""

    def edit(raw: bytes) -> bytes:
        """Apply the edit to ``raw`` and serialise the result."""
        doc = json.loads(raw)
        fn(doc)
        return json.dumps(doc).encode()

    return edit


DAMAGE = {
    "empty": lambda raw: b"",
    "truncated JSON": lambda raw: raw[: len(raw) // 2],
    "not JSON": lambda raw: b"\x00\xff\xfe not json at all",
    "not UTF-8": lambda raw: raw.replace(b'"format"', b'"\xff\xfeormat"'),
    "JSON list": lambda raw: b"[1, 2, 3]",
    "huge": lambda raw: raw + b" " * (MAX_KEYRING_BYTES + 1),
    "flipped salt": _edit_doc(lambda d: d["kdf"].update(salt=_flip_b64(d["kdf"]["salt"]))),
    "flipped passphrase slot": _edit_doc(
        lambda d: d["master"].update(passphrase=_flip_b64(d["master"]["passphrase"]))
    ),
    "flipped recovery slot": _edit_doc(
        lambda d: d["master"].update(recovery=_flip_b64(d["master"]["recovery"]))
    ),
    "flipped data key": _edit_doc(
        lambda d: d["data_keys"]["k1"].update(wrapped=_flip_b64(d["data_keys"]["k1"]["wrapped"]))
    ),
    "flipped mac": _edit_doc(lambda d: d.update(mac=_flip_b64(d["mac"]))),
    "invalid base64": _edit_doc(lambda d: d["kdf"].update(salt="!!!" + d["kdf"]["salt"][3:])),
    "edited vault_id": _edit_doc(
        lambda d: d.update(vault_id="00000000-0000-4000-8000-000000000000")
    ),
    "edited erased_users": _edit_doc(lambda d: d["erased_users"].append("someone")),
    "removed erased user": _edit_doc(lambda d: d.update(erased_users=[])),
    "removed data key": _edit_doc(lambda d: d.update(data_keys={})),
    "page encryption off": _edit_doc(lambda d: d.update(page_encryption=False)),
    "format version 2": _edit_doc(lambda d: d.update(version=2)),
    "format version '1'": _edit_doc(lambda d: d.update(version="1")),
    "no format version": _edit_doc(lambda d: d.pop("version")),
    "other format": _edit_doc(lambda d: d.update(format="something-else")),
    "no checksum": _edit_doc(lambda d: d.pop("checksum")),
    "no master": _edit_doc(lambda d: d.pop("master")),
    "memory_kib=1": _edit_doc(lambda d: d["kdf"].update(memory_kib=1)),
    "memory_kib=10**9": _edit_doc(lambda d: d["kdf"].update(memory_kib=10**9)),
}


@pytest.fixture
def full_ring_file(ring_file: tuple[Path, Keyring, str]) -> tuple[Path, Keyring, str]:
    """A keyring with a data key and an erased user, so every field has content."""
    path, ring, recovery = ring_file
    ring.put_data_key(DataKeyEntry("k1", "user-1", b"w" * 60))
    ring.destroy_user_keys("user-0")
    return path, ring, recovery


@pytest.mark.parametrize("damage", list(DAMAGE), ids=str)
@pytest.mark.parametrize("unlock_with", ["passphrase", "recovery key"])
def test_damaged_keyring_is_refused_before_derivation(
    damage: str,
    unlock_with: str,
    full_ring_file: tuple[Path, Keyring, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Damage is reported as damage, never as a wrong passphrase, and costs no Argon2id run."""
    path, ring, recovery = full_ring_file
    damaged = DAMAGE[damage](path.read_bytes())
    path.write_bytes(damaged)
    forbid_argon2(monkeypatch)
    kwargs = {"passphrase": PASSPHRASE} if unlock_with == "passphrase" else {}
    if unlock_with == "recovery key":
        kwargs = {"recovery_key": recovery}
    with pytest.raises(KeyringCorruptError) as info:
        Keyring.unlock(path, **kwargs)
    message = str(info.value)
    assert "restore" in message or "upgrade" in message or "not a mangostore keyring" in message
    for secret in secret_forms(ring, PASSPHRASE, recovery):
        assert secret not in message
    assert path.read_bytes() == damaged  # a failed unlock never rewrites the keyring


@pytest.mark.parametrize(
    ("field", "value"),
    [("memory_kib", 1), ("memory_kib", 10**9), ("iterations", 1), ("parallelism", 10**6)],
)
def test_deliberately_weakened_params_are_refused_before_derivation(
    field: str, value: int, ring_file: tuple[Path, Keyring, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An edit that also fixes the checksum still meets the floor and ceiling."""
    path, _, _ = ring_file
    doc = json.loads(path.read_bytes())
    doc["kdf"][field] = value
    reseal_checksum(doc)
    path.write_text(json.dumps(doc))
    forbid_argon2(monkeypatch)
    with pytest.raises(KeyringCorruptError, match=field):
        Keyring.unlock(path, passphrase=PASSPHRASE)


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["erased_users"].append("someone"),
        lambda d: d.update(data_keys={}),
        lambda d: d.update(page_encryption=not d["page_encryption"]),
        lambda d: d["data_keys"].update(k9={"user_id": "x", "wrapped": "AAAA"}),
    ],
)
def test_deliberate_edit_with_fixed_checksum_fails_the_mac(
    edit: Any, full_ring_file: tuple[Path, Keyring, str]
) -> None:
    path, _, recovery = full_ring_file
    doc = json.loads(path.read_bytes())
    edit(doc)
    reseal_checksum(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(KeyringCorruptError, match="MAC"):
        Keyring.unlock(path, passphrase=PASSPHRASE)
    with pytest.raises(KeyringCorruptError, match="MAC"):
        Keyring.unlock(path, recovery_key=recovery)


def test_keyring_changed_under_an_open_keyring_is_noticed(
    full_ring_file: tuple[Path, Keyring, str],
) -> None:
    path, ring, _ = full_ring_file
    doc = json.loads(path.read_bytes())
    doc["erased_users"] = []
    reseal_checksum(doc)
    path.write_text(json.dumps(doc))
    tampered = path.read_bytes()
    with pytest.raises(KeyringCorruptError):
        ring.erased_users()
    with pytest.raises(KeyringCorruptError):
        ring.put_data_key(DataKeyEntry("k2", "user-2", b"w" * 60))
    assert path.read_bytes() == tampered


# -- passphrase changes -----------------------------------------------------------------


def test_change_passphrase_rewraps_only_the_master_key(
    full_ring_file: tuple[Path, Keyring, str],
) -> None:
    path, ring, recovery = full_ring_file
    before = json.loads(path.read_bytes())
    ring.change_passphrase(PASSPHRASE, "new passphrase")
    after = json.loads(path.read_bytes())
    assert after["master"]["recovery"] == before["master"]["recovery"]
    assert after["master"]["passphrase"] != before["master"]["passphrase"]
    assert after["kdf"]["salt"] != before["kdf"]["salt"]
    assert after["data_keys"] == before["data_keys"]
    with pytest.raises(WrongPassphraseError):
        Keyring.unlock(path, passphrase=PASSPHRASE)
    assert Keyring.unlock(path, passphrase="new passphrase")._master == ring._master
    assert Keyring.unlock(path, recovery_key=recovery)._master == ring._master


@pytest.mark.parametrize("old", ["not it", "", PASSPHRASE.upper()])
def test_change_passphrase_with_wrong_old_changes_nothing(
    old: str, ring_file: tuple[Path, Keyring, str]
) -> None:
    path, ring, _ = ring_file
    before = path.read_bytes()
    with pytest.raises(WrongPassphraseError, match="nothing was changed") as info:
        ring.change_passphrase(old, "new passphrase")
    assert "new passphrase" not in str(info.value)
    assert path.read_bytes() == before
    assert ring.kdf == FAST_KDF


def test_change_passphrase_to_empty_is_refused(ring_file: tuple[Path, Keyring, str]) -> None:
    path, ring, _ = ring_file
    before = path.read_bytes()
    with pytest.raises(ConfigurationError):
        ring.change_passphrase(PASSPHRASE, "")
    with pytest.raises(ConfigurationError):
        ring.reset_passphrase("")
    assert path.read_bytes() == before


def test_change_passphrase_can_raise_kdf_cost(ring_file: tuple[Path, Keyring, str]) -> None:
    path, ring, _ = ring_file
    stronger = KdfParams(memory_kib=MIN_MEMORY_KIB, iterations=3, parallelism=2)
    ring.change_passphrase(PASSPHRASE, "new passphrase", stronger)
    assert ring.kdf == stronger
    assert Keyring.unlock(path, passphrase="new passphrase").kdf == stronger


def test_reset_passphrase_after_recovery(ring_file: tuple[Path, Keyring, str]) -> None:
    path, ring, recovery = ring_file
    recovered = Keyring.unlock(path, recovery_key=recovery)
    recovered.reset_passphrase("fresh passphrase")
    with pytest.raises(WrongPassphraseError):
        Keyring.unlock(path, passphrase=PASSPHRASE)
    assert Keyring.unlock(path, passphrase="fresh passphrase")._master == ring._master
    assert Keyring.unlock(path, recovery_key=recovery)._master == ring._master


def test_in_memory_keyring_is_never_written(tmp_path: Path) -> None:
    ring, recovery = Keyring.create(None, PASSPHRASE, FAST_KDF, page_encryption=True)
    ring.put_data_key(DataKeyEntry("k1", "u1", b"w" * 60))
    assert ring.get_data_key("k1") == DataKeyEntry("k1", "u1", b"w" * 60)
    ring.change_passphrase(PASSPHRASE, "other")
    assert ring.destroy_user_keys("u1") == ["k1"]
    assert ring.erased_users() == ["u1"]
    assert parse_recovery_key(recovery)
    assert list(tmp_path.iterdir()) == []


# -- the per-user key block and concurrency ---------------------------------------------


@pytest.mark.parametrize("in_memory", [False, True], ids=["file", "memory"])
def test_regression_keyring_update_deadlocked_on_its_own_lock(
    in_memory: bool, tmp_path: Path
) -> None:
    """Every read-modify-write took the keyring's lock, then asked for a sub-key under it."""
    path = None if in_memory else tmp_path / "x.db.keyring"
    ring, _ = Keyring.create(path, PASSPHRASE, FAST_KDF, page_encryption=True)
    calls = [
        lambda: ring.put_data_key(DataKeyEntry("k1", "u1", b"w" * 60)),
        lambda: ring.destroy_user_keys("u1"),
        lambda: ring.change_passphrase(PASSPHRASE, "other"),
        lambda: ring.reset_passphrase(PASSPHRASE),
    ]
    worker = threading.Thread(target=lambda: [call() for call in calls], daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "a keyring update never finished"
    assert ring.erased_users() == ["u1"]


def test_data_keys_round_trip_and_destroy(ring_file: tuple[Path, Keyring, str]) -> None:
    path, ring, _ = ring_file
    ring.put_data_key(DataKeyEntry("k1", "alice", b"a" * 60))
    ring.put_data_key(DataKeyEntry("k2", "bob", b"b" * 60))
    ring.put_data_key(DataKeyEntry("k3", "alice", b"c" * 60))
    other = Keyring.unlock(path, passphrase=PASSPHRASE)
    assert other.get_data_key("k2") == DataKeyEntry("k2", "bob", b"b" * 60)
    assert sorted(e.key_id for e in other.data_keys()) == ["k1", "k2", "k3"]
    assert sorted(other.destroy_user_keys("alice")) == ["k1", "k3"]
    assert ring.get_data_key("k1") is None  # seen through the file, not the stale copy
    assert ring.erased_users() == ["alice"]
    assert other.destroy_user_keys("alice") == []
    assert ring.erased_users() == ["alice"]
    assert Keyring.unlock(path, passphrase=PASSPHRASE).describe()["data_keys"] == 1
    # The list of erased users is read again once another handle changed the file.
    assert other.destroy_user_keys("bob") == ["k2"]
    assert sorted(ring.erased_users()) == ["alice", "bob"]


def test_concurrent_put_data_key_from_threads_loses_nothing(
    ring_file: tuple[Path, Keyring, str],
) -> None:
    path, _, _ = ring_file
    rings = [Keyring.unlock(path, passphrase=PASSPHRASE) for _ in range(2)]
    per_thread = 25
    start = threading.Barrier(4)
    failures: list[BaseException] = []

    def put_many(ring: Keyring, prefix: str) -> None:
        """Add ``per_thread`` keys once every thread is ready."""
        try:
            start.wait()
            for i in range(per_thread):
                ring.put_data_key(DataKeyEntry(f"{prefix}-{i}", prefix, b"k" * 60))
        except BaseException as exc:
            failures.append(exc)

    # Two threads per Keyring object and two objects over the same file: both the
    # in-process lock and the file lock are exercised.
    threads = [threading.Thread(target=put_many, args=(rings[n % 2], f"t{n}")) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert failures == []
    keys = {e.key_id for e in Keyring.unlock(path, passphrase=PASSPHRASE).data_keys()}
    assert keys == {f"t{n}-{i}" for n in range(4) for i in range(per_thread)}


def _put_keys_in_process(path: str, prefix: str, count: int) -> None:
    """Child process body: unlock the keyring and add ``count`` data keys."""
    ring = Keyring.unlock(Path(path), passphrase=PASSPHRASE)
    for i in range(count):
        ring.put_data_key(DataKeyEntry(f"{prefix}-{i}", prefix, b"k" * 60))


@pytest.mark.slow
def test_concurrent_put_data_key_from_processes_loses_nothing(
    ring_file: tuple[Path, Keyring, str],
) -> None:
    path, _, _ = ring_file
    context = multiprocessing.get_context("spawn")
    per_process = 20
    workers = [
        context.Process(target=_put_keys_in_process, args=(str(path), f"p{n}", per_process))
        for n in range(3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    keys = {e.key_id for e in Keyring.unlock(path, passphrase=PASSPHRASE).data_keys()}
    assert keys == {f"p{n}-{i}" for n in range(3) for i in range(per_process)}
