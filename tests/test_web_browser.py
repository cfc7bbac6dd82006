"""The web UI in a real browser: headless Debian chromium driven by Playwright, against
the app served by uvicorn on a loopback port over a recorded SQLite store.

What a unit test of the routes cannot see is checked here: the filter form, the JSON a
step unfolds to, a running execution's page growing by server-sent events without a
reload, logging in and replaying from the browser, recorded hostile output staying text,
and that the strict CSP blocks nothing of the app's own. Each page is also saved as a
screenshot in docs/screenshots/ (overwritten every run), the ones the README shows.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import pytest

from livingai import CheckpointEngine, Run, Runtime, open_store
from tests.browser_support import ServedApp, Watched, launched_browser, watched_page
from tests.cli_agent import MODEL
from tests.services import ROOT, skip_or_fail
from tests.web_support import IMAGE, SCRIPT, SECOND_MODEL

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

SCREENSHOTS = ROOT / "docs" / "screenshots"
TOKEN = "browser-test-token"
WAIT_MS = 15_000  # every wait on the page is bounded by this


@dataclass
class Site:
    """The served UI and the ids of what tests/web_support.py recorded in its store."""

    url: str
    store_url: str
    ids: dict[str, str]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched_browser() as browser:
        from playwright.sync_api import expect

        expect.set_options(timeout=WAIT_MS)  # CI machines are slower than the default 5 s
        yield browser


@pytest.fixture(scope="module")
def site(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The app on a store recorded by tests/web_support.py, actions allowed, known token."""
    try:
        from livingai.web import create_app
    except ImportError as exc:
        skip_or_fail(f'the web UI needs the "ui" extra ({exc}); run: pip install "livingai[ui]"')
    from tests.web_support import AGENTS, recorded_store

    recorded = recorded_store(tmp_path_factory.mktemp("web-ui"))
    app = create_app(recorded.url, agents=AGENTS, allow_actions=True, token=TOKEN)
    assert app.state.token == TOKEN
    with ServedApp(app) as served:
        yield Site(served.url, recorded.url, recorded.ids)


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    with watched_page(browser) as watched:
        yield watched


def shoot(page: Page, name: str) -> None:
    """Save what the browser shows as docs/screenshots/<name>.png (the viewport only)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    png = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(png), animations="disabled")
    assert png.stat().st_size < 400_000, f"{png} is too big for the README to embed"


def assert_clean(watched: Watched) -> None:
    """No console error, uncaught exception or CSP violation on any page visited."""
    assert watched.problems == [], "\n".join(watched.problems)


def login(page: Page, base: str) -> None:
    """Log in with the token through the login form: the session cookie is the page's."""
    page.goto(f"{base}/login")
    page.fill("#login input[name=token]", TOKEN)
    page.locator("#login").evaluate("form => form.requestSubmit()")
    page.wait_for_url(lambda url: "/login" not in url)


def test_the_list_filters_by_status(site: Site, watched: Watched) -> None:
    """The filter form narrows the list to the failed runs, through the query string."""
    from playwright.sync_api import expect

    page = watched.page
    page.goto(site.url + "/")
    rows = page.locator("#executions tr[data-execution-id]")
    expect(rows.first).to_be_visible()
    everything = rows.count()
    shoot(page, "list")

    page.locator("#filters select[name=status]").select_option("FAILED")
    page.locator("#filters").evaluate("form => form.requestSubmit()")
    page.wait_for_url(lambda url: "status=FAILED" in url)
    expect(rows.first).to_be_visible()
    failed = rows.count()
    assert 0 < failed < everything
    for row in rows.all():
        expect(row).to_contain_text("FAILED")
    expect(rows.filter(has_text=site.ids["failed"])).to_have_count(1)
    expect(rows.filter(has_text=site.ids["ok"])).to_have_count(0)
    assert_clean(watched)


