"""Pseudonymisation and anonymisation.

**Pseudonyms.** A user's pseudonym is ``p-`` and 20 base-32 characters of
HMAC-SHA256(``pseudonym`` sub-key, user id): the same person gets the same pseudonym
on every device of the vault (the sub-key comes from the vault's master key), another
vault gives another one, and nothing about the person can be computed from it.
:func:`pseudonymize` replaces the user's direct identifiers with it: the user name
becomes the pseudonym, the e-mail address is cleared, and the user's plain text
columns (paths, commands and their output, titles, names, descriptions, JSON values)
have every occurrence of the user name, the address and its local part replaced.

**Re-identification** needs a :class:`ReidentificationKey`, made by the caller and
kept apart from the database, its keyring and its passphrase (mangostore never
stores it). Given one, :func:`pseudonymize` seals the replaced user name and address
under it (AES-256-GCM, bound to the vault, the user and the pseudonym) into the data
of a ``privacy.pseudonymize`` audit event; :func:`reidentify` opens it again. Without
the key the seal is opaque; after an erasure the event's data is gone with the user's
data key.

The **analytics export** (:func:`export_analytics`) writes command history as CSV
with only derived columns: the user's pseudonym, a keyed pseudonym of the project, the
day, the program's name, type, exit code, duration, voice confidence and whether the
assistant suggested it. No free text, path, id or exact time is ever written.

**Anonymisation** (:func:`anonymize_commands`) is what a retention policy with
``anonymize=True`` does to old command history: the rows stay for statistics (type,
duration, exit code, voice confidence, the day) but are moved to the anonymous
statistics user, keep only the program's name as the command, and lose output,
working directory, project and terminal session.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mangostore.engine.connection import driver_errors
from mangostore.engine.pragmas import Connection
from mangostore.errors import (
    ConfigurationError,
    InvalidValueError,
    NotFoundError,
    TamperedDataError,
    ValidationError,
)
from mangostore.privacy.common import refuse_inside_transaction, select_dicts
from mangostore.privacy.ownership import read_schema
from mangostore.sql import quote_identifier

if TYPE_CHECKING:
    from mangostore.privacy.ports import PrivacyDatabase, RetentionDatabase

__all__ = [
    "ANALYTICS_COLUMNS",
    "ANONYMOUS_USERNAME",
    "ANONYMOUS_USER_ID",
    "PSEUDONYMIZED_COLUMNS",
    "PSEUDONYM_COMPONENT",
    "AnalyticsExport",
    "PseudonymReport",
    "ReidentificationKey",
    "Reidentified",
    "anonymize_commands",
    "export_analytics",
    "pseudonym_of",
    "pseudonymize",
    "reidentify",
]

#: The audit component of the event :func:`pseudonymize` appends.
PSEUDONYM_COMPONENT: Final = "privacy.pseudonymize"
#: The user that owns anonymised rows (a foreign key needs one); it names nobody.
ANONYMOUS_USER_ID: Final = "00000000-0000-7000-8000-000000000000"
ANONYMOUS_USERNAME: Final = "anonymous-statistics"
#: The columns of a user's rows in which their identifiers are replaced: plain text
#: and JSON (encrypted columns are sealed under the user's own key and left alone).
PSEUDONYMIZED_COLUMNS: Final[Mapping[str, tuple[str, ...]]] = {
    "projects": ("name", "display_name", "path", "metadata", "git_config"),
    "terminal_sessions": ("name", "working_directory"),
    "voice_profiles": ("name",),
    "command_history": ("command", "output", "working_directory"),
    "notifications": ("title", "message"),
    "ai_conversations": ("title",),
    "ai_memory": ("key_name", "value_data"),
    "user_sessions": ("user_agent",),
    "kg_entities": ("name", "description", "metadata"),
    "kg_observations": ("content", "context"),
}
#: Identifying columns cleared outright (an IP address is personal data by itself).
_CLEARED: Final[Mapping[str, tuple[str, ...]]] = {"user_sessions": ("ip_address",)}
_JSON_COLUMNS: Final = frozenset(
    {"metadata", "git_config", "value_data", "context"},
)
_SEAL_LABEL: Final = b"mangostore/pseudonym/v1"
_KEY_PREFIX: Final = "mrk1-"
_SHORT_NAME: Final = 3
_PROGRAM: Final = re.compile(r"[A-Za-z0-9._+-]{1,40}")
_ANONYMIZED: Final = "[anonymized]"


class ReidentificationKey:
    """The key that turns a pseudonym back into the person's user name and address.

    Make one with :meth:`generate`, save :meth:`to_text` somewhere apart from the
    database, its keyring and its passphrase (a password manager, another machine):
    whoever holds the database and its passphrase can then still not re-identify.
    ``repr`` never shows the key.
    """

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) != 32:
            raise InvalidValueError("a re-identification key is 32 bytes", field="key")
        self._key = key

    def __repr__(self) -> str:
        return f"<ReidentificationKey {self.key_id}>"

    @classmethod
    def generate(cls) -> ReidentificationKey:
        """A new random key."""
        return cls(os.urandom(32))

    @classmethod
    def from_text(cls, text: str) -> ReidentificationKey:
        """Read a key written by :meth:`to_text`.

        Raises:
            InvalidValueError: the text is not such a key.
        """
        body = text.strip()
        if not body.startswith(_KEY_PREFIX):
            raise InvalidValueError(
                f"a re-identification key starts with {_KEY_PREFIX!r}; check what was pasted",
                field="key",
            )
        encoded = body[len(_KEY_PREFIX) :]
        try:
            raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except ValueError:
            raise InvalidValueError(
                "the re-identification key is not valid base64", field="key"
            ) from None
        return cls(raw)

    def to_text(self) -> str:
        """The key as text (``mrk1-`` and base64url), to store apart from the database."""
        return _KEY_PREFIX + base64.urlsafe_b64encode(self._key).decode("ascii").rstrip("=")

    @property
    def key_id(self) -> str:
        """A short public fingerprint, recorded with each seal to tell keys apart."""
        return hmac.digest(self._key, b"key id", "sha256")[:6].hex()

    def seal(self, plaintext: bytes, associated: bytes) -> bytes:
        """AES-256-GCM: ``nonce || ciphertext+tag``."""
        nonce = os.urandom(12)
        return nonce + AESGCM(self._key).encrypt(nonce, plaintext, associated)

    def open(self, sealed: bytes, associated: bytes) -> bytes:
        """Open what :meth:`seal` made.

        Raises:
            TamperedDataError: wrong key, or the seal was changed or moved.
        """
        try:
            return AESGCM(self._key).decrypt(sealed[:12], sealed[12:], associated)
        except InvalidTag:
            raise TamperedDataError(
                "the re-identification seal does not open with this key: it was made with "
                "another key, or changed; use the key recorded by key_id"
            ) from None


@dataclass(frozen=True, slots=True)
class PseudonymReport:
    """What :func:`pseudonymize` changed: the pseudonym, the rows changed per table, and
    the id of the re-identification key used (``None``: no key, irreversible)."""

    user_id: str
    pseudonym: str
    rows_changed: dict[str, int]
    key_id: str | None


@dataclass(frozen=True, slots=True)
class Reidentified:
    """A pseudonym turned back into the person: their id, user name and address."""

    user_id: str
    username: str
    email: str | None


def _pseudonym_key(db: RetentionDatabase) -> bytes:
    keyring = db.keyring
    if keyring is None:
        raise ConfigurationError(
            "pseudonyms are keyed with the vault's pseudonym key, and this database has no "
            "keyring: open it with a passphrase (encrypted=False still keeps a keyring)"
        )
    return keyring.subkey("pseudonym")


def pseudonym_of(db: RetentionDatabase, user_id: str) -> str:
    """The pseudonym of ``user_id`` in this vault (``p-`` and 20 base-32 characters).

    Raises:
        ConfigurationError: the database has no keyring.
    """
    digest = hmac.digest(_pseudonym_key(db), user_id.encode("utf-8"), "sha256")
    return "p-" + base64.b32encode(digest).decode("ascii").lower()[:20]


def _identifier_pattern(username: str, email: str | None) -> re.Pattern[str] | None:
    """Occurrences of the user name, address and its local part, as whole words."""
    names = [email, email.split("@", 1)[0] if email and "@" in email else None, username]
    words = [n for n in names if n and len(n) >= _SHORT_NAME]
    parts = [re.escape(w) for w in sorted(set(words), key=len, reverse=True)]
    # A short user name is replaced only as a whole path segment: as a word it would
    # hit every "an" or "ed" in the text.
    if username and len(username) < _SHORT_NAME:
        parts.append(rf"(?<=/){re.escape(username)}(?=/|$)")
    if not parts:
        return None
    return re.compile(rf"(?<!\w)(?:{'|'.join(parts)})(?!\w)", re.IGNORECASE)


def _replace(value: Any, pattern: re.Pattern[str], pseudonym: str) -> Any:
    if isinstance(value, str):
        return pattern.sub(pseudonym, value)
    if isinstance(value, list):
        return [_replace(v, pattern, pseudonym) for v in value]
    if isinstance(value, dict):
        return {
            _replace(k, pattern, pseudonym): _replace(v, pattern, pseudonym)
            for k, v in value.items()
        }
    return value


def _changes(
    row: Mapping[str, Any], columns: tuple[str, ...], pattern: re.Pattern[str], pseudonym: str
) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for column in columns:
        stored = row[column]
        if stored is None:
            continue
        value = json.loads(stored) if column in _JSON_COLUMNS else stored
        replaced = _replace(value, pattern, pseudonym)
        if replaced != value:
            found[column] = replaced
    return found


def pseudonymize(
    db: PrivacyDatabase, user_id: str, key: ReidentificationKey | None = None
) -> PseudonymReport:
    """Replace ``user_id``'s direct identifiers with their pseudonym.

    What :meth:`mangostore.privacy.PrivacyService.pseudonymize` does; arguments,
    result and errors as there.
    """
    refuse_inside_transaction(db, "pseudonymize")
    user = db.users.get(user_id)
    pseudonym = pseudonym_of(db, user_id)
    if user.username == pseudonym:
        return PseudonymReport(user_id, pseudonym, {}, None)
    pattern = _identifier_pattern(user.username, user.email)
    changed: dict[str, int] = {}
    with db.store.transaction() as conn:
        schema = read_schema(conn)
        for table, columns in PSEUDONYMIZED_COLUMNS.items():
            if table not in schema.tables:
                continue
            changed[table] = _pseudonymize_table(
                db, conn, table, columns, user_id, pattern, pseudonym
            )
        db.users.update_in(conn, user_id, {"username": pseudonym, "email": None})
        changed["users"] = 1
        data: dict[str, Any] = {"pseudonym": pseudonym, "key_id": None}
        if key is not None:
            originals = json.dumps({"username": user.username, "email": user.email})
            sealed = key.seal(originals.encode("utf-8"), _associated(db, user_id, pseudonym))
            data = {
                "pseudonym": pseudonym,
                "key_id": key.key_id,
                "sealed": base64.b64encode(sealed).decode("ascii"),
            }
        # Inside this transaction: the record commits, or rolls back, with the change.
        db.audit.append("data", "info", PSEUDONYM_COMPONENT, user_id=user_id, event_data=data)
        _compact_indexes(conn)
    db.checkpoint(truncate=True)
    return PseudonymReport(user_id, pseudonym, changed, None if key is None else key.key_id)


def _pseudonymize_table(
    db: PrivacyDatabase,
    conn: Connection,
    table: str,
    columns: tuple[str, ...],
    user_id: str,
    pattern: re.Pattern[str] | None,
    pseudonym: str,
) -> int:
    cleared = _CLEARED.get(table, ())
    selected = ", ".join(quote_identifier(c) for c in ("id", *columns, *cleared))
    rows = select_dicts(
        conn, f"SELECT {selected} FROM {quote_identifier(table)} WHERE user_id = ?", (user_id,)
    )
    repository = getattr(db, table)
    count = 0
    for row in rows:
        fields = {} if pattern is None else _changes(row, columns, pattern, pseudonym)
        fields.update({c: None for c in cleared if row[c] is not None})
        if fields:
            repository.update_in(conn, row["id"], fields, touch=False)
            count += 1
    return count


def _associated(db: RetentionDatabase, user_id: str, pseudonym: str) -> bytes:
    keyring = db.keyring
    vault = keyring.vault_id if keyring is not None else ""
    return b"\x00".join([_SEAL_LABEL, vault.encode(), user_id.encode(), pseudonym.encode()])


def reidentify(db: PrivacyDatabase, pseudonym: str, key: ReidentificationKey) -> Reidentified:
    """Turn ``pseudonym`` back into the person, with the key it was sealed under.

    Raises:
        NotFoundError: no pseudonymisation with this pseudonym was recorded with a key
            (or the user was erased since).
        TamperedDataError: ``key`` is not the key it was sealed under.
    """
    with db.store.snapshot() as conn:
        rows = select_dicts(
            conn,
            "SELECT id, user_id FROM security_events WHERE source_component = ? ORDER BY seq DESC",
            (PSEUDONYM_COMPONENT,),
        )
    for row in rows:
        subject = row["user_id"]
        if subject is None or pseudonym_of(db, str(subject)) != pseudonym:
            continue
        data = db.audit.get(str(row["id"])).event_data
        if not isinstance(data, dict) or data.get("pseudonym") != pseudonym or "sealed" not in data:
            continue
        sealed = base64.b64decode(str(data["sealed"]))
        opened = json.loads(key.open(sealed, _associated(db, str(subject), pseudonym)))
        return Reidentified(str(subject), str(opened["username"]), opened["email"])
    raise NotFoundError(
        f"no re-identifiable pseudonymisation is recorded for {pseudonym!r}: it was made "
        "without a key, by another vault, or the user was erased"
    )


def _program(command: str, username: str | None) -> str:
    """The program's name alone (``git`` of ``/usr/bin/git push``), else a marker."""
    first = command.strip().split(maxsplit=1)[0] if command.strip() else ""
    name = first.rsplit("/", 1)[-1]
    if not _PROGRAM.fullmatch(name) or (username and name.casefold() == username.casefold()):
        return _ANONYMIZED
    return name


