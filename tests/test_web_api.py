"""The web UI over HTTP, in process (FastAPI's TestClient): every page and API route on
real runs recorded into a store (tests/web_support.py), the token, sessions and CSRF
tokens of the actions, the security headers, hostile agent text, passwords in store
URLs, live updates, paging over 100,000 executions, and the `livingai ui` command."""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx2 import Response  # what Starlette's TestClient answers with

from livingai import (
    CheckpointEngine,
    ExecutionEntry,
    ExecutionNode,
    NodeType,
    Runtime,
    Status,
    open_store,
)
from livingai.cli import cli
from livingai.web import create_app, data
from tests import web_support
from tests.services import POSTGRES_DSN, REDIS_URL, need_server, unique_name
from tests.web_support import IMAGE, SCRIPT, Recorded, recorded_store, run_async

TOKEN = "test-token-0123456789"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
PAGES = ["/", "/pending", "/costs", "/diff", "/login"]


@pytest.fixture
def recorded(tmp_path: Path) -> Recorded:
    return recorded_store(tmp_path)


def client_for(app: FastAPI) -> TestClient:
    return TestClient(app, follow_redirects=False)


@pytest.fixture
def reader(recorded: Recorded) -> Iterator[TestClient]:
    """A read-only UI: no actions at all."""
    with client_for(create_app(recorded.url, agents=web_support.AGENTS)) as client:
        yield client


@pytest.fixture
def actor(recorded: Recorded) -> Iterator[TestClient]:
    """A UI that allows actions with TOKEN, not logged in."""
    app = create_app(recorded.url, agents=web_support.AGENTS, allow_actions=True, token=TOKEN)
    with client_for(app) as client:
        yield client


def logged_in(client: TestClient) -> str:
    """Log the client in with the token; the CSRF token of its session."""
    answer = client.post("/login", data={"token": TOKEN, "next": "/pending"})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/pending"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    return csrf_of(client.get("/executions/trip-ok").text)


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]*)"', page)
    assert found is not None, "no CSRF field on the page"
    return found.group(1)


def execution_ids(page: str, table: str) -> list[str]:
    body = page.split(f'<table id="{table}">', 1)[1].split("</table>", 1)[0]
    return re.findall(r'<tr data-execution-id="([^"]+)"', body)


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def detail(answer: Response) -> str:
    return str(answer.json()["detail"])


# -- reading: the executions list ----------------------------------------------------------


def test_the_executions_page_lists_every_execution_newest_first(
    reader: TestClient, recorded: Recorded
) -> None:
    page = reader.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    shown = execution_ids(page.text, "executions")
    assert set(shown) == set(recorded.ids.values())
    assert shown[0] == recorded.ids["notes"]  # saved last
    assert shown[-1] == recorded.ids["ok"]  # saved first
    for execution_id in shown:
        assert f'href="/executions/{execution_id}"' in page.text
    form = page.text.split('<form id="filters" method="get"', 1)[1].split("</form>", 1)[0]
    for name in ("status", "agent", "since", "until", "min_cost", "q"):
        assert f'name="{name}"' in form
    assert 'rel="next"' not in page.text  # one page


def test_the_api_filters_executions(reader: TestClient, recorded: Recorded) -> None:
    def ids(**query: str) -> set[str]:
        answer = reader.get("/api/executions", params=query)
        assert answer.status_code == 200, answer.text
        return {item["execution_id"] for item in answer.json()["items"]}

    ids_of = recorded.ids
    assert ids(status="failed") == {ids_of["failed"]}
    assert ids(status="RUNNING") == {ids_of["in_doubt"], ids_of["pending"], ids_of["fork"]}
    assert ids(agent="hostile_agent") == {ids_of["hostile"]}
    assert ids(q="TRIP-") == {ids_of[name] for name in ("ok", "failed", "in_doubt", "pending")}
    assert ids(min_cost="0.00005") == {ids_of["hostile"]}
    assert ids(since="2999-01-01") == set()
    assert ids(until="1d", since="1d") == set()
    assert ids(since="1h", status="success", agent="book_trip") == {ids_of["ok"], ids_of["replay"]}
    assert ids(status="", agent="", q="") == set(ids_of.values())  # an empty form field
    for query, named in (
        ({"status": "DONE"}, "status"),
        ({"since": "yesterday"}, "since"),
        ({"min_cost": "-1"}, "min_cost"),
        ({"min_cost": "lots"}, "min_cost"),
    ):
        answer = reader.get("/api/executions", params=query)
        assert answer.status_code == 422
        assert detail(answer).startswith(f"{named}: ")
    page = reader.get("/", params={"since": "yesterday"})
    assert page.status_code == 422
    assert "since: &#39;yesterday&#39; is not a time" in page.text