def test_a_step_unfolds_to_its_json(site: Site, watched: Watched) -> None:
    """A step's JSON is folded away until its summary is clicked."""
    from playwright.sync_api import expect

    page = watched.page
    page.goto(f"{site.url}/executions/{site.ids['ok']}")
    expect(page.locator("#status")).to_have_text("SUCCESS")
    steps = page.locator("#steps li[data-node-id]")
    expect(steps.first).to_be_visible()
    details = steps.first.locator("details.json").first
    body = details.locator("pre, code").first
    expect(body).to_be_hidden()
    details.locator("summary").click()
    expect(details).to_have_attribute("open", "")
    expect(body).to_be_visible()
    expect(body).to_contain_text('"zurich"')  # the first step's input, as JSON
    expect(page.locator("#timeline .bar")).to_have_count(steps.count())
    shoot(page, "execution")
    assert_clean(watched)


def test_recorded_hostile_output_is_shown_as_text(site: Site, watched: Watched) -> None:
    """Outputs and a checkpoint that are HTML and script show up as the text they are:
    nothing of them runs, and no element is made of them."""
    from playwright.sync_api import expect

    page = watched.page
    page.goto(f"{site.url}/executions/{site.ids['hostile']}")
    steps = page.locator("#steps")
    expect(steps.locator("li[data-node-id]").first).to_be_visible()
    for details in page.locator("details.json").all():
        details.locator("summary").click()  # the state is fetched by app.js when opened
    expect(steps.get_by_text(SCRIPT).first).to_be_visible()
    expect(steps.get_by_text(json.dumps(IMAGE)).first).to_be_visible()  # a JSON string
    state = steps.locator("details[data-state-url] pre")
    expect(state).to_contain_text('"html"')  # loaded, and set as text by the script
    expect(state).to_contain_text("onerror=")
    assert page.evaluate("window.__pwned") is None
    assert steps.locator("img, script").count() == 0
    assert_clean(watched)


class LiveRun:
    """A run of a three-step agent in a thread (and loop) of its own, on the store the UI
    reads: it starts, then saves one step each time the test calls `advance()`, so the
    test knows what the page should show next without guessing at timing."""

    STEPS = 3

    def __init__(self, store_url: str, execution_id: str) -> None:
        self.store_url = store_url
        self.execution_id = execution_id
        self.started = threading.Event()
        self.gates = [threading.Event() for _ in range(self.STEPS)]
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, name="live-run", daemon=True)

    def __enter__(self) -> LiveRun:
        self.thread.start()
        assert self.started.wait(WAIT_MS / 1000), "the live run did not start"
        return self

    def advance(self, step: int) -> None:
        self.gates[step].set()

    def __exit__(self, *exc: object) -> None:
        for gate in self.gates:  # let it end even if the test failed half-way
            gate.set()
        self.thread.join(WAIT_MS / 1000)
        assert not self.thread.is_alive(), "the live run did not end"
        if self.error is not None:
            raise self.error

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:
            self.error = exc
            self.started.set()

    async def _run(self) -> None:
        engine = CheckpointEngine(open_store(self.store_url))
        async with Runtime(engine, worker_id="live-test") as runtime:

            async def live_agent(run: Run, topic: str) -> str:
                await engine.flush()  # the run's header is in the store: the page can open
                self.started.set()
                for step, gate in enumerate(self.gates):
                    opened = await asyncio.to_thread(gate.wait, WAIT_MS / 1000)
                    assert opened, f"the test never released step {step}"
                    await run.step(f"think-{step}", str.upper, f"{topic} {step}")
                    await engine.flush()
                return topic

            await runtime.run(live_agent, "live", execution_id=self.execution_id)


def test_a_running_execution_updates_live(site: Site, watched: Watched) -> None:
    """Each step the run saves while its page is open appears on the page, and the
    status turns SUCCESS at the end, by server-sent events: the page never reloads."""
    from playwright.sync_api import expect

    page = watched.page
    with LiveRun(site.store_url, "live-run-1") as live:
        page.goto(f"{site.url}/executions/live-run-1")
        expect(page.locator("#status")).to_have_text("RUNNING")
        page.evaluate("window.__notReloaded = true")
        steps = page.locator("#steps li[data-node-id]")
        for step in range(LiveRun.STEPS):
            fresh = steps.filter(has_text=f"think-{step}")
            expect(fresh).to_have_count(0)
            live.advance(step)
            expect(fresh).to_have_count(1, timeout=WAIT_MS)
            expect(fresh).to_have_attribute("data-status", "SUCCESS", timeout=WAIT_MS)
            expect(fresh.locator("details.json").first).to_contain_text(f"live {step}")
    expect(page.locator("#status")).to_have_text("SUCCESS", timeout=WAIT_MS)
    expect(page.locator("#result pre")).to_contain_text('"live"')
    assert page.evaluate("window.__notReloaded") is True  # updated in place, never reloaded
    assert_clean(watched)


