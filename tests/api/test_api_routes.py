"""The API's routes do what the services they call do, page by cursor and refuse bad
input as problem details."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import ApiWorld


def _all_pages(api: ApiWorld, path: str, headers: dict[str, str]) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        params = {"cursor": cursor} if cursor else {}
        body = api.client.get(path, params=params, headers=headers).json()
        pages.append([item["id"] for item in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


def test_projects_page_by_cursor_newest_first(api: ApiWorld) -> None:
    headers = api.headers(api.ann)
    made = [
        api.client.post(
            "/v1/projects", json={"name": f"p{i}", "path": f"/p{i}"}, headers=headers
        ).json()["id"]
        for i in range(5)
    ]
    pages = _all_pages(api, "/v1/projects", headers)
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [i for p in pages for i in p] == made[::-1]


def test_a_page_is_not_shifted_by_rows_added_meanwhile(api: ApiWorld) -> None:
    headers = api.headers(api.ann)
    for i in range(3):
        api.db.command_history.record(api.ann.id, f"make {i}")
    first = api.client.get("/v1/commands", headers=headers).json()
    api.db.command_history.record(api.ann.id, "make late")
    second = api.client.get(
        "/v1/commands", params={"cursor": first["next_cursor"]}, headers=headers
    ).json()
    assert [c["command"] for c in first["items"]] == ["make 2", "make 1"]
    assert [c["command"] for c in second["items"]] == ["make 0"]
    assert second["next_cursor"] is None


def test_bad_cursors_and_limits_are_422(api: ApiWorld) -> None:
    headers = api.headers(api.ann)
    for params in ({"cursor": "%%%"}, {"cursor": "AAAA"}, {"limit": 0}, {"limit": 100000}):
        answer = api.client.get("/v1/projects", params=params, headers=headers)
        assert answer.status_code == 422, params
        assert answer.headers["content-type"] == "application/problem+json"


def test_project_lifecycle_and_etag(api: ApiWorld) -> None:
    headers = api.headers(api.ann)
    made = api.client.post(
        "/v1/projects",
        json={"name": "site", "path": "/site", "metadata": {"a": 1}},
        headers=headers,
    )
    assert made.status_code == 201
    pid = made.json()["id"]
    first = api.client.get(f"/v1/projects/{pid}", headers=headers)
    tag = first.headers["etag"]
    again = api.client.get(f"/v1/projects/{pid}", headers={**headers, "If-None-Match": tag})
    assert again.status_code == 304
    changed = api.client.patch(f"/v1/projects/{pid}", json={"status": "archived"}, headers=headers)
    assert changed.json()["status"] == "archived"
    after = api.client.get(f"/v1/projects/{pid}", headers={**headers, "If-None-Match": tag})
    assert after.status_code == 200
    assert after.headers["etag"] != tag
    assert api.client.delete(f"/v1/projects/{pid}", headers=headers).status_code == 204
    assert api.client.get(f"/v1/projects/{pid}", headers=headers).status_code == 404


def test_library_refusals_are_problem_details_naming_the_field(api: ApiWorld) -> None:
    headers = api.headers(api.ann)
    body = {"name": "site", "path": "/site"}
    assert api.client.post("/v1/projects", json=body, headers=headers).status_code == 201
    clash = api.client.post("/v1/projects", json=body, headers=headers)
    assert clash.status_code == 409
    assert clash.json()["type"] == "urn:mangostore:problem:conflict"
    bad = api.client.post(
        "/v1/commands", json={"command": "ls", "project_id": "no-such-project"}, headers=headers
    )
    assert bad.status_code == 409
    shape = api.client.post("/v1/projects", json={"name": "x"}, headers=headers)
    assert shape.status_code == 422
    assert shape.json()["errors"][0]["loc"] == ["body", "path"]
    surrogate = api.client.post(
        "/v1/memory",
        content=b'{"key": "k\\ud800", "value": 1}',
        headers={**headers, "content-type": "application/json"},
    )
    assert surrogate.status_code == 422  # text that is not Unicode never reaches the library
    assert surrogate.json()["errors"][0]["loc"] == ["body", "key"]
    unknown_type = api.client.post(
        "/v1/commands", json={"command": "ls", "command_type": "mouse"}, headers=headers
    )
    assert unknown_type.status_code == 422
    api.client.post("/v1/kg/entities", json={"type": "person", "name": "Ann"}, headers=headers)
    predicate = api.client.post(
        "/v1/kg/relations",
        json={"subject": "Ann", "predicate": "Not A Predicate!", "object": "Ann"},
        headers=headers,
    )
    assert predicate.status_code == 422
    assert predicate.json()["type"] == "urn:mangostore:problem:invalid-input"
    assert predicate.json()["field"] == "predicate"


def test_terminal_sessions_and_command_history(api: ApiWorld) -> None:
    headers = api.headers(api.ann)
    term = api.client.post(
        "/v1/terminal-sessions",
        json={"name": "main", "environment_variables": {"EDITOR": "vim"}},
        headers=headers,
    ).json()
    assert term["status"] == "active"
    assert term["environment_variables"] == {"EDITOR": "vim"}
    for command, code in (("git push", 0), ("git pull", 1), ("ls", 0)):
        recorded = api.client.post(
            "/v1/commands",
            json={
                "command": command,
                "exit_code": code,
                "command_type": "voice",
                "terminal_session_id": term["id"],
            },
            headers=headers,
        )
        assert recorded.status_code == 201
    found = api.client.get("/v1/commands/search", params={"q": "git"}, headers=headers).json()
    assert [c["command"] for c in found["items"]] == ["git pull", "git push"]
    stats = api.client.get("/v1/commands/stats", headers=headers).json()
    assert stats["total"] == 3
    assert {(e["exit_code"], e["count"]) for e in stats["by_exit_code"]} == {(0, 2), (1, 1)}
    closed = api.client.post(f"/v1/terminal-sessions/{term['id']}/close", headers=headers)
    assert closed.json()["status"] == "closed"
    listed = api.client.get("/v1/terminal-sessions", params={"status": "closed"}, headers=headers)
    assert [t["id"] for t in listed.json()["items"]] == [term["id"]]


def _notify(api: ApiWorld, count: int) -> list[str]:
    api.db.notify.register_type(
        "build.done",
        category="project",
        template="Build {name} done",
        default_actions=[{"type": "button", "label": "Open log", "command": "open-log"}],
    )
    api.db.notify.set_preferences(api.ann.id, "build.done", delivery_methods=["log"])
    return [
        api.db.notify.send(api.ann.id, "build.done", {"name": f"b{i}"}).id for i in range(count)
    ]


def test_notifications_read_dismiss_and_actions(api: ApiWorld) -> None:
    headers = api.headers(api.ann)
    ids = _notify(api, 3)
    unread = api.client.get(
        "/v1/notifications/unread", params={"limit": 10}, headers=headers
    ).json()
    assert sorted(n["id"] for n in unread["items"]) == sorted(ids)
    read = api.client.post("/v1/notifications/read", json={"ids": ids[:1]}, headers=headers)
    assert read.json()["items"][0]["status"] == "read"
    twice = api.client.post("/v1/notifications/read", json={"ids": ids[:2]}, headers=headers)
    assert twice.status_code == 409  # all or none: the second stays unread
    assert api.db.notifications.get(ids[1]).status == "delivered"
    dismissed = api.client.post(
        "/v1/notifications/dismiss", json={"ids": ids[1:2]}, headers=headers
    )
    assert dismissed.json()["items"][0]["status"] == "dismissed"
    assert [n["id"] for n in _pages_of(api, "/v1/notifications?status=delivered", headers)] == [
        ids[2]
    ]
    actions = api.client.get(f"/v1/notifications/{ids[2]}/actions", headers=headers).json()["items"]
    assert [a["action_label"] for a in actions] == ["Open log"]
    path = f"/v1/notifications/{ids[2]}/actions/{actions[0]['id']}/execute"
    done = api.client.post(path, json={"result": "opened"}, headers=headers)
    assert done.json()["execution_result"] == "opened"
    assert api.client.post(path, json={}, headers=headers).status_code == 409
    other = api.headers(api.bob)
    api.db.access.grant(api.bob.id, "terminal", "*", "admin")
    assert (
        api.client.post("/v1/notifications/read", json={"ids": ids[2:]}, headers=other).status_code
        == 404
    )


def _pages_of(api: ApiWorld, path: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    body = api.client.get(path, headers=headers).json()
    items += body["items"]
    while body["next_cursor"]:
        body = api.client.get(path + "&cursor=" + body["next_cursor"], headers=headers).json()
        items += body["items"]
    return items


def test_the_stream_sends_new_notifications_as_events(api: ApiWorld) -> None:
    headers = api.headers(api.ann)
    ids = _notify(api, 3)
    with api.client.stream(
        "GET",
        "/v1/notifications/stream",
        params={"timeout_s": 1},
        headers={**headers, "Last-Event-ID": ids[0]},
    ) as answer:
        assert answer.headers["content-type"].startswith("text/event-stream")
        text = "".join(answer.iter_text())
    events = [block for block in text.split("\n\n") if "event: notification" in block]
    assert [e.split("\n")[0] for e in events] == [f"id: {i}" for i in ids[1:]]
    assert text.rstrip().endswith('data: {"reason": "timeout"}')


def test_the_stream_ends_when_the_session_does(api: ApiWorld) -> None:
    headers = api.headers(api.ann)
    api.db.sessions.revoke_all(api.ann.id)
    answer = api.client.get("/v1/notifications/stream", headers=headers)
    assert answer.status_code == 401


def test_memory_remember_recall_forget(api: ApiWorld) -> None:
    headers = api.headers(api.ann)
    for value in ("bash", "fish"):
        made = api.client.post(
            "/v1/memory",
            json={"key": "preferred_shell", "value": value, "memory_type": "preference"},
            headers=headers,
        )
        assert made.status_code == 201
    by_key = api.client.get("/v1/memory/recall", params={"key": "preferred_shell"}, headers=headers)
    assert [h["value"] for h in by_key.json()["items"]] == ["fish"]
    by_words = api.client.get("/v1/memory/recall", params={"q": "which shell"}, headers=headers)
    assert by_words.json()["items"][0]["key"] == "preferred_shell"
    forgot = api.client.delete("/v1/memory/preferred_shell", headers=headers)
    assert forgot.json()["forgotten"] == 2
    assert api.client.get("/v1/memory", headers=headers).json()["items"] == []


def test_conversations_and_their_messages(api: ApiWorld) -> None:
    headers = api.headers(api.ann)
    chat = api.client.post(
        "/v1/conversations", json={"title": "build", "data": {"model": "m1"}}, headers=headers
    ).json()
    for i in range(3):
        api.client.post(
            f"/v1/conversations/{chat['id']}/messages",
            json={"role": "user", "content": f"message {i}"},
            headers=headers,
        )
    first = api.client.get(f"/v1/conversations/{chat['id']}/messages", headers=headers).json()
    assert [m["seq"] for m in first["items"]] == [1, 2]
    rest = api.client.get(
        f"/v1/conversations/{chat['id']}/messages",
        params={"after_seq": first["next_after_seq"]},
        headers=headers,
    ).json()
    assert [m["content"] for m in rest["items"]] == ["message 2"]
    assert rest["next_after_seq"] is None
    archived = api.client.post(f"/v1/conversations/{chat['id']}/archive", headers=headers)
    assert archived.json()["status"] == "archived"
    refused = api.client.post(
        f"/v1/conversations/{chat['id']}/messages",
        json={"role": "user", "content": "late"},
        headers=headers,
    )
    assert refused.status_code == 409
    assert refused.json()["type"] == "urn:mangostore:problem:invalid-transition"


def test_knowledge_graph_upsert_relate_neighbors_search(api: ApiWorld) -> None:
    headers = api.headers(api.ann)
    me = api.client.post("/v1/kg/entities", json={"type": "person", "name": "Ann"}, headers=headers)
    assert me.json()["created"] is True
    again = api.client.post(
        "/v1/kg/entities", json={"type": "person", "name": "ANN"}, headers=headers
    )
    assert again.json()["created"] is False
    api.client.post(
        "/v1/kg/entities",
        json={"type": "project", "name": "falcon-api", "description": "payments service"},
        headers=headers,
    )
    related = api.client.post(
        "/v1/kg/relations",
        json={"subject": "Ann", "predicate": "works_on", "object": "falcon-api"},
        headers=headers,
    )
    assert related.json()["predicate"] == "works_on"
    observed = api.client.post(
        "/v1/kg/entities/falcon-api/observations",
        json={"content": "deployed every friday"},
        headers=headers,
    )
    assert observed.json()["content"] == "deployed every friday"
    near = api.client.get("/v1/kg/entities/Ann/neighbors", headers=headers).json()["items"]
    assert [n["entity"]["name"] for n in near] == ["falcon-api"]
    hits = api.client.get(
        "/v1/kg/search", params={"q": "payments service", "explain": True}, headers=headers
    ).json()["items"]
    assert hits[0]["entity"]["name"] == "falcon-api"
    assert hits[0]["explanation"] is not None
    described = api.client.get("/v1/kg/entities/falcon-api", headers=headers).json()
    assert [o["content"] for o in described["observations"]] == ["deployed every friday"]
    missing = api.client.post(
        "/v1/kg/relations",
        json={"subject": "Ann", "predicate": "works_on", "object": "nothing"},
        headers=headers,
    )
    assert missing.status_code == 404


def test_audit_verify_and_privacy_export(api: ApiWorld) -> None:
    headers = api.headers(api.ann)
    api.db.memory.remember(api.ann.id, "editor", "helix")
    report = api.client.get("/v1/audit/verify", headers=headers).json()
    assert report["ok"] is True
    assert report["events_checked"] > 0
    export = api.client.post("/v1/privacy/export", headers=headers).json()
    files = {f["table"]: f for f in export["files"]}
    assert export["user_id"] == api.ann.id
    assert [line["key_name"] for line in files["ai_memory"]["lines"]] == ["editor"]
    assert [line["username"] for line in files["users"]["lines"]] == ["ann"]
    assert all(len(line) for line in files["users"]["lines"])


def test_health_and_openapi_need_no_token(api: ApiWorld) -> None:
    assert api.client.get("/v1/health").json()["status"] == "ok"
    spec = api.client.get("/openapi.json").json()
    assert "/v1/kg/search" in spec["paths"]
    assert spec["components"]["schemas"]["Problem"]["required"] == [
        "type",
        "title",
        "status",
        "detail",
    ]
    unknown = api.client.get("/v1/nothing-here")
    assert unknown.status_code == 404
    assert unknown.json()["type"] == "urn:mangostore:problem:no-such-route"