def anonymize_commands(db: RetentionDatabase, conn: Connection, cutoff: int) -> int:
    """Anonymise the command history older than ``cutoff``, on ``conn`` (the caller's
    write transaction); return how many rows were anonymised.

    Each row keeps ``command_type``, ``execution_time``, ``exit_code``,
    ``voice_confidence``, ``ai_suggested`` and its day (the timestamp cut to midnight
    UTC); the command becomes the program's name alone; output, working directory,
    project and terminal session are cleared; the row moves to the anonymous user.
    """
    rows = select_dicts(
        conn,
        "SELECT c.id, c.command, u.username FROM command_history c "
        "LEFT JOIN users u ON u.id = c.user_id WHERE c.timestamp < ? AND c.user_id <> ?",
        (cutoff, ANONYMOUS_USER_ID),
    )
    if not rows:
        return 0
    _ensure_anonymous_user(db, conn)
    with driver_errors("anonymising command history"):
        for row in rows:
            conn.execute(
                "UPDATE command_history SET user_id = ?, command = ?, output = NULL, "
                "working_directory = NULL, project_id = NULL, terminal_session_id = NULL, "
                "timestamp = timestamp - (timestamp % 86400000) WHERE id = ?",
                (ANONYMOUS_USER_ID, _program(str(row["command"]), row["username"]), row["id"]),
            )
    _compact_indexes(conn, "command_history")
    return len(rows)


