"""The factories make a valid record of every table, with overrides, through the plugin."""

from __future__ import annotations

import pytest

import mangostore
from mangostore.records import RECORD_CLASSES
from mangostore.testing import FACTORY_METHODS, Factory


def test_every_table_with_a_record_class_has_a_factory() -> None:
    assert set(FACTORY_METHODS) == {record.__table__ for record in RECORD_CLASSES}
    assert all(callable(getattr(Factory, name)) for name in FACTORY_METHODS.values())


def test_each_factory_makes_a_stored_record(mango_make: Factory) -> None:
    # One database for every table: opening one runs every migration.
    for table in sorted(FACTORY_METHODS):
        record = mango_make.for_table(table)
        assert type(record).__table__ == table
        assert getattr(mango_make.db, table).get(record.id) == record, table


def test_overrides_and_parents_are_used(mango_make: Factory) -> None:
    ann = mango_make.user(username="ann", email=None)
    site = mango_make.project(user=ann, name="site")
    failed = mango_make.command(user=ann.id, project=site, exit_code=2, command="make")
    assert (ann.username, ann.email) == ("ann", None)
    assert site.user_id == ann.id
    assert (failed.user_id, failed.project_id, failed.exit_code) == (ann.id, site.id, 2)


def test_unique_values_never_clash(mango_make: Factory) -> None:
    users = [mango_make.user() for _ in range(5)]
    kinds = [mango_make.notification_type() for _ in range(3)]
    assert len({u.username for u in users} | {u.email for u in users}) == 10
    assert len({k.name for k in kinds}) == 3


def test_a_relation_links_two_entities_of_one_user(mango_make: Factory) -> None:
    relation = mango_make.kg_relation()
    db = mango_make.db
    subject, obj = db.kg_entities.get(relation.subject_id), db.kg_entities.get(relation.object_id)
    assert subject.user_id == obj.user_id == relation.user_id
    assert subject.id != obj.id


def test_a_parent_that_is_not_a_record_or_id_is_refused(mango_make: Factory) -> None:
    with pytest.raises(TypeError, match="a record or an id"):
        mango_make.project(user=42)  # type: ignore[arg-type]


def test_encrypted_values_round_trip_on_the_encrypted_fixture(
    mango_encrypted_db: mangostore.Database,
    mango_factory: type[Factory],
) -> None:
    make = mango_factory(mango_encrypted_db)
    user = make.user(security_profile={"mfa": True})
    assert mango_encrypted_db.keyring is not None
    assert mango_encrypted_db.users.get(user.id).security_profile == {"mfa": True}
    stored = mango_encrypted_db.query("SELECT security_profile FROM users WHERE id = ?", [user.id])
    assert b"mfa" not in bytes(stored[0][0])
