"""The compliance report: each data-protection control of the design, checked, with evidence.

The controls are those of the design's ``DataProtectionCompliance`` (section 13), in
its three groups. Each is checked against the database as it is now, not against
configuration: the audit chain is walked, the newest backup is listed (and verified),
old rows that a retention policy should have removed are counted. Each control passes
or fails with an explanation and the evidence it was decided on (JSON-ready).

``gdpr``
    ``data_minimisation`` (the columns holding personal data and how each is
    protected), ``purpose_limitation`` (one key per purpose), ``retention_policies``
    (no row older than its policy allows; when retention last ran), ``user_rights``.
``security``
    ``encryption_at_rest`` (pages and fields), ``encryption_in_transit`` (sync over
    TLS), ``access_logging`` (the audit chain verified, against a checkpoint when one
    is given), ``regular_backups`` (the newest backup, its age, verified).
``privacy``
    ``anonymisation`` (anonymised rows hold no identifier), ``pseudonymisation`` (the
    vault's pseudonym key), ``data_portability`` (export reaches every table holding a
    user's rows), ``right_to_erasure`` (no erasure pending; keys to destroy).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol
from urllib.parse import urlsplit

from mangostore.clock import Instant, epoch_ms
from mangostore.engine.connection import driver_errors
from mangostore.errors import MangoError
from mangostore.keys.subkeys import PURPOSES
from mangostore.privacy.common import select_dicts
from mangostore.privacy.ownership import EXPORTED_APART, read_schema
from mangostore.privacy.pseudonyms import ANONYMOUS_USER_ID, PSEUDONYMIZED_COLUMNS, pseudonym_of
from mangostore.privacy.retention import DAY_MS, DEFAULT_POLICIES, RetentionPolicy, run_record_path
from mangostore.schema.sensitive import ALL_SENSITIVE_FIELDS

if TYPE_CHECKING:
    from mangostore.privacy.ports import PrivacyDatabase
    from mangostore.security.audit import AuditCheckpoint

__all__ = [
    "CONTROLS",
    "DIRECT_IDENTIFIERS",
    "ComplianceReport",
    "Control",
    "compliance_report",
]

Group = Literal["gdpr", "security", "privacy"]

#: Every control, by group, in the design's order.
CONTROLS: Final[tuple[tuple[Group, str], ...]] = (
    ("gdpr", "data_minimisation"),
    ("gdpr", "purpose_limitation"),
    ("gdpr", "retention_policies"),
    ("gdpr", "user_rights"),
    ("security", "encryption_at_rest"),
    ("security", "encryption_in_transit"),
    ("security", "access_logging"),
    ("security", "regular_backups"),
    ("privacy", "anonymisation"),
    ("privacy", "pseudonymisation"),
    ("privacy", "data_portability"),
    ("privacy", "right_to_erasure"),
)
#: Columns that name or reach a person directly.
DIRECT_IDENTIFIERS: Final[Mapping[str, tuple[str, ...]]] = {
    "users": ("username", "email"),
    "user_sessions": ("ip_address",),
}
_LOOPBACK: Final = frozenset({"127.0.0.1", "::1", "localhost"})


@dataclass(frozen=True, slots=True)
class Control:
    """One control: passed or not, why, and the evidence (JSON-ready)."""

    group: Group
    name: str
    passed: bool
    explanation: str
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> Literal["pass", "fail"]:
        """``"pass"`` or ``"fail"``."""
        return "pass" if self.passed else "fail"

    def to_dict(self) -> dict[str, Any]:
        """The control as a JSON-ready mapping."""
        return {
            "group": self.group,
            "name": self.name,
            "status": self.status,
            "explanation": self.explanation,
            "evidence": self.evidence,
        }


@dataclass(frozen=True, slots=True)
class ComplianceReport:
    """Every control of :data:`CONTROLS`, checked at ``generated_at`` (epoch ms)."""

    database: str
    generated_at: int
    controls: tuple[Control, ...]

    @property
    def ok(self) -> bool:
        """Every control passed."""
        return all(c.passed for c in self.controls)

    def control(self, name: str) -> Control:
        """The control called ``name``.

        Raises:
            KeyError: no such control.
        """
        for control in self.controls:
            if control.name == name:
                return control
        raise KeyError(name)

    def failed(self) -> list[Control]:
        """The controls that failed, in order."""
        return [c for c in self.controls if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready mapping."""
        return {
            "database": self.database,
            "generated_at": self.generated_at,
            "ok": self.ok,
            "controls": [c.to_dict() for c in self.controls],
        }

    def to_json(self) -> str:
        """The report as JSON text."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str)


class _Sync(Protocol):
    @property
    def enabled(self) -> bool: ...  # pragma: no cover - a protocol

    @property
    def relay(self) -> str | None: ...  # pragma: no cover - a protocol


class _Backups(Protocol):
    def saved_destination(self) -> str | None: ...  # pragma: no cover - a protocol

    def list(self, to: Any = None) -> Any: ...  # pragma: no cover - a protocol

    def verify(self, to: Any = None) -> Any: ...  # pragma: no cover - a protocol


_GROUPS: Final = {name: group for group, name in CONTROLS}


def _c(name: str, passed: bool, explanation: str, evidence: dict[str, Any]) -> Control:
    return Control(_GROUPS[name], name, passed, explanation, evidence)


def _count(db: PrivacyDatabase, sql: str, params: Sequence[Any] = ()) -> int:
    with db.store.snapshot() as conn, driver_errors("checking compliance"):
        return int(conn.execute(sql, tuple(params)).fetchone()[0])


# -- security -------------------------------------------------------------------------------


def _at_rest(db: PrivacyDatabase) -> Control:
    page = bool(getattr(db, "page_encryption", False))
    fields = db.keyring is not None
    evidence = {
        "page_encryption": page,
        "field_encryption": fields,
        "encrypted_columns": sorted(
            f"{t}.{c}" for t, cs in ALL_SENSITIVE_FIELDS.items() for c in cs
        ),
    }
    if page and fields:
        why = "pages, WAL and indexes are encrypted (SQLCipher), sensitive columns per user"
    elif fields:
        why = "sensitive columns are encrypted, but pages are plain: every other column is readable"
    elif page:
        why = "pages are encrypted but there is no keyring, so no column has field encryption"
    else:
        why = "nothing is encrypted: the database was opened without a passphrase"
    return _c("encryption_at_rest", page and fields, why, evidence)


def _in_transit(db: PrivacyDatabase) -> Control:
    sync: _Sync | None = getattr(db, "sync", None)
    enabled = bool(sync is not None and sync.enabled)
    relay = sync.relay if sync is not None and enabled else None
    evidence: dict[str, Any] = {"sync_enabled": enabled, "relay": None, "tls": None}
    parts = urlsplit(relay or "")
    passed = True
    if not enabled:
        why = "sync is off: no data leaves this machine"
    elif relay is None:
        why = "sync runs through a relay given by the application (batches sealed end to end)"
    elif parts.scheme in ("https", "http"):
        evidence.update(relay=f"{parts.scheme}://{parts.hostname}", tls=parts.scheme == "https")
        passed = parts.scheme == "https" or parts.hostname in _LOOPBACK
        why = (
            "sync uses HTTPS (TLS); batches are sealed end to end as well"
            if parts.scheme == "https"
            else "sync goes over plain HTTP to this machine only (loopback)"
            if passed
            else "sync goes over plain HTTP to another machine: batches are sealed, but "
            "tokens and metadata travel in clear; use an https:// server URL"
        )
    else:
        evidence["relay"] = "a folder"
        why = "sync goes through a folder: batches are sealed with the vault's sync key"
    return _c("encryption_in_transit", passed, why, evidence)


def _access_logging(db: PrivacyDatabase, checkpoint: AuditCheckpoint | None) -> Control:
    try:
        report = db.audit.verify(checkpoint)
    except MangoError as exc:
        return _c(
            "access_logging",
            False,
            f"the checkpoint was refused: {exc}",
            {"checkpoint_seq": checkpoint.seq if checkpoint is not None else None},
        )
    evidence = {
        "chain_verified": report.ok,
        "events_checked": report.events_checked,
        "first_seq": report.first_seq,
        "last_seq": report.last_seq,
        "first_broken_seq": report.first_broken_seq,
        "checkpoint_seq": report.checkpoint_seq,
        "keyed": report.keyed,
    }
    if not report.ok:
        why = f"the audit chain does not verify: {report.reason}"
    elif checkpoint is None:
        why = (
            "the audit chain verifies; no checkpoint was given, so events cut from its end "
            "would not show (keep checkpoints apart and pass the last one)"
        )
    else:
        why = f"the audit chain verifies, up to and past the checkpoint at {checkpoint.seq}"
    return _c("access_logging", report.ok, why, evidence)


def _backups(db: PrivacyDatabase, now: int, to: Any, verify: bool, max_age_hours: float) -> Control:
    backups: _Backups | None = getattr(db, "backup", None)
    evidence: dict[str, Any] = {"destination": None, "max_age_hours": max_age_hours}
    destination = to
    if destination is None and backups is not None and db.keyring is not None:
        destination = backups.saved_destination()
    if backups is None or db.keyring is None:
        return _c("regular_backups", False, "no keyring: it cannot be backed up", evidence)
    if destination is None:
        why = (
            "no backup destination is saved: back up with `mangostore backup create --to URL "
            "--remember`, or pass the destination"
        )
        return _c("regular_backups", False, why, evidence)
    evidence["destination"] = str(destination) if isinstance(destination, str) else "given"
    try:
        latest = backups.list(destination).latest()
        if latest is None:
            return _c("regular_backups", False, "the destination holds no backup", evidence)
        age_hours = (now - int(latest.created_at)) / 3_600_000
        evidence.update(
            backup_id=latest.id,
            kind=latest.kind,
            created_at=int(latest.created_at),
            age_hours=round(age_hours, 2),
        )
        verified = backups.verify(destination) if verify else None
    except MangoError as exc:
        return _c("regular_backups", False, f"the backups could not be read: {exc}", evidence)
    evidence["verified"] = None if verified is None else bool(verified.ok)
    how = "verified" if verified is not None else "not verified (verify_backup=False)"
    passed = age_hours <= max_age_hours and (verified is None or bool(verified.ok))
    why = f"the newest backup is {age_hours:.1f} hours old and {how}"
    if verified is not None and not verified.ok:
        evidence["problems"] = list(verified.problems)
        why = f"the newest backup does not verify: {'; '.join(verified.problems)}"
    elif not passed:
        why = f"the newest backup is {age_hours:.1f} hours old, more than {max_age_hours:g}"
    return _c("regular_backups", passed, why, evidence)


# -- gdpr -----------------------------------------------------------------------------------


def _overdue(db: PrivacyDatabase, policy: RetentionPolicy, now: int) -> int:
    """Rows of ``policy.table`` that a run of retention now would remove or anonymise."""
    if policy.table == "notifications":
        by_type = _count(
            db,
            "SELECT count(*) FROM notifications n JOIN notification_types t "
            "ON t.id = n.notification_type_id WHERE t.retention_days IS NOT NULL "
            "AND n.created_at < ? - t.retention_days * ?",
            (now, DAY_MS),
        )
        if policy.days is None:
            return by_type
        cutoff = now - policy.days * DAY_MS
        return max(
            by_type,
            _count(db, "SELECT count(*) FROM notifications WHERE created_at < ?", (cutoff,)),
        )
    if policy.days is None:
        return 0
    cutoff = now - policy.days * DAY_MS
    if policy.table == "command_history":
        # Anonymised rows stay under an anonymising policy; any other one removes them.
        kept = ANONYMOUS_USER_ID if policy.anonymize else ""
        return _count(
            db,
            "SELECT count(*) FROM command_history WHERE timestamp < ? AND user_id <> ?",
            (cutoff, kept),
        )
    # Security events go as a prefix of the chain: those before the first newer one.
    return _count(
        db,
        "SELECT count(*) FROM security_events WHERE seq < coalesce("
        "(SELECT min(seq) FROM security_events WHERE timestamp >= ?), "
        "(SELECT max(seq) + 1 FROM security_events))",
        (cutoff,),
    )


def _last_run(db: PrivacyDatabase) -> dict[str, Any] | None:
    path = run_record_path(db)
    if path is None or not path.exists():
        return None
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def _recorded_policies(db: PrivacyDatabase) -> list[RetentionPolicy]:
    """The policies of the last recorded retention run (none when there is none)."""
    last = _last_run(db)
    found = last.get("policies") if last is not None else None
    try:
        return [
            RetentionPolicy(str(p["table"]), p["days"], bool(p.get("anonymize", False)))
            for p in found or ()
        ]
    except (KeyError, TypeError, MangoError):
        return []


def _retention(db: PrivacyDatabase, now: int, policies: Sequence[RetentionPolicy]) -> Control:
    chosen = {p.table: p for p in DEFAULT_POLICIES}
    chosen.update({p.table: p for p in policies})
    overdue = {table: _overdue(db, policy, now) for table, policy in chosen.items()}
    last = _last_run(db)
    ran_at = last.get("ran_at") if last is not None else None
    evidence = {
        "policies": [
            {"table": p.table, "days": p.days, "anonymize": p.anonymize} for p in chosen.values()
        ],
        "overdue_rows": overdue,
        "last_run_at": ran_at,
        "last_run_age_hours": None if ran_at is None else round((now - int(ran_at)) / 3_600_000, 2),
    }
    late = {t: n for t, n in overdue.items() if n}
    when = "never recorded" if ran_at is None else f"{evidence['last_run_age_hours']} hours ago"
    if late:
        listed = ", ".join(f"{t}: {n}" for t, n in late.items())
        why = (
            f"rows older than their policy allows are still there ({listed}); retention last "
            f"ran: {when}. Run db.privacy.apply_retention() (or db.maintenance()) regularly"
        )
        return _c("retention_policies", False, why, evidence)
    return _c(
        "retention_policies",
        True,
        f"no row is older than its policy allows; retention last ran: {when}",
        evidence,
    )


def _personal_columns(db: PrivacyDatabase) -> list[dict[str, str]]:
    page = bool(getattr(db, "page_encryption", False))
    keyed = db.keyring is not None
    at_rest = "page encryption" if page else "none"
    found: list[dict[str, str]] = []

    def add(table: str, column: str, kind: str, sealed: bool) -> None:
        protection = "field encryption (per-user key)" if sealed and keyed else at_rest
        found.append({"column": f"{table}.{column}", "kind": kind, "protection": protection})

    for table, columns in DIRECT_IDENTIFIERS.items():
        for column in columns:
            add(table, column, "direct identifier", False)
    for table, columns in PSEUDONYMIZED_COLUMNS.items():
        for column in columns:
            add(table, column, "free text that may name the user", False)
    for table, columns in ALL_SENSITIVE_FIELDS.items():
        for column in columns:
            add(table, column, "sensitive", True)
    return found


def _minimisation(db: PrivacyDatabase) -> Control:
    columns = _personal_columns(db)
    bare = [c["column"] for c in columns if c["protection"] == "none"]
    evidence = {"personal_columns": columns, "unprotected": bare}
    if bare:
        why = f"{len(bare)} columns holding personal data are stored without any encryption"
        return _c("data_minimisation", False, why, evidence)
    return _c(
        "data_minimisation",
        True,
        f"{len(columns)} columns hold personal data; each is encrypted at rest, sensitive "
        "ones under their owner's key",
        evidence,
    )


def _purpose(db: PrivacyDatabase) -> Control:
    keyed = db.keyring is not None
    evidence = {"key_purposes": list(PURPOSES), "keyring": keyed}
    why = (
        "each purpose (pages, fields, audit, backups, sync, pseudonyms, ...) has its own key"
        if keyed
        else "without a keyring there are no purpose keys: data is not bound to its use"
    )
    return _c("purpose_limitation", keyed, why, evidence)


# -- privacy --------------------------------------------------------------------------------


def _portability(db: PrivacyDatabase) -> Control:
    with db.store.snapshot() as conn:
        schema = read_schema(conn)
    owned = schema.owned_tables()
    reached = sorted(set(owned) | EXPORTED_APART)
    with_user = sorted(t for t, info in schema.tables.items() if "user_id" in info.columns)
    missed = sorted(set(with_user) - set(reached))
    evidence = {"tables_exported": reached, "tables_missed": missed}
    if missed:
        return _c(
            "data_portability",
            False,
            f"tables with users' rows that export does not reach: {', '.join(missed)}",
            evidence,
        )
    return _c(
        "data_portability",
        True,
        f"export_user writes every one of the {len(reached)} tables that can hold a user's rows",
        evidence,
    )


def _erasure(db: PrivacyDatabase) -> Control:
    keyring = db.keyring
    erased = keyring.erased_users() if keyring is not None else []
    pending = 0
    for user_id in erased:
        pending += _count(db, "SELECT count(*) FROM users WHERE id = ?", (user_id,))
    evidence = {
        "erased_users": len(erased),
        "pending_erasures": pending,
        "keyring": keyring is not None,
    }
    if keyring is None:
        why = (
            "erasure deletes rows, but without a keyring there are no per-user keys to destroy: "
            "older copies of the file keep everything"
        )
        return _c("right_to_erasure", False, why, evidence)
    if pending:
        why = f"{pending} erased users still have rows: reopen the database (reapply_erasures)"
        return _c("right_to_erasure", False, why, evidence)
    return _c(
        "right_to_erasure",
        True,
        f"no erasure is pending ({len(erased)} users erased, their keys destroyed)",
        evidence,
    )


def _anonymisation(db: PrivacyDatabase, policies: Sequence[RetentionPolicy]) -> Control:
    rows = _count(
        db, "SELECT count(*) FROM command_history WHERE user_id = ?", (ANONYMOUS_USER_ID,)
    )
    leaking = _count(
        db,
        "SELECT count(*) FROM command_history WHERE user_id = ? AND (output IS NOT NULL "
        "OR working_directory IS NOT NULL OR project_id IS NOT NULL "
        "OR terminal_session_id IS NOT NULL OR timestamp % ? <> 0)",
        (ANONYMOUS_USER_ID, DAY_MS),
    )
    anonymising = sorted(p.table for p in policies if p.anonymize)
    evidence = {
        "anonymised_rows": rows,
        "rows_with_identifiers": leaking,
        "anonymising_policies": anonymising,
    }
    if leaking:
        why = f"{leaking} anonymised rows still hold an identifier or free text"
        return _c("anonymisation", False, why, evidence)
    how = (
        f"retention anonymises {', '.join(anonymising)}"
        if anonymising
        else "no policy given here anonymises (old rows are deleted)"
    )
    return _c(
        "anonymisation",
        True,
        f"{rows} anonymised rows hold no identifier or free text; {how}",
        evidence,
    )


def _pseudonymisation(db: PrivacyDatabase) -> Control:
    if db.keyring is None:
        return _c(
            "pseudonymisation",
            False,
            "without a keyring there is no pseudonym key",
            {"keyring": False},
        )
    with db.store.snapshot() as conn:
        candidates = select_dicts(
            conn, "SELECT id, username FROM users WHERE username LIKE 'p-%'", ()
        )
    done = sum(1 for r in candidates if pseudonym_of(db, str(r["id"])) == r["username"])
    evidence = {
        "keyring": True,
        "pseudonymised_users": done,
        "reidentification_key": "kept by its holder, apart from the database; never stored",
    }
    return _c(
        "pseudonymisation",
        True,
        f"pseudonyms are keyed by the vault's pseudonym key; {done} users pseudonymised",
        evidence,
    )


def compliance_report(
    db: PrivacyDatabase,
    *,
    now: Instant | None = None,
    checkpoint: AuditCheckpoint | None = None,
    backup_to: Any = None,
    verify_backup: bool = True,
    max_backup_age_hours: float = 24.0,
    policies: Sequence[RetentionPolicy] = (),
) -> ComplianceReport:
    """Check every control of :data:`CONTROLS` in ``db``.

    What :meth:`mangostore.privacy.PrivacyService.compliance_report` does; arguments,
    result and errors as there.
    """
    at = db.clock.now_ms() if now is None else epoch_ms(now, "now")
    policies = list(policies) or _recorded_policies(db)
    portability = _portability(db)
    erasure = _erasure(db)
    rights = _c(
        "user_rights",
        portability.passed and erasure.passed,
        "access and portability (export_user), rectification (repositories), erasure "
        f"(erase_user): export {portability.status}, erasure {erasure.status}",
        {"data_portability": portability.status, "right_to_erasure": erasure.status},
    )
    found = {
        "data_minimisation": _minimisation(db),
        "purpose_limitation": _purpose(db),
        "retention_policies": _retention(db, at, policies),
        "user_rights": rights,
        "encryption_at_rest": _at_rest(db),
        "encryption_in_transit": _in_transit(db),
        "access_logging": _access_logging(db, checkpoint),
        "regular_backups": _backups(db, at, backup_to, verify_backup, max_backup_age_hours),
        "anonymisation": _anonymisation(db, policies),
        "pseudonymisation": _pseudonymisation(db),
        "data_portability": portability,
        "right_to_erasure": erasure,
    }
    return ComplianceReport(db.path, at, tuple(found[name] for _, name in CONTROLS))
