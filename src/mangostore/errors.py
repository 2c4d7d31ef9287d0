"""The one exception tree of mangostore.

Every error raised by mangostore derives from :class:`MangoError`. Errors of the
underlying driver (``sqlcipher3``) never escape unwrapped: they are translated at
the engine boundary and kept as ``__cause__``. Messages say what went wrong and
what to do; they never contain keys, passphrases or plaintext of encrypted fields.

::

    MangoError
    ├── ConfigurationError            bad settings or KDF parameters
    ├── DatabaseClosedError           the Database was used after close()
    ├── DatabaseError                 any other driver failure (kept as __cause__)
    │   ├── QueryError                SQL that SQLite rejected (syntax, unknown table)
    │   ├── DatabaseLockedError       another writer held the lock past the busy timeout
    │   ├── DiskFullError             no space left for the database, its WAL or its keyring
    │   └── PoolTimeoutError          no reader connection free within the acquire timeout
    ├── NotADatabaseError             missing, or not a mangostore database (or not this keyring's)
    ├── DatabaseExistsError           create() was given a path that already holds a file
    ├── KeyError_                     (see below; key-related failures)
    │   ├── WrongPassphraseError      the passphrase or recovery key does not unwrap the master key
    │   ├── KeyringError              the keyring sidecar is unusable
    │   │   ├── KeyringMissingError   no keyring beside an encrypted database
    │   │   └── KeyringCorruptError   the keyring is damaged or was tampered with
    │   └── TamperedDataError         a field ciphertext failed authentication (one generic class)
    ├── SchemaError
    │   ├── SchemaTooNewError         the database was migrated by newer code
    │   ├── MigrationError            a migration failed and was rolled back
    │   └── MigrationChecksumError    an applied migration file was edited afterwards
    ├── ValidationError               input refused before it reached the database
    │   ├── UnknownColumnError        a column or order-by name not in the table's schema
    │   ├── MissingFieldError         a required column was not given
    │   ├── InvalidValueError         wrong type or a value outside an enumeration
    │   └── JSONValueError            not JSON-serialisable, malformed, or too large
    ├── ConstraintError               the database refused a write
    │   ├── UniqueConstraintError
    │   ├── ForeignKeyError
    │   ├── CheckConstraintError
    │   └── NotNullError
    ├── NotFoundError                 no record with that id
    ├── BatchError                    one item of a batch failed; the whole batch was rolled back
    ├── InvalidTransitionError        a status change the lifecycle forbids
    ├── TemplateError                 a template and its parameters do not match (a ValidationError)
    ├── DeliveryError                 a notification deliverer failed
    ├── AuthenticationError           bad credentials or an unusable session token
    │   ├── AccountLockedError        too many failed logins; retry after the lock expires
    │   ├── SessionExpired            the session passed its idle or absolute lifetime
    │   └── SessionRevoked            the session was revoked
    ├── PermissionDenied              the user lacks the permission asked for
    ├── SyncError                     sync cannot go on (not enabled, unreadable batch)
    │   ├── SyncTransportError        the relay could not be reached or refused a batch
    │   │   ├── SyncAuthError         the sync server refused this device (removed, other vault)
    │   │   └── SyncCompactedError    the relay dropped the batches after this device's cursor
    │   └── UnsettledSnapshotError    changes kept coming; no snapshot was uploaded
    ├── BackupError                   a backup cannot be made, found or restored
    │   ├── BackupCorruptError        a backup object is missing, damaged, reordered or foreign
    │   └── BackupDestinationError    the backup destination could not be reached or written
    └── FileStoreError                the file store cannot store, find or read a file
        └── QuotaExceededError        the file would take its owner past their quota

``KeyError_`` is spelt :class:`KeyManagementError` in code, so it does not shadow the
builtin ``KeyError``.

Warnings (``warnings.warn``) have a root of their own, :class:`MangoWarning` (a
``UserWarning``); they report a risk without stopping the program::

    MangoWarning
    └── RecoveryKeyWarning            a new database was closed before its recovery key was taken

An application that must never lose a recovery key turns them into errors with
``warnings.simplefilter("error", RecoveryKeyWarning)``.
"""

from __future__ import annotations