def _compact_indexes(conn: Connection, prefix: str = "") -> None:
    """Merge the segments of the full-text indexes (those of tables named ``prefix``...):
    replaced tokens would otherwise survive in older segments."""
    for fts in read_schema(conn).fts5:
        if fts.startswith(prefix):
            with driver_errors(f"compacting the full-text index {fts}"):
                conn.execute(
                    f"INSERT INTO {quote_identifier(fts)} ({quote_identifier(fts)}) "
                    "VALUES ('optimize')"
                )


def _ensure_anonymous_user(db: RetentionDatabase, conn: Connection) -> None:
    with driver_errors("reading users"):
        found = conn.execute("SELECT 1 FROM users WHERE id = ?", (ANONYMOUS_USER_ID,)).fetchone()
    if found is None:
        users = getattr(db, "users")  # noqa: B009 - not part of RetentionDatabase
        users.insert_in(conn, {"id": ANONYMOUS_USER_ID, "username": ANONYMOUS_USERNAME})


#: The columns of the analytics export, in order: nothing else is ever written.
ANALYTICS_COLUMNS: Final = (
    "user",
    "project",
    "day",
    "program",
    "command_type",
    "exit_code",
    "execution_time_ms",
    "voice_confidence",
    "ai_suggested",
)


@dataclass(frozen=True, slots=True)
class AnalyticsExport:
    """The file :func:`export_analytics` wrote, its row count and SHA-256."""

    path: Path
    rows: int
    sha256: str


