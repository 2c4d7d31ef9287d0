"""The mapping of errors to problem details, and the API's settings."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from tests.api.conftest import open_world

from mangostore.api import ApiSettings
from mangostore.api.problems import PROBLEM_MEDIA_TYPE, install_problem_handlers
from mangostore.api.shapes import as_json
from mangostore.errors import (
    ConfigurationError,
    DatabaseClosedError,
    DatabaseLockedError,
    DiskFullError,
    MangoError,
    PoolTimeoutError,
    TamperedDataError,
)
from mangostore.records import Unreadable


@pytest.fixture
def failing() -> TestClient:
    """An app whose routes raise the error their path names."""
    app = FastAPI()
    install_problem_handlers(app, lambda: 0)
    errors: dict[str, Exception] = {
        "locked": DatabaseLockedError("the database is locked; try again"),
        "pool": PoolTimeoutError("no reader connection was free"),
        "closed": DatabaseClosedError("the database is closed"),
        "full": DiskFullError("no space left on the disk"),
        "tampered": TamperedDataError("a value failed authentication"),
        "config": ConfigurationError("this database has no keyring"),
        "bare": MangoError(""),
        "bug": RuntimeError("secret internals"),
    }

    @app.get("/fail/{name}")
    def fail(name: str) -> dict[str, Any]:
        raise errors[name]

    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize(
    ("name", "status", "slug"),
    [
        ("locked", 503, "busy"),
        ("pool", 503, "busy"),
        ("closed", 503, "unavailable"),
        ("full", 507, "disk-full"),
        ("tampered", 500, "tampered-data"),
        ("config", 500, "internal"),
        ("bare", 500, "internal"),
        ("bug", 500, "internal"),
    ],
)
def test_each_error_class_has_its_answer(
    failing: TestClient, name: str, status: int, slug: str
) -> None:
    answer = failing.get(f"/fail/{name}")
    assert answer.status_code == status
    assert answer.headers["content-type"] == PROBLEM_MEDIA_TYPE
    body = answer.json()
    assert body["type"] == f"urn:mangostore:problem:{slug}"
    assert body["detail"]
    assert "secret" not in answer.text
    if status == 503:
        assert answer.headers["retry-after"] == "1"


def test_a_method_a_route_does_not_take_is_405(failing: TestClient) -> None:
    answer = failing.post("/fail/locked")
    assert answer.status_code == 405
    assert answer.json()["type"] == "urn:mangostore:problem:method-not-allowed"


@pytest.mark.parametrize(
    "fields",
    [
        {"max_body_bytes": 0},
        {"session_rate": 0.0},
        {"login_burst": 0},
        {"page_size": 10, "max_page_size": 5},
        {"stream_poll_ms": 1},
        {"stream_max_s": 0},
    ],
)
def test_settings_refuse_unsafe_values(fields: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="ApiSettings"):
        ApiSettings(**fields)


def test_answers_carry_no_bytes_and_no_unreadable_values() -> None:
    assert as_json({"a": b"\x00", "b": Unreadable("sealed"), "c": (1, 2)}) == {
        "a": None,
        "b": None,
        "c": [1, 2],
    }


def test_a_request_for_another_host_name_is_421() -> None:
    for world in open_world(ApiSettings(allowed_hosts=("localhost:8766", "localhost"))):
        app = world.client.app
        with TestClient(app, base_url="http://localhost:8766") as right:
            assert right.get("/v1/health").status_code == 200
        with TestClient(app, base_url="http://rebound.example.org") as wrong:
            refused = wrong.get("/v1/health")
        assert refused.status_code == 421
        assert refused.json()["type"] == "urn:mangostore:problem:unknown-host"
        assert "localhost:8766" in refused.json()["detail"]