__all__ = [
    "AccountLockedError",
    "AuthenticationError",
    "BackupCorruptError",
    "BackupDestinationError",
    "BackupError",
    "BatchError",
    "CheckConstraintError",
    "ConfigurationError",
    "ConstraintError",
    "DatabaseClosedError",
    "DatabaseError",
    "DatabaseExistsError",
    "DatabaseLockedError",
    "DeliveryError",
    "DiskFullError",
    "FileStoreError",
    "FileUnavailableError",
    "ForeignKeyError",
    "InvalidTransitionError",
    "InvalidValueError",
    "JSONValueError",
    "KeyManagementError",
    "KeyringCorruptError",
    "KeyringError",
    "KeyringMissingError",
    "MangoError",
    "MangoWarning",
    "MigrationChecksumError",
    "MigrationError",
    "MissingFieldError",
    "NotADatabaseError",
    "NotFoundError",
    "NotNullError",
    "PermissionDenied",
    "PoolTimeoutError",
    "QueryError",
    "QuotaExceededError",
    "RecoveryKeyWarning",
    "SchemaError",
    "SchemaTooNewError",
    "SessionExpired",
    "SessionRevoked",
    "SyncAuthError",
    "SyncCompactedError",
    "SyncError",
    "SyncTransportError",
    "TamperedDataError",
    "TemplateError",
    "UniqueConstraintError",
    "UnknownColumnError",
    "UnsettledSnapshotError",
    "ValidationError",
    "WrongPassphraseError",
]


class MangoError(Exception):
    """Root of every error raised by mangostore."""


class ConfigurationError(MangoError):
    """Settings or key-derivation parameters are invalid or unsafe."""


class DatabaseClosedError(MangoError):
    """The database was used after :meth:`Database.close`."""


class DatabaseError(MangoError):
    """A failure reported by the database engine; the driver error is ``__cause__``."""


class QueryError(DatabaseError):
    """SQLite rejected a statement (syntax error, unknown table or column)."""


class DatabaseLockedError(DatabaseError):
    """Another writer held the database lock longer than the busy timeout."""


class DiskFullError(DatabaseError):
    """The disk (or the user's quota) has no room for a write; nothing was changed."""


class PoolTimeoutError(DatabaseError):
    """No reader connection became free within the acquire timeout."""


class NotADatabaseError(MangoError):
    """There is no database at the path, or the file is not a mangostore database, or it
    does not belong to the keyring beside it."""


class DatabaseExistsError(MangoError):
    """:func:`mangostore.create` was given a path that already holds a file; nothing was
    changed. Open it with :func:`mangostore.open`, or choose another path."""


class KeyManagementError(MangoError):
    """A failure of the key hierarchy."""


class WrongPassphraseError(KeyManagementError):
    """The passphrase (or recovery key) does not unwrap the master key."""


class KeyringError(KeyManagementError):
    """The keyring sidecar cannot be used."""


class KeyringMissingError(KeyringError):
    """An encrypted database has no keyring sidecar beside it."""


class KeyringCorruptError(KeyringError):
    """The keyring sidecar is damaged, truncated, or was modified outside mangostore."""


class TamperedDataError(KeyManagementError):
    """An encrypted value failed authentication.

    Raised, with one generic message, for every way a ciphertext can be wrong:
    flipped bits, truncation, an unknown version or key id, a destroyed key, or a
    value moved to another row, column or database.
    """


class SchemaError(MangoError):
    """The database schema cannot be used by this version of mangostore."""


class SchemaTooNewError(SchemaError):
    """The database was migrated by a newer mangostore than this one."""


class MigrationError(SchemaError):
    """A migration failed; every change of that run was rolled back."""


class MigrationChecksumError(SchemaError):
    """A migration file differs from the one that was applied to this database."""


class ValidationError(MangoError):
    """Input was refused before it reached the database; nothing was written.

    ``field`` names the offending column or argument when there is one.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class UnknownColumnError(ValidationError):
    """A column, filter or order-by name is not part of the table's schema."""


class MissingFieldError(ValidationError):
    """A required column was not given."""


class InvalidValueError(ValidationError):
    """A value has the wrong type or lies outside the column's allowed values."""


class JSONValueError(ValidationError):
    """A JSON column value is not serialisable, is malformed, or exceeds the size limit."""


