"""The plugin, as an application's test suite sees it (run through ``pytester``)."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

import pytest

from mangostore.errors import ConfigurationError
from mangostore.testing import fast_test_settings

pytest_plugins = ["pytester"]

APPLICATION_TESTS = """
from mangostore.testing import assert_query_time, assert_uses_index, snapshot


def test_a_user_and_her_project(mango_make):
    ann = mango_make.user(username="ann")
    site = mango_make.project(user=ann, name="site")
    assert mango_make.db.projects.find_by_user(ann.id) == [site]


def test_the_encrypted_database_keeps_fields_encrypted(mango_encrypted_db, mango_factory):
    make = mango_factory(mango_encrypted_db)
    user = make.user(security_profile={"mfa": True})
    assert mango_encrypted_db.users.get(user.id).security_profile == {"mfa": True}


def test_recent_commands_are_fast_and_indexed(mango_db, mango_make):
    ann = mango_make.user()
    for n in range(20):
        mango_make.command(user=ann, command=f"make {n}")
    sql = "SELECT * FROM command_history WHERE user_id = ? ORDER BY timestamp DESC LIMIT 10"
    assert_uses_index(mango_db, sql, [ann.id])
    assert_query_time(sql, 60_000, iterations=10, db=mango_db, params=[ann.id])


def test_a_snapshot_sees_the_change(mango_make):
    before = snapshot(mango_make.db, tables=["users"])
    mango_make.user()
    assert before.diff(snapshot(mango_make.db, tables=["users"]))
"""

SLOW_TEST = """
from mangostore.testing import assert_query_time


def test_history_search(mango_make):
    mango_make.command(output="hello")
    assert_query_time(
        "SELECT * FROM command_history WHERE output LIKE ?", 0, iterations=5,
        db=mango_make.db, params=["%ell%"],
    )
"""


def test_the_plugin_is_registered_by_entry_point() -> None:
    found = [e for e in entry_points(group="pytest11") if e.name == "mangostore"]
    assert [e.value for e in found] == ["mangostore_pytest"]


def test_an_application_test_file_passes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_app=APPLICATION_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)


def test_a_slow_query_fails_with_a_readable_message(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_slow=SLOW_TEST)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: query too slow: mean * ms > 0 ms allowed",
            "*min * ms, median * ms, p95 * ms, max * ms, mean * ms (5 runs)",
            "*sql: SELECT * FROM command_history WHERE output LIKE ?",
            "*plan:",
            "*SCAN command_history*",
        ]
    )


def test_a_suite_without_the_fixtures_sees_nothing_of_the_plugin(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_other="""
def test_plain(request):
    assert not [f for f in request.fixturenames if f.startswith("mango")]
"""
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    listed = pytester.runpytest("-p", "no:cacheprovider", "--fixtures")
    names = [line.split()[0] for line in listed.stdout.lines if line.startswith("mango_")]
    assert sorted(names) == sorted(
        [
            "mango_db",
            "mango_encrypted_db",
            "mango_factory",
            "mango_make",
            "mango_passphrase",
            "mango_settings",
        ]
    )


def test_fast_key_derivation_is_refused_outside_a_test(monkeypatch: pytest.MonkeyPatch) -> None:
    assert fast_test_settings().kdf.memory_kib == 19 * 1024
    monkeypatch.delenv("PYTEST_CURRENT_TEST")
    with pytest.raises(ConfigurationError, match="for tests only"):
        fast_test_settings()


def test_loading_the_plugin_imports_only_what_it_must() -> None:
    code = (
        "import sys, mangostore_pytest\n"
        "print(sorted(m for m in sys.modules if m.startswith(('hypothesis', 'mangostore'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # Not even the mangostore package: pytest loads plugins before coverage starts.
    assert done.stdout.strip() == "['mangostore_pytest']"