def test_a_summary_of_given_executions_reads_only_those(recorded: Recorded) -> None:
    async def summaries() -> tuple[list[str], list[str], int]:
        async with Runtime(CheckpointEngine(open_store(recorded.url))) as runtime:
            some = await runtime.executions(ids=["trip-failed", "nope", "trip-ok", "trip-ok"])
            failed = await runtime.executions(ids=["trip-failed", "trip-ok"], status="FAILED")
            none = await runtime.executions(ids=[])
        return [s.execution_id for s in some], [s.execution_id for s in failed], len(none)

    assert run_async(summaries()) == (["trip-ok", "trip-failed"], ["trip-failed"], 0)


def test_100k_executions_are_paged_on_the_server(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'big.db'}"
    total = 100_000
    run_async(web_support.fill(url, total))
    with client_for(create_app(url)) as client:
        started = time.perf_counter()
        first = client.get("/api/executions")
        took = time.perf_counter() - started
        print(f"first page of {total:,} executions: {took * 1000:.0f} ms")
        assert first.status_code == 200
        body = first.json()
        assert [item["execution_id"] for item in body["items"]] == [
            web_support.bulk_id(k) for k in range(total - 1, total - 51, -1)
        ]
        assert body["newest"] is None
        second = client.get(body["next"]).json()
        assert second["items"][0]["execution_id"] == web_support.bulk_id(total - 51)
        assert len(second["items"]) == 50
        back = client.get(second["newest"]).json()
        assert back["items"] == body["items"]
        base = datetime(2026, 1, 1, tzinfo=UTC)
        cursor = ExecutionEntry(web_support.bulk_id(30), (base + timedelta(seconds=30)).isoformat())
        last = client.get("/api/executions", params={"cursor": cursor.cursor}).json()
        assert [item["execution_id"] for item in last["items"]] == [
            web_support.bulk_id(k) for k in range(29, -1, -1)
        ]
        assert last["next"] is None
        page = client.get("/")
        assert len(execution_ids(page.text, "executions")) == 50
        assert 'rel="next"' in page.text
        assert 'rel="first"' not in page.text
        failed = client.get("/api/executions", params={"status": "FAILED"}).json()
        assert [item["execution_id"] for item in failed["items"][:2]] == [
            web_support.bulk_id(total - 2),
            web_support.bulk_id(total - 4),
        ]
        assert len(failed["items"]) == 50
        nobody = client.get("/api/executions", params={"agent": "nobody"}).json()
        assert (nobody["items"], nobody["next"], nobody["stopped"]) == ([], None, False)
        assert nobody["scanned"] == 0  # the store's index answered: nothing was read
        matched = client.get("/api/executions", params={"q": "bulk-09999"}).json()
        assert len(matched["items"]) == 10
        assert matched["next"] is None
        none = client.get("/api/executions", params={"min_cost": "1000"}).json()
        assert none["items"] == []
        assert none["stopped"] is True  # the time bound: it says so, and goes on later
        assert none["next"] is not None
        assert 0 < none["scanned"] < total
        before = client.get("/api/executions", params={"cursor": "2000-01-01"}).json()
        assert (before["items"], before["next"]) == ([], None)  # nothing started before it


# -- reading: one execution ------------------------------------------------------------------


def test_an_execution_page_shows_its_steps_timeline_and_links(
    reader: TestClient, recorded: Recorded
) -> None:
    ok = recorded.ids["ok"]
    page = reader.get(f"/executions/{ok}").text
    assert '<span id="status" class="status status-success">SUCCESS</span>' in page
    steps = page.split('<ol id="steps">', 1)[1]
    for position in range(4):
        assert f'<li data-node-id="{ok}/{position}" data-status="SUCCESS"' in steps
    assert steps.count('<details class="json">') >= 8  # input and output of each step
    assert page.count("side effect</span>") == 2  # the two tools
    timeline = page.split('<div id="timeline">', 1)[1].split("</div>", 1)[0]
    assert timeline.count('class="bar ') == 4
    related = page.split('<div id="related">', 1)[1].split("</div>", 1)[0]
    assert f'href="/executions/{recorded.ids["replay"]}"' in related
    assert f'href="/executions/{recorded.ids["fork"]}"' in related
    assert "data-events-url" not in page  # finished: nothing to follow
    replay = reader.get(f"/executions/{recorded.ids['replay']}").text
    assert f'href="/executions/{ok}"' in replay.split('<div id="related">', 1)[1]
    assert "mocked" in replay

    api = reader.get(f"/api/executions/{ok}").json()
    assert api["status"] == "SUCCESS"
    assert api["run"]["agent"] == "book_trip"
    assert api["run"]["result"] == {"booking": "BK-LX-318"}
    assert [node["id"] for node in api["nodes"]] == [f"{ok}/{k}" for k in range(4)]
    assert api["nodes"][2]["model"] == "gpt-4o-mini-2024-07-18"
    assert api["related"]["replays"] == [recorded.ids["replay"]]
    assert api["related"]["forks"] == [recorded.ids["fork"]]