def test_actions_need_a_login(site: Site, watched: Watched) -> None:
    """Before logging in, the page says to, and a replay posted anyway is refused."""
    from playwright.sync_api import expect

    page = watched.page
    original = site.ids["ok"]
    page.goto(f"{site.url}/executions/{original}")
    expect(page.locator("#actions a[href^='/login']")).to_be_visible()
    refused = page.request.post(
        f"{site.url}/executions/{original}/replay", form={"mode": "mock_tools", "csrf": ""}
    )
    assert refused.status == 401  # no session: shown no token
    assert "not logged in" in refused.text()
    assert_clean(watched)


def test_a_mock_tools_replay_from_the_browser_finishes(site: Site, watched: Watched) -> None:
    """Logged in, the replay form runs a MOCK_TOOLS replay and lands on its page (303),
    finished, linked to the original, its tools answered from the recording."""
    from playwright.sync_api import expect

    page = watched.page
    login(page, site.url)
    original = site.ids["ok"]
    page.goto(f"{site.url}/executions/{original}")
    form = page.locator("form#replay")
    expect(form).to_be_visible()
    form.locator("select[name=mode]").select_option("mock_tools")
    form.evaluate("form => form.requestSubmit()")
    page.wait_for_url(
        lambda url: "/executions/" in url and not url.rstrip("/").endswith(original),
        timeout=WAIT_MS,
    )
    expect(page.locator("#status")).to_have_text("SUCCESS", timeout=WAIT_MS)
    expect(page.locator("#related")).to_contain_text(original)
    expect(page.locator("#steps .flag", has_text="mocked")).to_have_count(2)  # both tools
    shoot(page, "replay")
    assert_clean(watched)


def test_the_diff_marks_the_first_divergence(site: Site, watched: Watched) -> None:
    """A run against its fork: the steps the fork copied are the same, the next differs."""
    from playwright.sync_api import expect

    page = watched.page
    a, b = site.ids["ok"], site.ids["fork"]
    page.goto(f"{site.url}/diff?{urlencode({'a': a, 'b': b})}")
    expect(page.locator("#diff")).to_be_visible()
    divergence = page.locator("#diff .divergence")
    expect(divergence).to_have_count(1)
    expect(divergence).to_be_visible()
    expect(divergence).to_contain_text("choose")  # the fork was made before "choose"
    shoot(page, "diff")
    assert_clean(watched)


def test_the_costs_page_charts_both_models(site: Site, watched: Watched) -> None:
    """The model steps of the two models recorded are added up and charted."""
    from playwright.sync_api import expect

    page = watched.page
    page.goto(f"{site.url}/costs")
    expect(page.locator("svg#cost-chart .bar").first).to_be_visible()
    for model in (MODEL, SECOND_MODEL):
        expect(page.locator("section#costs")).to_contain_text(model)
    shoot(page, "costs")
    assert_clean(watched)


def test_a_pending_run_is_resumed_from_its_list(site: Site, watched: Watched) -> None:
    """The run that died inside its model call is listed, and resuming it from the
    browser finishes it."""
    from playwright.sync_api import expect

    page = watched.page
    login(page, site.url)
    page.goto(f"{site.url}/pending")
    pending = page.locator(f"#pending tr[data-execution-id='{site.ids['pending']}']")
    expect(pending).to_be_visible()
    expect(
        page.locator(f"#pending tr[data-execution-id='{site.ids['in_doubt']}']")
    ).to_contain_text("in doubt")
    shoot(page, "pending")
    pending.locator("form.resume").evaluate("form => form.requestSubmit()")
    page.wait_for_url(f"**/executions/{site.ids['pending']}", timeout=WAIT_MS)
    expect(page.locator("#status")).to_have_text("SUCCESS", timeout=WAIT_MS)
    assert_clean(watched)
