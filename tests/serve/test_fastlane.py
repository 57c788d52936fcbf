"""The ASGI fast lane answers POST /v1/events exactly as the FastAPI route does."""

from __future__ import annotations

import json
from pathlib import Path

from distillguard.serve.fastlane import EventsFastLane
from tests.serve.conftest import READ, WRITE
from tests.serve.traffic import hydra, normal_user

SMALL_LIMIT = 40_000


def _requests() -> list[tuple[str, dict[str, str], bytes]]:
    users, cluster = normal_user("ann", 6), hydra("hy", 4, 5)
    ok = json.dumps({"events": users}).encode()
    bad_event = json.dumps({"events": [dict(users[0], request_id="z", timestamp="soon")]})
    to_fix = json.dumps({"events": [dict(users[0], request_id="y", status=" OK")]})
    return [
        ("ok", WRITE, ok),
        ("hydra", WRITE, json.dumps({"events": cluster}).encode()),
        ("again: duplicates", WRITE, ok),
        ("empty", WRITE, b'{"events": []}'),
        ("invalid event", WRITE, bad_event.encode()),
        ("fields to fix", WRITE, to_fix.encode()),
        ("malformed", WRITE, b'{"events": ['),
        ("not an object", WRITE, b"[1, 2]"),
        ("no events", WRITE, b'{"batch": []}'),
        ("too large", WRITE, b'{"events": [' + b" " * SMALL_LIMIT + b"]}"),
        ("no token", {}, ok),
        ("unknown token", {"Authorization": "Bearer nope"}, ok),
        ("read token", READ, ok),
    ]  # fmt: skip


def _answers(client) -> list[tuple[str, int, object, str, str | None]]:
    out = []
    for label, headers, body in _requests():
        r = client.post("/v1/events", content=body, headers=headers)
        out.append(
            (label, r.status_code, r.json(), r.headers["content-type"],
             r.headers.get("www-authenticate"))
        )  # fmt: skip
    return out


def _uses_fast_lane(client) -> bool:
    return any(m.cls is EventsFastLane for m in client.app.user_middleware)


def test_fast_lane_and_fastapi_route_give_the_same_answers(client_factory, tmp_path: Path):
    server = {"max_body_bytes": SMALL_LIMIT}
    fast = client_factory(server=server, state={"path": str(tmp_path / "a.db")})
    route = client_factory(
        server={**server, "fast_lane": False}, state={"path": str(tmp_path / "b.db")}
    )
    assert _uses_fast_lane(fast) and not _uses_fast_lane(route)
    got, expected = _answers(fast), _answers(route)
    assert [a[:2] for a in got] == [a[:2] for a in expected]  # statuses first: clearer failure
    assert got == expected
    statuses = {label: status for label, status, *_ in got}
    assert statuses["ok"] == 200 and statuses["invalid event"] == 422
    assert statuses["empty"] == 200
    assert statuses["too large"] == 413 and statuses["no token"] == 401
    assert statuses["read token"] == 403 and statuses["malformed"] == 400


def test_fast_lane_counts_its_requests_in_the_metrics(client):
    client.post("/v1/events", content=b"{", headers=WRITE)
    client.post("/v1/events", json={"events": normal_user("bo", 2)}, headers=WRITE)
    text = client.get("/metrics", headers=READ).text
    assert 'distillguard_http_requests_total{route="/v1/events",status="400"} 1' in text
    assert 'distillguard_http_requests_total{route="/v1/events",status="200"} 1' in text


def test_a_failure_behind_the_fast_lane_is_a_500_and_the_service_answers_on(client):
    svc = client.app.state.service
    real = svc.store.commit

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    svc.store.commit = broken  # fails on the committer thread, which answers the coroutine
    try:
        r = client.post("/v1/events", json={"events": normal_user("cy", 1)}, headers=WRITE)
    finally:
        svc.store.commit = real
    assert r.status_code == 500 and r.text == "Internal Server Error"
    again = client.post("/v1/events", json={"events": normal_user("cy", 1)}, headers=WRITE)
    assert again.status_code == 200
    text = client.get("/metrics", headers=READ).text
    assert 'distillguard_http_requests_total{route="/v1/events",status="500"} 1' in text
