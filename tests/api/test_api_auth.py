"""Who may call the API: tokens, sessions, permissions (denials audited) and limits."""

from __future__ import annotations

from typing import Any

import pytest
from tests.api.conftest import PASSWORD, ApiWorld, open_world

from mangostore.api import ApiSettings


def _problem(response: Any, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:mangostore:problem:{slug}"
    assert body["status"] == status
    assert body["detail"]
    return body


def test_login_gives_a_token_that_opens_the_api(api: ApiWorld) -> None:
    answer = api.client.post("/v1/login", json={"username": "ann", "password": PASSWORD})
    assert answer.status_code == 200
    token = answer.json()["token"]
    me = api.client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["user"]["username"] == "ann"
    assert "token" not in me.text
    assert token not in me.text


def test_a_wrong_password_is_401_and_says_nothing_of_the_user(api: ApiWorld) -> None:
    wrong = api.client.post("/v1/login", json={"username": "ann", "password": "not it at all"})
    unknown = api.client.post("/v1/login", json={"username": "zed", "password": "not it at all"})
    assert (
        _problem(wrong, 401, "unauthenticated")["detail"]
        == (_problem(unknown, 401, "unauthenticated")["detail"])
    )
    assert wrong.headers["www-authenticate"].startswith("Bearer")


def test_a_locked_account_is_429_with_retry_after(api: ApiWorld) -> None:
    for _ in range(4):
        api.client.post("/v1/login", json={"username": "bob", "password": "wrong password"})
    locked = api.client.post("/v1/login", json={"username": "bob", "password": "wrong password"})
    _problem(locked, 429, "account-locked")
    assert int(locked.headers["retry-after"]) > 0


@pytest.mark.parametrize(
    "header",
    [None, "Basic abc", "Bearer ", "Bearer not-a-token", "Bearer " + "A" * 66],
    ids=["missing", "basic", "empty", "malformed", "unknown"],
)
def test_requests_without_a_valid_token_are_401(api: ApiWorld, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    _problem(api.client.get("/v1/projects", headers=headers), 401, "unauthenticated")


def test_a_logged_out_session_is_refused_as_revoked(api: ApiWorld) -> None:
    headers = api.headers(api.ann)
    assert api.client.post("/v1/logout", headers=headers).status_code == 204
    _problem(api.client.get("/v1/me", headers=headers), 401, "session-revoked")


def test_an_idle_session_is_refused_as_expired(api: ApiWorld) -> None:
    headers = api.headers(api.ann)
    api.clock.advance(31 * 60 * 1000)
    _problem(api.client.get("/v1/me", headers=headers), 401, "session-expired")


def test_without_a_grant_every_data_route_is_403_and_audited(api: ApiWorld) -> None:
    headers = api.headers(api.bob)
    routes = [
        ("get", "/v1/projects"),
        ("get", "/v1/terminal-sessions"),
        ("get", "/v1/commands"),
        ("get", "/v1/notifications"),
        ("get", "/v1/memory"),
        ("get", "/v1/conversations"),
        ("get", "/v1/kg/search?q=shell"),
        ("get", "/v1/audit/verify"),
        ("post", "/v1/privacy/export"),
    ]
    for method, path in routes:
        _problem(api.client.request(method, path, headers=headers), 403, "forbidden")
    denials = [
        e
        for e in api.db.security_events.list(user_id=api.bob.id)
        if e.event_type == "access" and (e.event_data or {}).get("outcome") == "denied"
    ]
    assert {(d.event_data or {}).get("resource_type") for d in denials} == {
        "project",
        "terminal",
        "ai",
    }
    # /v1/me needs only the session
    assert api.client.get("/v1/me", headers=headers).status_code == 200


def test_a_grant_on_one_type_opens_only_that_type(api: ApiWorld) -> None:
    api.db.access.grant(api.bob.id, "project", "*", "read")
    headers = api.headers(api.bob)
    assert api.client.get("/v1/projects", headers=headers).status_code == 200
    _problem(
        api.client.post("/v1/projects", json={"name": "x", "path": "/x"}, headers=headers),
        403,
        "forbidden",
    )
    _problem(api.client.get("/v1/memory", headers=headers), 403, "forbidden")


def test_a_condition_on_the_session_level_is_checked(api: ApiWorld) -> None:
    api.db.access.grant(api.bob.id, "ai", "*", "read", conditions={"min_security_level": "high"})
    _problem(api.client.get("/v1/memory", headers=api.headers(api.bob)), 403, "forbidden")
    high = api.headers(api.bob, security_level="high")
    assert api.client.get("/v1/memory", headers=high).status_code == 200


def test_another_users_rows_are_not_found(api: ApiWorld) -> None:
    for resource_type in ("project", "terminal", "ai"):
        api.db.access.grant(api.bob.id, resource_type, "*", "admin")
    site = api.db.projects.create(user_id=api.ann.id, name="site", path="/site")
    chat = api.db.conversations.create(api.ann.id, title="private")
    headers = api.headers(api.bob)
    _problem(api.client.get(f"/v1/projects/{site.id}", headers=headers), 404, "not-found")
    _problem(api.client.delete(f"/v1/projects/{site.id}", headers=headers), 404, "not-found")
    _problem(api.client.get(f"/v1/conversations/{chat.id}", headers=headers), 404, "not-found")
    assert api.client.get("/v1/projects", headers=headers).json()["items"] == []
    assert api.db.projects.exists(site.id)


def test_each_session_has_its_own_rate_limit() -> None:
    for world in open_world(ApiSettings(session_rate=1.0, session_burst=3)):
        first, second = world.headers(world.ann), world.headers(world.ann)
        for _ in range(3):
            assert world.client.get("/v1/me", headers=first).status_code == 200
        limited = world.client.get("/v1/me", headers=first)
        _problem(limited, 429, "rate-limited")
        assert limited.headers["retry-after"] == "1"
        assert world.client.get("/v1/me", headers=second).status_code == 200
        world.clock.advance(1000)
        assert world.client.get("/v1/me", headers=first).status_code == 200


def test_login_attempts_are_limited_per_address() -> None:
    for world in open_world(ApiSettings(login_rate=0.1, login_burst=2)):
        body = {"username": "ann", "password": "wrong password"}
        for _ in range(2):
            _problem(world.client.post("/v1/login", json=body), 401, "unauthenticated")
        _problem(world.client.post("/v1/login", json=body), 429, "rate-limited")


def test_a_body_over_the_limit_is_413_problem_details() -> None:
    for world in open_world(ApiSettings(max_body_bytes=1024)):
        headers = {**world.headers(world.ann), "content-type": "application/json"}
        body = b'{"name": "x", "path": "' + b"p" * 2000 + b'"}'
        _problem(world.client.post("/v1/projects", content=body, headers=headers), 413, "too-large")

        def chunks(data: bytes) -> Any:
            yield data[:600]
            yield data[600:]

        chunked = world.client.post("/v1/projects", content=chunks(body), headers=headers)
        _problem(chunked, 413, "too-large")
        assert world.db.projects.count() == 0
