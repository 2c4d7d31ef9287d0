"""The ``security_events`` repository: reads like any other, writes through the audit log.

``security_events`` is an append-only HMAC chain (see :mod:`mangostore.security.audit`):
``create`` appends through :meth:`AuditLog.append`, so every row gets its sequence
number and MAC; ``update`` only records a resolution (through
:meth:`AuditLog.resolve`); ``delete`` is refused by the table's triggers.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, Unpack

from mangostore.engine.pragmas import Connection
from mangostore.errors import InvalidValueError, MissingFieldError
from mangostore.records import SecurityEvent
from mangostore.repos.base import Repository
from mangostore.repos.changes import SecurityEventChanges
from mangostore.repos.fields import SecurityEventFields
from mangostore.schema.sensitive import SYSTEM_OWNER

#: The columns a caller gives to ``create`` (the typed fields'); the log sets every
#: other one.
_GIVEN: Final = frozenset(SecurityEventFields.__annotations__)
_REQUIRED: Final = tuple(sorted(SecurityEventFields.__required_keys__))


class SecurityEventRepository(Repository[SecurityEvent]):
    """``db.security_events``: ``user_id`` may be NULL; ``timestamp`` is the clock's now.

    ``id``, ``timestamp``, ``seq`` and ``mac`` are set by the audit log and cannot be
    given; ``update`` accepts only ``resolved=True`` with ``resolved_by``.
    """

    now_on_create = ("timestamp",)

    if TYPE_CHECKING:
        # Declared for type checkers only; see mangostore.repos.tables.
        def create(  # type: ignore[override]
            self, **fields: Unpack[SecurityEventFields]
        ) -> SecurityEvent:
            """Append an event through the audit log (see :meth:`Repository.create`)."""
            ...

        def update(  # type: ignore[override]
            self, id: str, /, **fields: Unpack[SecurityEventChanges]
        ) -> SecurityEvent:
            """Record who resolved an event (see :meth:`Repository.update`)."""
            ...

    def find_by_user(
        self, user_id: str, *, use_cache: bool | None = None
    ) -> builtins.list[SecurityEvent]:
        """Return the events about this user, in chain order."""
        return self.list(user_id=user_id, order_by=["seq"], use_cache=use_cache)

    def insert_in(self, conn: Connection, fields: dict[str, Any]) -> SecurityEvent:
        for name in fields:
            self.spec.column(name)  # unknown names first, as for every table
            if name not in _GIVEN:
                raise InvalidValueError(
                    f"security_events.{name} is set by the audit log and cannot be given",
                    field=name,
                )
        missing = [c for c in _REQUIRED if c not in fields]
        if missing:
            raise MissingFieldError(f"security_events needs {', '.join(missing)}", field=missing[0])
        risk = fields.get("risk_score")
        return self._db.audit.append(
            fields["event_type"],
            fields["severity"],
            fields["source_component"],
            user_id=fields.get("user_id"),
            event_data=fields.get("event_data"),
            client_info=fields.get("client_info"),
            risk_score=0.0 if risk is None else risk,
        )

    def update_in(
        self, conn: Connection, id: str, fields: dict[str, Any], *, touch: bool = True
    ) -> SecurityEvent:
        for name in fields:
            self.spec.column(name)
        if set(fields) - {"resolved", "resolved_by"} or fields.get("resolved") is not True:
            raise InvalidValueError(
                "security_events is append-only: an event cannot be changed, only resolved "
                "(update(id, resolved=True, resolved_by=...) or db.audit.resolve())",
                field=next(iter(fields), None),
            )
        if "resolved_by" not in fields:
            raise MissingFieldError("resolving an event needs resolved_by", field="resolved_by")
        return self._db.audit.resolve(id, fields["resolved_by"])

    def _decrypt(self, name: str, values: Sequence[Any], stored: Any) -> Any:
        owner_at = self.spec.names.index("user_id")
        if values[owner_at] is None:
            # Events about no user are sealed under the system owner's key.
            values = [*values]
            values[owner_at] = SYSTEM_OWNER
        return super()._decrypt(name, values, stored)
