"""Users: unique user names (in every spelling, and no look-alikes) and e-mail addresses."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Unpack

from mangostore.engine.connection import driver_errors
from mangostore.engine.pragmas import Connection
from mangostore.errors import InvalidValueError, UniqueConstraintError
from mangostore.records import User
from mangostore.repos.base import Repository
from mangostore.repos.changes import UserChanges
from mangostore.repos.fields import UserFields
from mangostore.repos.ports import RepositoryDatabase
from mangostore.repos.spec import encodable
from mangostore.repos.usernames import normalize_username, username_key, username_skeleton

#: The schema version that made ``user_name_keys``; a database opened with
#: ``migrate=False`` below it has plain user names only.
_KEYS_VERSION: Final = 13
#: Follows the key of a name that an older user already held when the key was filled
#: (see migration 13): no name that can be created now contains a NUL.
_TAKEN_MARK: Final = "\x00"
_SAME_NAME: Final = (
    "users.username is taken: another user has this name, spelt with other letter case, "
    "width or Unicode form (user names are compared as RFC 8265 does); choose another name"
)
_LOOK_ALIKE: Final = (
    "users.username looks like the name of another user (their characters can be "
    "mistaken for each other, Unicode TS #39); choose a name that does not"
)


class UserRepository(Repository[User]):
    """``db.users``. ``username`` and ``email`` are unique; a clash raises UniqueConstraintError.

    A user name is stored in NFC and checked by
    :func:`mangostore.repos.usernames.normalize_username`; one that is another user's name
    in another spelling, or looks like it, is refused. See docs/authentication.md.
    """

    if TYPE_CHECKING:
        # Declared for type checkers only; see mangostore.repos.tables.
        def create(  # type: ignore[override]
            self, **fields: Unpack[UserFields]
        ) -> User:
            """Insert a record (see :meth:`Repository.create`)."""
            ...

        def update(  # type: ignore[override]
            self, id: str, /, **fields: Unpack[UserChanges]
        ) -> User:
            """Change some columns of a record (see :meth:`Repository.update`)."""
            ...

    def __init__(self, db: RepositoryDatabase, record: type[User]) -> None:
        super().__init__(db, record)
        select = self.spec.select_list
        table = self.spec.quoted_table
        # The plain key first: it belongs to the user who had the name first.
        self._sql_by_key = (
            f"SELECT {select} FROM {table} WHERE id = (SELECT user_id FROM user_name_keys "
            "WHERE name_key = ? OR (name_key > ? AND name_key < ?) "
            "ORDER BY length(name_key), name_key LIMIT 1)"
        )
        self._sql_pending = (
            f"SELECT {select} FROM {table} WHERE id IN (SELECT user_id FROM user_name_keys "
            "WHERE name_key IS NULL) ORDER BY created_at, id"
        )

    def get_by_username(self, username: str) -> User | None:
        """Return the user this name belongs to, in any spelling of it, or ``None``.

        The name as stored is matched first, then its identity (NFKC and case folding:
        ``ANN``, ``ann`` and a fullwidth ``ann`` find the same user). Text that cannot be a user
        name (a lone surrogate) finds nobody.

        Raises:
            InvalidValueError: ``username`` is not a string.
        """
        if not isinstance(username, str):
            raise InvalidValueError("username must be a string", field="username")
        if not encodable(username):
            return None
        exact = self.first(username=username)
        if exact is not None or not self._keyed():
            return exact
        key = username_key(username)
        rows = self._db.store.rows(self._sql_by_key, _key_range(key), None, self.spec.name)
        if rows:
            return self.record_from_row(rows[0])
        # Users written around the repository (or before migration 13) until their keys
        # are filled; few, and only looked at when the name was not found otherwise.
        for user in self._select(self._sql_pending, ()):
            if isinstance(user.username, str) and username_key(user.username) == key:
                return user
        return None

    def get_by_email(self, email: str) -> User | None:
        """Return the user with this e-mail address, or ``None``."""
        return self.first(email=email)

    # -- keeping user_name_keys in step ------------------------------------------------------

    def insert_in(self, conn: Connection, fields: dict[str, Any]) -> User:
        if "username" not in fields:
            return super().insert_in(conn, fields)  # refused there: the name is required
        name = normalize_username(fields["username"])
        if not self._keyed():
            return super().insert_in(conn, {**fields, "username": name})
        key, skeleton = username_key(name), username_skeleton(name)
        self._fill_pending(conn)
        self._refuse_taken(conn, key, skeleton, None)
        user = super().insert_in(conn, {**fields, "username": name})
        self._store_keys(conn, user.id, key, skeleton)
        return user

    def update_in(
        self, conn: Connection, id: str, fields: dict[str, Any], *, touch: bool = True
    ) -> User:
        if "username" not in fields:
            return super().update_in(conn, id, fields, touch=touch)
        name = normalize_username(fields["username"])
        if not self._keyed():
            return super().update_in(conn, id, {**fields, "username": name}, touch=touch)
        key, skeleton = username_key(name), username_skeleton(name)
        self._fill_pending(conn)
        self._refuse_taken(conn, key, skeleton, id)
        user = super().update_in(conn, id, {**fields, "username": name}, touch=touch)
        self._store_keys(conn, user.id, key, skeleton)
        return user

    def _keyed(self) -> bool:
        return self._db.schema_version >= _KEYS_VERSION

    def _refuse_taken(
        self, conn: Connection, key: str, skeleton: str, except_id: str | None
    ) -> None:
        """Raise if another user has this name in another spelling, or one that looks alike.

        Runs in the write transaction, so no other writer can slip in between; the
        UNIQUE indexes stay the last word (:meth:`_store_keys`).
        """
        with driver_errors("user_name_keys"):
            row = conn.execute(
                "SELECT max(name_key = ? OR (name_key > ? AND name_key < ?)) "
                "FROM user_name_keys WHERE user_id IS NOT ? AND ("
                "name_key = ? OR (name_key > ? AND name_key < ?) "
                "OR skeleton = ? OR (skeleton > ? AND skeleton < ?))",
                (*_key_range(key), except_id, *_key_range(key), *_key_range(skeleton)),
            ).fetchone()
        if row[0] is not None:
            raise UniqueConstraintError(_SAME_NAME if row[0] else _LOOK_ALIKE, field="username")

    @staticmethod
    def _store_keys(conn: Connection, user_id: str, key: str, skeleton: str) -> None:
        try:
            with driver_errors("user_name_keys"):
                conn.execute(
                    "UPDATE user_name_keys SET name_key = ?, skeleton = ? WHERE user_id = ?",
                    (key, skeleton, user_id),
                )
        except UniqueConstraintError as exc:
            # Only a write around this repository, within this transaction, gets here.
            message = _SAME_NAME if "name_key" in str(exc) else _LOOK_ALIKE
            raise UniqueConstraintError(message, field="username") from exc.__cause__

    @staticmethod
    def _fill_pending(conn: Connection) -> None:
        """Compute the keys of users written around the repository, oldest first.

        A key (or skeleton) an earlier user already holds is stored followed by a NUL
        and the user's own id: the account stays, and keeps being found by its exact
        name (see migration 13).
        """
        with driver_errors("user_name_keys"):
            pending = conn.execute(
                "SELECT u.id, u.username FROM user_name_keys AS k JOIN users AS u "
                "ON u.id = k.user_id WHERE k.name_key IS NULL ORDER BY u.created_at, u.id"
            ).fetchall()
            for user_id, name in pending:
                if isinstance(name, str):
                    key, skeleton = username_key(name), username_skeleton(name)
                else:  # not valid UTF-8 (written around mangostore): nothing to compare
                    key = skeleton = ""
                taken = conn.execute(
                    "SELECT (SELECT 1 FROM user_name_keys WHERE name_key = ?), "
                    "(SELECT 1 FROM user_name_keys WHERE skeleton = ?)",
                    (key, skeleton),
                ).fetchone()
                values = [
                    f"{value}{_TAKEN_MARK}{user_id}" if held or not value else value
                    for value, held in zip((key, skeleton), taken, strict=True)
                ]
                conn.execute(
                    "UPDATE user_name_keys SET name_key = ?, skeleton = ? WHERE user_id = ?",
                    (*values, user_id),
                )


def _key_range(key: str) -> tuple[str, str, str]:
    """Parameters matching ``key`` itself or ``key`` followed by the taken mark."""
    return key, key + _TAKEN_MARK, key + chr(ord(_TAKEN_MARK) + 1)
