"""Who "I" is: the person entity that stands for the user in their own graph.

Set it with ``db.kg.set_speaker(user_id, entity)``. Until it is set, search takes, in
this order: an entity aliased "me" or "myself", a person entity named like the user
(their username), else the person who is the subject of the most relations
that hold (in a personal memory, the user is its centre).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from mangostore.errors import InvalidValueError
from mangostore.kg.names import canonical

if TYPE_CHECKING:
    from mangostore.engine.pragmas import Connection
    from mangostore.kg.store import GraphStore

__all__ = ["Speakers"]


class Speakers:
    """The speaker's entity of each user.

    Args:
        store: the graph's row access.
    """

    def __init__(self, store: GraphStore) -> None:
        self._store = store

    def set_speaker(self, user_id: str, entity_id: str | None) -> None:
        """Make ``entity_id`` (a person of this user) the user's own entity; None forgets it.

        Raises:
            NotFoundError: no such entity.
            InvalidValueError: the entity is not a person of this user.
        """
        with self._store.transaction() as conn:
            if entity_id is None:
                conn.execute("DELETE FROM kg_speakers WHERE user_id = ?", (user_id,))
                return
            self.check_speaker(conn, user_id, entity_id)
            conn.execute(
                "INSERT INTO kg_speakers (user_id, entity_id, set_at) VALUES (?, ?, ?) "
                "ON CONFLICT (user_id) DO UPDATE SET entity_id = excluded.entity_id, "
                "set_at = excluded.set_at",
                (user_id, entity_id, self._store.now()),
            )

    def check_speaker(self, conn: Connection, user_id: str, entity_id: str) -> None:
        """Check that ``entity_id`` is a person entity of ``user_id``.

        Raises:
            NotFoundError: no such entity.
            InvalidValueError: it is not a person of this user.
        """
        entity = self._store.entity_in(conn, entity_id)
        if entity.user_id != user_id or entity.entity_type != "person":
            raise InvalidValueError(
                "the speaker must be a person entity of the same user", field="speaker"
            )

    def speaker_in(self, conn: Connection, user_id: str) -> str | None:
        """Return the user's own entity (see the module docstring), or None."""
        row = conn.execute(
            "SELECT entity_id FROM kg_speakers WHERE user_id = ?", (user_id,)
        ).fetchone()
        if row is not None:
            return str(row[0])
        names = ["me", "myself"]
        user = conn.execute("SELECT username FROM users WHERE id = ?", (user_id,)).fetchone()
        if user is not None:
            names += [canonical(n) for n in user if n]
        row = conn.execute(
            "SELECT n.entity_id FROM kg_entity_names n WHERE n.user_id = ? "
            "AND n.entity_type = 'person' AND n.canonical_name IN "
            "(SELECT value FROM json_each(?)) "
            "UNION SELECT a.entity_id FROM kg_aliases a JOIN kg_entity_names n "
            "ON n.entity_id = a.entity_id AND n.entity_type = 'person' "
            "WHERE a.user_id = ? AND a.canonical_alias IN (SELECT value FROM json_each(?)) "
            "LIMIT 1",
            (user_id, json.dumps(names), user_id, json.dumps(names)),
        ).fetchone()
        if row is not None:
            return str(row[0])
        now = self._store.now()
        row = conn.execute(
            "SELECT r.subject_id FROM kg_relations r "
            "JOIN kg_entity_names n ON n.entity_id = r.subject_id AND n.entity_type = 'person' "
            "JOIN kg_relation_validity v ON v.relation_id = r.id "
            "WHERE r.user_id = ? AND v.valid_from <= ? AND (v.valid_to IS NULL OR v.valid_to > ?) "
            "GROUP BY r.subject_id ORDER BY count(*) DESC, r.subject_id LIMIT 1",
            (user_id, now, now),
        ).fetchone()
        return None if row is None else str(row[0])