def _project_pseudonym(db: RetentionDatabase, project_id: str | None) -> str:
    if project_id is None:
        return ""
    digest = hmac.digest(_pseudonym_key(db), b"project\x00" + project_id.encode(), "sha256")
    return "q-" + base64.b32encode(digest).decode("ascii").lower()[:20]


def export_analytics(
    db: PrivacyDatabase, dest: str | os.PathLike[str], *, since: int | None = None
) -> AnalyticsExport:
    """Write the command history as CSV for statistics, pseudonymised by construction.

    What :meth:`mangostore.privacy.PrivacyService.export_analytics` does; arguments,
    result and errors as there.
    """
    path = Path(dest)
    if path.exists():
        raise ValidationError(f"{path} exists; name a new file for the analytics export")
    names: dict[str, str] = {}
    with db.store.snapshot() as conn:
        rows = select_dicts(
            conn,
            "SELECT c.user_id, c.project_id, c.timestamp, c.command, c.command_type, "
            "c.exit_code, c.execution_time, c.voice_confidence, c.ai_suggested, "
            "u.username FROM command_history c LEFT JOIN users u ON u.id = c.user_id "
            "WHERE c.timestamp >= ? ORDER BY c.timestamp, c.id",
            (since if since is not None else -(2**63),),
        )
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", newline="", encoding="utf-8") as out:
        os.chmod(temporary, 0o600)
        writer = csv.writer(out)
        writer.writerow(ANALYTICS_COLUMNS)
        for row in rows:
            owner = str(row["user_id"])
            if owner not in names:
                anonymous = owner == ANONYMOUS_USER_ID
                names[owner] = "anonymous" if anonymous else pseudonym_of(db, owner)
            stamp = int(row["timestamp"])
            day = datetime.fromtimestamp(stamp // 1000, UTC).date().isoformat()
            writer.writerow(
                [
                    names[owner],
                    _project_pseudonym(db, row["project_id"]),
                    day,
                    _program(str(row["command"]), row["username"]),
                    row["command_type"] or "",
                    "" if row["exit_code"] is None else int(row["exit_code"]),
                    "" if row["execution_time"] is None else int(row["execution_time"]),
                    "" if row["voice_confidence"] is None else float(row["voice_confidence"]),
                    "" if row["ai_suggested"] is None else int(bool(row["ai_suggested"])),
                ]
            )
    os.replace(temporary, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return AnalyticsExport(path, len(rows), digest)