class ConstraintError(MangoError):
    """The database refused a write because it would break a constraint.

    ``field`` names the column concerned when SQLite or the repository could tell.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class UniqueConstraintError(ConstraintError):
    """A value that must be unique is already taken."""


class ForeignKeyError(ConstraintError):
    """A reference points at a row that does not exist, or a row is still referenced."""


class CheckConstraintError(ConstraintError):
    """A value is outside what the column's CHECK constraint allows."""


class NotNullError(ConstraintError):
    """A required column was NULL."""


class NotFoundError(MangoError):
    """No record exists with the given id."""


class BatchError(MangoError):
    """An item of a batch failed; the whole batch was rolled back.

    ``index`` is the position of the failing item and ``__cause__`` the reason.
    """

    def __init__(self, message: str, *, index: int) -> None:
        super().__init__(message)
        self.index = index


class InvalidTransitionError(MangoError):
    """A status change that the lifecycle does not allow; nothing was changed."""


class TemplateError(ValidationError):
    """A message template and its parameters do not match (missing or unexpected names)."""


class DeliveryError(MangoError):
    """A deliverer could not deliver a notification; it will be retried."""


class AuthenticationError(MangoError):
    """Credentials or a session token were not accepted.

    The message never says whether the user name exists.
    """


class AccountLockedError(AuthenticationError):
    """Too many failed logins; the account is locked until ``locked_until`` (epoch ms)."""

    def __init__(self, message: str, *, locked_until: int) -> None:
        super().__init__(message)
        self.locked_until = locked_until


# SessionExpired, SessionRevoked and PermissionDenied are the names the public
# contract uses, hence no "Error" suffix.
class SessionExpired(AuthenticationError):
    """The session passed its idle or absolute lifetime; log in again."""


class SessionRevoked(AuthenticationError):
    """The session was revoked; log in again."""


class PermissionDenied(MangoError):
    """The user lacks the permission asked for."""


class SyncError(MangoError):
    """Sync cannot go on: it is not enabled, or a batch cannot be read here."""


class SyncTransportError(SyncError):
    """The relay could not be reached or refused a batch; sync retries later."""


class UnsettledSnapshotError(SyncError):
    """The device kept having changes the relay lacked, so no snapshot was uploaded (a
    snapshot holds nothing the relay does not); try again once writes settle."""


class SyncAuthError(SyncTransportError):
    """The sync server refused this device: removed from the vault, a vault attached
    with another key, or credentials the server does not accept."""


class SyncCompactedError(SyncTransportError):
    """The relay no longer has the batches after this device's cursor (every other
    device moved past them and a snapshot covers them): start from the snapshot."""


class BackupError(MangoError):
    """A backup cannot be made, found or restored (see docs/backup.md)."""


class BackupCorruptError(BackupError):
    """A backup object is missing, damaged, truncated, reordered or from another backup.

    ``object_name`` names the first bad object (``None`` when the backup as a whole is
    unusable); nothing was restored from it.
    """

    def __init__(self, message: str, object_name: str | None = None) -> None:
        super().__init__(message)
        self.object_name = object_name


class BackupDestinationError(BackupError):
    """The backup destination could not be reached, read or written."""


class FileStoreError(MangoError):
    """The file store cannot store, find or read a file (see docs/files.md).

    A stored chunk that fails authentication raises :class:`TamperedDataError` instead.
    """


class FileUnavailableError(FileStoreError):
    """A chunk of a synced file is not on this device and cannot be fetched now: no
    relay carrying files is connected, or the relay does not hold it yet (the device
    that stored the file has not synced since). Retry after a sync; nothing is lost.
    """


class QuotaExceededError(FileStoreError):
    """Storing the file would take its owner past their quota; nothing was stored.

    ``limit`` and ``used`` are the owner's quota and usage in bytes.
    """

    def __init__(self, message: str, *, limit: int, used: int) -> None:
        super().__init__(message)
        self.limit = limit
        self.used = used


class MangoWarning(UserWarning):
    """Root of every warning mangostore emits."""


class RecoveryKeyWarning(MangoWarning):
    """A database made with a recovery key was closed before the key was taken.

    mangostore keeps no copy of the key, so it is lost: take it with
    :meth:`Database.take_recovery_key` (or create the database with
    :func:`mangostore.create`, which returns it), or say that the database does without
    one with :meth:`Database.discard_recovery_key`. The warning never contains the key.
    """
