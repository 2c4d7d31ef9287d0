"""The strategies draw arguments every repository accepts, for every record type."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mangostore.errors import InvalidValueError
from mangostore.records import RECORD_CLASSES, User
from mangostore.testing import Factory, open_memory_test_db
from mangostore.testing.strategies import fields, records


@pytest.fixture(scope="module")
def shared() -> Iterator[Factory]:
    # One database for every example: opening one runs every migration.
    db = open_memory_test_db()
    yield Factory(db)
    db.close()


@pytest.mark.parametrize("record", RECORD_CLASSES, ids=lambda r: r.__table__)
def test_records_of_every_type_are_stored_as_drawn(shared: Factory, record: type) -> None:
    @settings(max_examples=8)
    @given(st.data())
    def check(data: st.DataObject) -> None:
        made = data.draw(records(shared, record))
        assert isinstance(made, record)
        assert getattr(shared.db, record.__table__).get(made.id) == made

    check()


def test_drawn_user_fields_round_trip(shared: Factory) -> None:
    @settings(max_examples=25)
    @given(fields(User))
    def check(values: dict[str, object]) -> None:
        user = shared.db.users.create(**values)
        stored = shared.db.users.get(user.id).to_dict()
        assert {k: stored[k] for k in values} == values

    check()


def test_a_reference_is_drawn_only_from_the_ids_given(shared: Factory) -> None:
    project = shared.project()

    @settings(max_examples=10)
    @given(fields("command_history", foreign={"user_id": [project.user_id]}))
    def check(values: dict[str, object]) -> None:
        assert values["user_id"] == project.user_id
        assert "project_id" not in values

    check()


def test_an_unknown_table_is_refused() -> None:
    with pytest.raises(InvalidValueError, match="no record class for table 'nope'"):
        fields("nope")