def test_failures_tracebacks_and_tools_in_doubt_are_shown(
    reader: TestClient, recorded: Recorded
) -> None:
    failed = reader.get(f"/executions/{recorded.ids['failed']}").text
    assert "<strong>ValueError</strong>: no airport serves &#39;atlantis&#39;" in failed
    assert "<summary>traceback</summary><pre>Traceback" in failed
    doubt = reader.get(f"/executions/{recorded.ids['in_doubt']}").text
    assert 'class="step kind-tool in-doubt"' in doubt
    assert "IN DOUBT" in doubt
    assert "Needs a human: tool &#39;book&#39; (key" in doubt
    assert "data-events-url" in doubt  # unfinished: the page follows it
    api = reader.get(f"/api/executions/{recorded.ids['in_doubt']}").json()
    assert [node["in_doubt"] for node in api["nodes"]] == [False, False, False, True]


def test_states_are_decoded_as_json_text_or_base64(reader: TestClient, recorded: Recorded) -> None:
    notes = recorded.ids["notes"]

    def state(node_id: str, execution_id: str = notes) -> Response:
        return reader.get(web_support_state_path(execution_id, node_id))

    cart = state("notes-1/cart").json()
    assert cart["kind"] == "json"
    assert cart["value"] == {"cart": ["LX-318"], "total": 420}
    text = state("notes-1/text").json()
    assert (text["kind"], text["value"]) == ("text", "plain notes, not JSON")
    blob = state("notes-1/blob").json()
    assert (blob["kind"], blob["bytes"], blob["truncated"]) == ("binary", 1024, False)
    assert blob["base64"].startswith("AAECAwQF")
    assert state("notes-1/plain").json()["kind"] == "none"
    assert state("notes-1/nope").status_code == 404
    assert state("notes-1/cart", recorded.ids["ok"]).status_code == 404  # another execution's
    page = reader.get(f"/executions/{notes}").text
    assert f'data-state-url="{web_support_state_path(notes, "notes-1/cart")}"' in page


def web_support_state_path(execution_id: str, node_id: str) -> str:
    return f"/api/executions/{execution_id}/nodes/{node_id.replace('/', '%2F')}/state"


def test_unknown_executions_are_404(reader: TestClient) -> None:
    for path in (
        "/api/executions/nope",
        "/api/executions/nope/events",
        "/api/executions/nope/nodes/nope%2F0/state",
        "/api/diff?a=nope&b=trip-ok",
    ):
        answer = reader.get(path)
        assert answer.status_code == 404, path
        assert "'nope'" in detail(answer), path
    page = reader.get("/executions/nope")
    assert page.status_code == 404
    assert "no execution &#39;nope&#39; is stored" in page.text
    assert reader.get("/diff", params={"a": "nope", "b": "trip-ok"}).status_code == 404


# -- reading: diff, costs, pending --------------------------------------------------------------


def test_a_diff_highlights_the_first_divergence(reader: TestClient, recorded: Recorded) -> None:
    api = reader.get("/api/diff", params={"a": recorded.ids["ok"], "b": recorded.ids["failed"]})
    assert api.status_code == 200
    assert api.json()["first_divergence"] == 0
    same = reader.get("/api/diff", params={"a": recorded.ids["ok"], "b": recorded.ids["ok"]})
    assert same.json()["identical"] is True
    page = reader.get("/diff", params={"a": recorded.ids["ok"], "b": recorded.ids["failed"]}).text
    shown = page.split('<div id="diff">', 1)[1]
    assert re.search(r'<tr id="step-0" data-position="0" class="changed divergence">', shown)
    assert shown.count("divergence") >= 1
    assert reader.get("/diff").status_code == 200  # the form alone
    assert reader.get("/api/diff", params={"a": "x"}).status_code == 422


def test_costs_by_day_model_and_agent(reader: TestClient) -> None:
    def rows(by: str) -> dict[str, dict[str, Any]]:
        answer = reader.get("/api/costs", params={"by": by})
        assert answer.status_code == 200
        return {row["key"]: row for row in answer.json()["rows"]}

    models = rows("model")
    assert set(models) == {"gpt-4o-mini-2024-07-18", web_support.SECOND_MODEL}
    assert models[web_support.SECOND_MODEL]["prompt_tokens"] == 40
    agents = rows("agent")
    assert set(agents) == {"book_trip", "hostile_agent"}
    assert agents["book_trip"]["calls"] == models["gpt-4o-mini-2024-07-18"]["calls"]
    days = rows("day")
    assert len(days) == 1
    assert sum(row["cost"] for row in days.values()) == pytest.approx(
        sum(row["cost"] for row in models.values())
    )
    assert reader.get("/api/costs", params={"since": "2999-01-01"}).json()["rows"] == []
    bad = reader.get("/api/costs", params={"by": "week"})
    assert bad.status_code == 422
    assert detail(bad).startswith("by: ")
    page = reader.get("/costs").text
    section = page.split('<section id="costs">', 1)[1]
    assert '<svg id="cost-chart"' in section
    assert section.split('<svg id="cost-chart"', 1)[1].count('<rect class="bar"') == 1
    for table in ("costs-by-day", "costs-by-model", "costs-by-agent"):
        assert f'<table id="{table}"' in section
    assert "hostile_agent" in section


def test_costs_by_agent_on_a_big_store_sum_the_unlooked_up_apart(
    reader: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Looking up every execution's agent is bounded in time: what is left is summed
    under one row that says so, and the total stays whole."""
    monkeypatch.setattr(data, "AGENT_SCAN_SECONDS", 0.0)
    answer = reader.get("/api/costs", params={"by": "agent"}).json()["rows"]
    assert [row["key"] for row in answer] == [data.NOT_SCANNED]
    models = reader.get("/api/costs", params={"by": "model"}).json()["rows"]
    assert answer[0]["calls"] == sum(row["calls"] for row in models)


def test_pending_runs_are_listed(reader: TestClient, recorded: Recorded) -> None:
    api = reader.get("/api/pending").json()["items"]
    found = {run["execution_id"]: run for run in api}
    assert set(found) == {recorded.ids["in_doubt"], recorded.ids["pending"], recorded.ids["fork"]}
    assert found[recorded.ids["in_doubt"]]["needs_human"]["step"] == "book"
    assert found[recorded.ids["pending"]]["registered"] is True
    page = reader.get("/pending").text
    assert set(execution_ids(page, "pending")) == set(found)
    assert "<form" not in page.split('<table id="pending">', 1)[1]  # read-only


def test_openapi_lists_the_api_and_docs_are_off(reader: TestClient) -> None:
    schema = reader.get("/openapi.json").json()
    assert set(schema["paths"]) == {
        "/api/executions",
        "/api/executions/{execution_id}",
        "/api/executions/{execution_id}/nodes/{node_id}/state",
        "/api/executions/{execution_id}/events",
        "/api/diff",
        "/api/costs",
        "/api/pending",
        "/api/executions/{execution_id}/replay",
        "/api/executions/{execution_id}/fork",
        "/api/executions/{execution_id}/resume",
    }
    for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        assert reader.get(path).status_code == 404


# -- what no page may do ---------------------------------------------------------------------


def every_page(client: TestClient, recorded: Recorded) -> dict[str, Response]:
    paths = [*PAGES, "/diff?a=hostile-1&b=trip-ok", "/executions/nope", "/?since=nonsense"]
    paths += [f"/executions/{execution_id}" for execution_id in recorded.ids.values()]
    return {path: client.get(path) for path in paths}


def test_every_response_has_the_security_headers(actor: TestClient, recorded: Recorded) -> None:
    answers = every_page(actor, recorded)
    for path in ("/api/executions", "/api/pending", "/api/executions/nope", "/openapi.json"):
        answers[path] = actor.get(path)
    answers["/static/app.js"] = actor.get("/static/app.js")
    answers["/static/app.css"] = actor.get("/static/app.css")
    answers["POST replay"] = actor.post("/api/executions/trip-ok/replay", json={})
    for path, answer in answers.items():
        assert answer.headers["content-security-policy"] == CSP, path
        assert answer.headers["x-content-type-options"] == "nosniff", path
        assert answer.headers["referrer-policy"] == "no-referrer", path
    assert answers["/static/app.js"].headers["content-type"].startswith("text/javascript")


def test_pages_have_no_inline_script_style_or_handlers(
    actor: TestClient, recorded: Recorded
) -> None:
    logged_in(actor)  # the action forms too
    for path, answer in every_page(actor, recorded).items():
        html = answer.text
        for tag in re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.S):
            assert tag == "", path
        assert re.findall(r"<script\b(?![^>]*\bsrc=)", html) == [], path
        assert re.search(r"\sstyle\s*=", html) is None, path
        assert re.search(r"<style", html) is None, path
        assert re.search(r"<[^>]+\son[a-z]+\s*=", html) is None, path
        assert "javascript:" not in html, path
    script = actor.get("/static/app.js").text
    assert "innerHTML" not in script
    assert "insertAdjacentHTML" not in script


def test_hostile_agent_text_is_escaped(reader: TestClient, recorded: Recorded) -> None:
    hostile = recorded.ids["hostile"]
    pages = every_page(reader, recorded)
    pages["diff"] = reader.get("/diff", params={"a": hostile, "b": recorded.ids["ok"]})
    for path, answer in pages.items():
        assert SCRIPT not in answer.text, path
        assert IMAGE not in answer.text, path
        assert "<img" not in answer.text, path
    page = pages[f"/executions/{hostile}"].text
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=\\&#34;window.__pwned=1\\&#34;&gt;" in page
    assert "&lt;script&gt;" in pages["diff"].text
    api = reader.get(f"/api/executions/{hostile}")
    assert api.headers["content-type"] == "application/json"
    assert api.json()["run"]["result"] == {"said": SCRIPT, "reply": IMAGE}  # data, as stored
    state = reader.get(web_support_state_path(hostile, f"{hostile}/memo")).json()
    assert state["value"] == {"html": IMAGE}


# -- actions -----------------------------------------------------------------------------------


def test_read_only_refuses_every_action(reader: TestClient, recorded: Recorded) -> None:
    ok = recorded.ids["ok"]
    for path, body in (
        (f"/api/executions/{ok}/replay", {"mode": "mock_tools"}),
        (f"/api/executions/{ok}/fork", {"step": "choose"}),
        (f"/api/executions/{recorded.ids['pending']}/resume", {}),
    ):
        for headers in ({}, bearer(), bearer("wrong")):
            answer = reader.post(path, json=body, headers=headers)
            assert answer.status_code == 403, (path, headers)
            assert "read-only" in detail(answer)
    for action in ("replay", "fork", "resume"):
        answer = reader.post(f"/executions/{ok}/{action}", data={"mode": "mock_tools"})
        assert answer.status_code == 403
        assert "read-only" in answer.text
    assert reader.post("/login", data={"token": "x"}).status_code == 403
    page = reader.get(f"/executions/{ok}").text
    assert 'id="replay"' not in page
    assert 'id="fork"' not in page
    assert 'name="csrf"' not in page
    assert len(reader.get("/api/executions").json()["items"]) == len(recorded.ids)  # none ran


def test_actions_need_the_token(actor: TestClient, recorded: Recorded) -> None:
    ok = recorded.ids["ok"]
    path = f"/api/executions/{ok}/replay"
    body = {"mode": "mock_tools"}
    missing = actor.post(path, json=body)
    assert missing.status_code == 401  # no token shown: say how to show one
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = actor.post(path, json=body, headers=bearer("not-the-token"))
    assert wrong.status_code == 401
    assert detail(wrong) == "the bearer token is wrong"
    assert actor.post(f"/executions/{ok}/replay", data=body).status_code == 401
    assert actor.post("/login", data={"token": "guess"}).status_code == 403
    assert len(actor.get("/api/executions").json()["items"]) == len(recorded.ids)  # none ran

    replayed = actor.post(path, json=body, headers=bearer())
    assert replayed.status_code == 200, replayed.text
    outcome = replayed.json()
    assert (outcome["outcome"], outcome["replay_of"], outcome["mode"]) == (
        "finished",
        ok,
        "MOCK_TOOLS",
    )
    shown = actor.get(f"/api/executions/{outcome['execution_id']}").json()
    assert shown["run"]["replay_of"] == ok


def test_forms_need_a_session_and_its_csrf_token(actor: TestClient, recorded: Recorded) -> None:
    ok = recorded.ids["ok"]
    assert csrf_of(actor.get(f"/executions/{ok}").text) == ""  # no session, no token
    csrf = logged_in(actor)
    assert len(csrf) >= 32
    form = {"mode": "mock_tools", "step": "0", "value": ""}
    missing = actor.post(f"/executions/{ok}/replay", data=form)
    assert missing.status_code == 403
    assert "CSRF" in missing.text
    wrong = actor.post(f"/executions/{ok}/replay", data={**form, "csrf": "0" * len(csrf)})
    assert wrong.status_code == 403
    old = csrf
    csrf = logged_in(actor)  # a new session: the old session's token is not this one's
    assert csrf != old
    assert actor.post(f"/executions/{ok}/replay", data={**form, "csrf": old}).status_code == 403
    done = actor.post(f"/executions/{ok}/replay", data={**form, "csrf": csrf})
    assert done.status_code == 303
    new_page = done.headers["location"]
    assert new_page.startswith("/executions/")
    assert new_page != f"/executions/{ok}"
    assert "SUCCESS" in actor.get(new_page).text
    api = f"/api/executions/{ok}/fork"
    assert actor.post(api, json={"step": "choose"}).status_code == 403  # no header
    assert (
        actor.post(api, json={"step": "choose"}, headers={"X-CSRF-Token": "x"}).status_code == 403
    )
    forked = actor.post(api, json={"step": "choose"}, headers={"X-CSRF-Token": csrf})
    assert forked.status_code == 200
    assert forked.json()["forked_from"] == ok
    out = actor.post("/logout", data={"csrf": csrf})
    assert out.status_code == 303
    assert (
        actor.post(api, json={"step": "choose"}, headers={"X-CSRF-Token": csrf}).status_code == 401
    )  # logged out: no session


def test_login_goes_back_only_to_this_app(actor: TestClient) -> None:
    for target, expected in (
        ("/pending", "/pending"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
    ):
        answer = actor.post("/login", data={"token": TOKEN, "next": target})
        assert answer.headers["location"] == expected


def test_a_generated_token_is_on_the_app(recorded: Recorded) -> None:
    app = create_app(recorded.url, allow_actions=True)
    token = app.state.token
    assert isinstance(token, str)
    assert len(token) >= 24
    assert create_app(recorded.url, allow_actions=True).state.token != token
    assert create_app(recorded.url).state.token is None
    with client_for(app) as client:
        answer = client.post(
            f"/api/executions/{recorded.ids['ok']}/fork",
            json={"step": 1},
            headers=bearer(token),
        )
        assert answer.status_code == 200


def test_replay_modes_and_their_validation(actor: TestClient, recorded: Recorded) -> None:
    ok = recorded.ids["ok"]
    path = f"/api/executions/{ok}/replay"

    def replay(**body: Any) -> Response:
        return actor.post(path, json=body, headers=bearer())

    for body, named in (
        ({"mode": "full"}, "mode"),
        ({"mode": "from_node"}, "step"),
        ({"mode": "counterfactual", "step": "search"}, "value"),
        ({"mode": "from_node", "step": " "}, "step"),
    ):
        answer = replay(**body)
        assert answer.status_code == 422, body
        assert detail(answer).startswith(f"{named}: "), (body, detail(answer))
    missing = replay(mode="from_node", step="nope")
    assert missing.status_code == 404  # no such step in the recording
    assert detail(missing).startswith("step: ")
    assert replay().status_code == 422  # no mode at all: FastAPI names the field
    cheap = [{"id": "BA-731", "price": 180}]
    what_if = replay(mode="counterfactual", step="search", value=cheap)
    assert what_if.status_code == 200, what_if.text
    assert what_if.json()["mode"] == "COUNTERFACTUAL"
    assert what_if.json()["outcome"] == "diverged"  # booking BA-731 was never recorded
    from_node = replay(mode="from_node", step=3).json()
    assert from_node["outcome"] == "finished"
    ignored = replay(mode="mock_tools", step=1, value=[])  # only counterfactual takes them
    assert ignored.json()["outcome"] == "finished"
    unregistered = create_app(recorded.url, allow_actions=True, token=TOKEN)
    with client_for(unregistered) as client:
        answer = client.post(path, json={"mode": "mock_tools"}, headers=bearer())
        assert answer.status_code == 409
        assert "not registered" in detail(answer)
        page = client.get(f"/executions/{ok}").text
        assert 'id="replay"' not in page
        assert "is not registered with this UI" in page

    csrf = logged_in(actor)
    bad = actor.post(
        f"/executions/{ok}/replay",
        data={"mode": "counterfactual", "step": "1", "value": "[{'id': 1}", "csrf": csrf},
    )
    assert bad.status_code == 422
    assert "value: not valid JSON" in bad.text
    assert 'id="action-error"' in bad.text
    page = actor.get(f"/executions/{ok}").text
    form = page.split('<form id="replay" method="post"', 1)[1].split("</form>", 1)[0]
    for option in ("mock_tools", "from_node", "counterfactual"):
        assert f'<option value="{option}">' in form
    assert '<select name="step">' in form
    assert '<textarea name="value"' in form
    assert '<form id="fork" method="post"' in page


def test_fork_and_resume(actor: TestClient, recorded: Recorded) -> None:
    ok, pending = recorded.ids["ok"], recorded.ids["pending"]
    forked = actor.post(
        f"/api/executions/{ok}/fork", json={"step": "choose", "run": True}, headers=bearer()
    ).json()
    assert forked["forked_from"] == ok
    assert forked["outcome"] == "finished"
    assert forked["result"] == {"booking": "BK-LX-318"}
    assert (
        actor.post(
            f"/api/executions/{ok}/fork", json={"step": "nope"}, headers=bearer()
        ).status_code
        == 404
    )

    resumed = actor.post(f"/api/executions/{pending}/resume", headers=bearer()).json()
    assert (resumed["outcome"], resumed["result"]) == ("finished", {"booking": "BK-LX-318"})
    again = actor.post(f"/api/executions/{pending}/resume", headers=bearer())
    assert again.status_code == 409
    assert "not pending" in detail(again)
    assert actor.post("/api/executions/nope/resume", headers=bearer()).status_code == 404
    doubt = actor.post(f"/api/executions/{recorded.ids['in_doubt']}/resume", headers=bearer())
    assert doubt.json()["outcome"] == "in_doubt"

    csrf = logged_in(actor)
    page = actor.get("/pending").text
    rows = page.split('<table id="pending">', 1)[1]
    assert f'action="/executions/{recorded.ids["fork"]}/resume"' in rows
    answer = actor.post(f"/executions/{recorded.ids['fork']}/resume", data={"csrf": csrf})
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/executions/{recorded.ids['fork']}"
    fork_form = actor.post(f"/executions/{ok}/fork", data={"step": "2", "csrf": csrf})
    assert fork_form.status_code == 303
    fork_page = actor.get(fork_form.headers["location"]).text
    assert f'Fork of <a href="/executions/{ok}">' in fork_page
    finished = actor.post(f"/executions/{ok}/resume", data={"csrf": csrf})
    assert finished.status_code == 409
    assert "not pending" in finished.text


def test_mounted_in_another_app_every_link_has_the_mount_path(recorded: Recorded) -> None:
    ui = create_app(recorded.url, agents=web_support.AGENTS, allow_actions=True, token=TOKEN)

    @contextlib.asynccontextmanager
    async def lifespan(parent: FastAPI) -> AsyncIterator[None]:
        async with ui.router.lifespan_context(ui):
            yield

    parent = FastAPI(lifespan=lifespan)
    parent.mount("/ui", ui)
    with client_for(parent) as client:
        page = client.get("/ui/").text
        assert 'href="/ui/static/app.css"' in page
        assert 'src="/ui/static/app.js"' in page
        assert f'href="/ui/executions/{recorded.ids["ok"]}"' in page
        assert client.get("/ui/static/app.css").status_code == 200
        login = client.post("/ui/login", data={"token": TOKEN, "next": "https://evil.example/"})
        assert login.headers["location"] == "/ui/"
        login = client.post("/ui/login", data={"token": TOKEN, "next": "/ui/pending"})
        assert login.headers["location"] == "/ui/pending"
        shown = client.get(f"/ui/executions/{recorded.ids['ok']}").text
        assert f'action="/ui/executions/{recorded.ids["ok"]}/replay"' in shown
        replayed = client.post(
            f"/ui/executions/{recorded.ids['ok']}/replay",
            data={"mode": "mock_tools", "csrf": csrf_of(shown)},
        )
        assert replayed.status_code == 303
        assert replayed.headers["location"].startswith("/ui/executions/")
        notes = client.get(f"/ui/executions/{recorded.ids['notes']}").text
        assert 'data-state-url="/ui/api/executions/notes-1/nodes/notes-1%2Fcart/state"' in notes
        pending = client.get(f"/ui/executions/{recorded.ids['pending']}").text
        assert 'data-events-url="/ui/api/executions/trip-pending/events?after=' in pending
        assert 'data-root="/ui"' in pending
        below = ExecutionEntry("any", "2999-01-01T00:00:00+00:00").cursor  # from the top
        listed = client.get("/ui/api/executions", params={"cursor": below}).json()
        assert listed["newest"] == "/ui/api/executions"


# -- live updates ----------------------------------------------------------------------------


async def save(url: str, *nodes: ExecutionNode) -> None:
    async with CheckpointEngine(open_store(url)) as engine:
        for node in nodes:
            await engine.save(node, durable=True)


def events(lines: Iterator[str]) -> Iterator[tuple[str, Any]]:
    """(event, data) of a server-sent event stream, as they come."""
    kind = ""
    for line in lines:
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: "):
            yield kind, json.loads(line.removeprefix("data: "))


def test_a_live_page_gets_each_new_step(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    header = ExecutionNode(
        id="live-1/run",
        execution_id="live-1",
        type=NodeType.MEMORY,
        status=Status.RUNNING,
        metadata={"run": True, "agent": "book_trip"},
    )
    step = ExecutionNode(
        id="live-1/0",
        execution_id="live-1",
        type=NodeType.TOOL,
        parent_id=header.id,
        status=Status.RUNNING,
        input={"args": [SCRIPT], "kwargs": {}},
        metadata={"step": "charge", "kind": "tool", "position": 0},
    )
    run_async(save(url, header))
    with client_for(create_app(url, live_seconds=20)) as client:
        page = client.get("/executions/live-1").text
        versions = client.get("/api/executions/live-1").json()["versions"]
        assert f'data-events-url="/api/executions/live-1/events?after={versions}"' in page
        with client.stream("GET", f"/api/executions/live-1/events?after={versions}") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            assert stream.headers["content-security-policy"] == CSP
            received = events(stream.iter_lines())
            assert next(received) == (
                "status",
                {"status": "RUNNING", "finished": False, "result": None, "error": None},
            )
            run_async(save(url, step))
            kind, node = next(received)
            assert (kind, node["id"], node["status"], node["name"]) == (
                "node",
                "live-1/0",
                "RUNNING",
                "charge",
            )
            assert node["input"] == {"args": [SCRIPT], "kwargs": {}}
            step.status, step.output = Status.SUCCESS, {"charged": True}
            header.status, header.output = Status.SUCCESS, {"done": True}
            run_async(save(url, step, header))
            rest = list(received)  # the stream ends once the execution is finished
    assert ("node", "live-1/0") in [(kind, value.get("id")) for kind, value in rest]
    assert rest[-2] == (
        "status",
        {"status": "SUCCESS", "finished": True, "result": {"done": True}, "error": None},
    )
    assert rest[-1] == ("end", {"status": "SUCCESS"})


# -- other stores, and passwords ---------------------------------------------------------------


@pytest.fixture(params=["redis", "postgres"])
def server_store(request: pytest.FixtureRequest) -> Iterator[str]:
    """A store URL on a server (PostgreSQL's with a password, which the test server,
    trusting local connections, ignores)."""
    if request.param == "redis":
        need_server("Redis", REDIS_URL, 6379)
        from tests.redis_support import delete_prefix

        prefix = unique_name("livingai-web")
        try:
            yield f"{REDIS_URL}?prefix={prefix}"
        finally:
            delete_prefix(REDIS_URL, prefix)
    else:
        need_server("PostgreSQL", POSTGRES_DSN, 5432)
        from tests.postgres_support import drop_schema

        schema = unique_name("livingai_web")
        user, _, host = POSTGRES_DSN.removeprefix("postgresql://").partition("@")
        with_password = f"postgresql://{user}:hunter2-secret@{host}?schema={schema}"
        try:
            yield with_password
        finally:
            drop_schema(POSTGRES_DSN, schema)


def test_the_api_reads_redis_and_postgres(server_store: str) -> None:
    ids = run_async(web_support.record(server_store))
    with client_for(create_app(server_store)) as client:
        listed = client.get("/api/executions").json()
        assert {item["execution_id"] for item in listed["items"]} == set(ids.values())
        ok = client.get(f"/api/executions/{ids['ok']}").json()
        assert ok["run"]["result"] == {"booking": "BK-LX-318"}
        assert ok["related"] == {
            "replays": [ids["replay"]],
            "forks": [ids["fork"]],
            "complete": True,
        }
        models = client.get("/api/costs", params={"by": "model"}).json()["rows"]
        assert {row["key"] for row in models} == {
            "gpt-4o-mini-2024-07-18",
            web_support.SECOND_MODEL,
        }
        assert (
            client.get("/api/diff", params={"a": ids["ok"], "b": ids["failed"]}).json()[
                "first_divergence"
            ]
            == 0
        )
        cart = client.get(web_support_state_path(ids["notes"], "notes-1/cart")).json()
        assert cart["value"] == {"cart": ["LX-318"], "total": 420}
        answers = [client.get(path) for path in [*PAGES, f"/executions/{ids['ok']}"]]
        answers.append(client.get("/api/pending"))
    if "hunter2-secret" in server_store:
        assert "postgresql://postgres:***@" in answers[0].text
        for answer in answers:
            assert "hunter2-secret" not in answer.text


def test_a_password_never_reaches_a_page_or_the_api(tmp_path: Path) -> None:
    """A store that cannot be reached: every error names it, password masked."""
    url = "postgresql://postgres:hunter2-secret@127.0.0.1:1/test?connect_timeout=1"
    app = create_app(url)
    with client_for(app) as client:
        assert (
            app.state.ui.masked_store
            == "postgresql://postgres:***@127.0.0.1:1/test?connect_timeout=1"
        )
        for path in ("/", "/api/executions", "/api/pending", "/costs", "/executions/x"):
            answer = client.get(path)
            assert answer.status_code >= 500, path
            assert "hunter2-secret" not in answer.text, path
            assert "postgres:***@127.0.0.1:1" in answer.text, path


# -- the command ------------------------------------------------------------------------------


def test_ui_refuses_a_public_address_without_a_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    served: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.append(options))
    db = tmp_path / "ui.db"
    run_async(web_support.record(f"sqlite:///{db}"))
    runner = CliRunner()
    for host in ("0.0.0.0", "192.168.1.20", "example.com", "::"):
        refused = runner.invoke(cli, ["ui", "--store", f"sqlite:///{db}", "--host", host])
        assert refused.exit_code == 2
        (line,) = refused.stderr.splitlines()
        assert line.startswith(f"livingai: error: refusing to listen on {host} (not loopback)")
    assert served == []

    given = runner.invoke(
        cli, ["ui", "--store", f"sqlite:///{db}", "--host", "0.0.0.0", "--token", TOKEN]
    )
    assert given.exit_code == 0, given.output
    assert served[-1] == {
        "host": "0.0.0.0",
        "port": 8765,
        "log_level": "warning",
        "timeout_graceful_shutdown": 3,
    }
    assert TOKEN not in given.output
    generated = runner.invoke(
        cli,
        [
            "--store",
            f"sqlite:///{db}",
            "ui",
            "--allow-actions",
            "--port",
            "9000",
            "--agent",
            "tests.cli_agent:book_trip",
        ],
    )
    assert generated.exit_code == 0, generated.output
    lines = generated.stdout.splitlines()
    assert lines[0] == f"livingai ui: sqlite:///{db} at http://127.0.0.1:9000/"
    assert lines[1].startswith("token (for /login and Authorization: Bearer): ")
    assert len(lines[1].rpartition(" ")[2]) >= 24
    missing = runner.invoke(cli, ["ui", "--store", f"sqlite:///{tmp_path / 'none.db'}"])
    assert missing.exit_code == 1
    assert "no SQLite database" in missing.stderr
    masked = runner.invoke(
        cli, ["ui", "--store", "postgresql://app:hunter2-secret@db/x", "--host", "::1"]
    )
    assert "hunter2-secret" not in masked.output


def test_ui_without_the_extra_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fastapi", None)  # import fastapi raises ImportError
    answer = CliRunner().invoke(cli, ["ui", "--store", "sqlite:///x.db"])
    assert answer.exit_code == 1
    assert answer.stderr.splitlines() == [
        "livingai: error: 'fastapi' is not installed; run: pip install \"livingai[ui]\""
    ]
