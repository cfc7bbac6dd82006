"""The `livingai` command line, end to end, on SQLite, Redis and PostgreSQL.

Each store gets executions recorded by real runs of a real agent (tests/cli_agent.py, in
a process of its own: a finished trip, a failed one, one that died inside a booking,
one that died inside the model call, and nodes saved by hand with states). Most
commands run in this process through click's CliRunner, with --json parsed; every store
also gets real `python -m livingai` processes, for a whole replay and an error, and the
error paths (a bad URL, a missing extra, a password) run as real processes too.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import livingai
from livingai.cli import cli
from tests import cli_agent
from tests.services import POSTGRES_DSN, REDIS_URL, need_server, unique_name

ROOT = Path(__file__).resolve().parent.parent
AGENT = "tests.cli_agent:book_trip"
KINDS = ["sqlite", "redis", "postgres"]
IDS = cli_agent.RECORDED
OK, FAILED, CRASH_BOOK, CRASH_CHOOSE, NOTES = (
    IDS["ok"],
    IDS["failed"],
    IDS["crash_book"],
    IDS["crash_choose"],
    IDS["notes"],
)
CHEAPEST_FIRST = [cli_agent.FLIGHTS[1], cli_agent.FLIGHTS[0], cli_agent.FLIGHTS[2]]
RUNNER = CliRunner()


@dataclass(frozen=True)
class Store:
    """A store URL, and the log of the agent's calls to its fake services."""

    url: str
    log: Path

    def calls(self) -> Counter[str]:
        return cli_agent.calls(self.log)


def with_option(url: str, name: str, value: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{name}={value}"


@contextlib.contextmanager
def fresh_store(kind: str, directory: Path) -> Iterator[Store]:
    """An empty store of `kind` (its own file, key prefix or schema), removed after."""
    log = directory / "calls.log"
    if kind == "sqlite":
        yield Store(f"sqlite:///{directory / 'cli.db'}", log)
    elif kind == "redis":
        need_server("Redis", REDIS_URL, 6379)
        from tests.redis_support import delete_prefix

        prefix = unique_name("livingai-cli")
        try:
            yield Store(with_option(REDIS_URL, "prefix", prefix), log)
        finally:
            delete_prefix(REDIS_URL, prefix)
    else:
        need_server("PostgreSQL", POSTGRES_DSN, 5432)
        from tests.postgres_support import drop_schema

        schema = unique_name("livingai_cli")
        try:
            yield Store(with_option(POSTGRES_DSN, "schema", schema), log)
        finally:
            drop_schema(POSTGRES_DSN, schema)


def record(store: Store) -> None:
    """Real runs of the agent, in a process of their own (see tests/cli_agent.py)."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.cli_agent", store.url],
        cwd=ROOT,
        env={**os.environ, cli_agent.LOG: str(store.log)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == IDS
    assert store.calls() == {"search": 3, "choose": 3, "book": 2}


@pytest.fixture(scope="module", params=KINDS)
def recorded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Store]:
    with fresh_store(str(request.param), tmp_path_factory.mktemp(str(request.param))) as store:
        record(store)
        yield store


# -- running the command --------------------------------------------------------------------


def run(store: Store, *args: str, env: dict[str, str] | None = None) -> Result:
    """`livingai --store <url> args...` in this process."""
    return RUNNER.invoke(
        cli, ["--store", store.url, *args], env={cli_agent.LOG: str(store.log), **(env or {})}
    )


def other_lines(stderr: str) -> list[str]:
    """stderr without livingai's warnings (a Redis without persistence says so)."""
    return [line for line in stderr.splitlines() if not line.startswith("livingai: warning: ")]


def ok(store: Store, *args: str) -> Result:
    result = run(store, *args)
    assert result.exit_code == 0, result.output
    assert other_lines(result.stderr) == [], result.stderr
    return result


def ok_json(store: Store, *args: str) -> Any:
    return json.loads(ok(store, *args, "--json").stdout)


def one_error(result: Result, code: int) -> str:
    """The one line an error prints on stderr (warnings aside), and no traceback."""
    assert result.exit_code == code, result.output
    lines = other_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("livingai: error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def export_of(store: Store, execution_id: str) -> list[dict[str, Any]]:
    lines = ok(store, "export", execution_id).stdout.splitlines()
    return [json.loads(line) for line in lines]


def python(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """A real process, from the repository root (so that `tests.cli_agent` imports)."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def listed(store: Store, *args: str) -> list[dict[str, Any]]:
    """The executions `livingai list --json` prints (one page)."""
    page = ok_json(store, "list", *args)
    assert set(page) == {"executions", "cursor"}
    rows: list[dict[str, Any]] = page["executions"]
    return rows


def by_id(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["execution_id"]: row for row in rows}


# -- every command, on every store ------------------------------------------------------------


def test_list_shows_every_execution_and_filters(recorded: Store) -> None:
    everything = by_id(listed(recorded))
    assert set(IDS.values()) <= set(everything)
    assert everything[OK]["status"] == "SUCCESS"
    assert everything[OK]["steps"] == 4
    assert everything[OK]["cost"] > 0
    assert everything[OK]["agent"] == "book_trip"
    assert everything[CRASH_BOOK]["in_doubt"] == 1
    assert everything[NOTES]["agent"] == ""

    failed = listed(recorded, "--status", "failed")
    assert FAILED in by_id(failed)
    assert {row["status"] for row in failed} == {"FAILED"}
    runs = by_id(listed(recorded, "--agent", "book_trip"))
    assert OK in runs
    assert NOTES not in runs
    costly = by_id(listed(recorded, "--min-cost", "0.000001"))
    assert OK in costly
    assert FAILED not in costly
    assert listed(recorded, "--since", "2999-01-01") == []
    assert OK in by_id(listed(recorded, "--since", "1h", "--until", "2999-01-01T00:00Z"))

    table = ok(recorded, "list").stdout
    assert OK in table
    assert "1 in doubt" in table
    assert "FAILED" in table
    assert "more:" not in table  # one page holds them all


def test_list_goes_page_by_page_newest_first(recorded: Store) -> None:
    everything = listed(recorded)
    newest_first = [row["started_at"] for row in everything]
    assert newest_first == sorted(newest_first, reverse=True)
    first = ok_json(recorded, "list", "--limit", "2")
    assert [row["execution_id"] for row in first["executions"]] == [
        row["execution_id"] for row in everything[:2]
    ]
    rest = listed(recorded, "--cursor", first["cursor"], "--limit", str(len(everything)))
    assert [row["execution_id"] for row in first["executions"] + rest] == [
        row["execution_id"] for row in everything
    ]
    table = ok(recorded, "list", "--limit", "1").stdout
    assert (
        f"more: livingai list --cursor {ok_json(recorded, 'list', '--limit', '1')['cursor']}"
        in table
    )
    assert listed(recorded, "--cursor", "2000-01-01") == []  # a position: nothing before it
    assert one_error(RUNNER.invoke(cli, ["--store", recorded.url, "list", "--limit", "0"]), 2)


def test_show_draws_the_step_tree(recorded: Store) -> None:
    shown = ok_json(recorded, "show", OK)
    assert shown["run"]["status"] == "SUCCESS"
    assert shown["run"]["agent"] == "book_trip"
    assert shown["run"]["result"] == {"booking": "BK-LX-318"}
    names = [(n["depth"], n["metadata"].get("step")) for n in shown["nodes"]]
    assert names == [(0, None), (1, "plan"), (1, "search"), (1, "choose"), (1, "book")]
    choose = shown["nodes"][3]
    assert choose["model"] == cli_agent.MODEL
    assert choose["prompt_tokens"] > 0
    assert choose["cost"] > 0
    assert choose["latency_ms"] is not None
    assert shown["totals"]["cost"] == pytest.approx(choose["cost"])
    assert "checkpoint" not in choose  # the blob stays out of `show`; `export` has it

    crashed = ok_json(recorded, "show", CRASH_BOOK)
    book = crashed["nodes"][-1]
    assert book["type"] == "TOOL"
    assert book["status"] == "RUNNING"
    assert book["in_doubt"]
    assert crashed["totals"]["in_doubt"] == 1
    assert crashed["run"]["status"] == "RUNNING"

    tree = ok(recorded, "show", CRASH_BOOK).stdout
    assert "IN DOUBT" in tree
    assert "side effect" in tree
    assert cli_agent.MODEL in tree
    failed = ok(recorded, "show", FAILED).stdout
    assert "error: ValueError: no airport serves 'atlantis'" in failed


def test_show_state_decodes_checkpoints(recorded: Store) -> None:
    shown = ok_json(recorded, "show", NOTES, "--state")
    nodes = {node["id"]: node for node in shown["nodes"]}
    assert shown["run"] is None
    assert [(n["id"], n["depth"]) for n in shown["nodes"]] == [
        ("notes-1/cart", 0),
        ("notes-1/blob", 1),
        ("notes-1/plain", 2),
        ("notes-1/text", 0),
    ]
    assert nodes["notes-1/cart"]["state"] == {
        "bytes": 34,
        "kind": "json",
        "value": {"cart": ["LX-318"], "total": 420},
    }
    blob = nodes["notes-1/blob"]["state"]
    assert blob["kind"] == "binary"
    assert blob["bytes"] == 1024
    assert blob["hex"] == bytes(range(32)).hex()
    # saved again without a state: its newest state is still the one it was saved with
    assert nodes["notes-1/text"]["status"] == "SUCCESS"
    assert nodes["notes-1/text"]["state"]["value"] == "plain notes, not JSON"
    assert nodes["notes-1/plain"]["state"] is None

    tree = ok(recorded, "show", NOTES, "--state").stdout
    assert "1,024 bytes, binary: 000102" in tree
    assert '"total": 420' in tree
    assert "state" not in ok(recorded, "show", NOTES).stdout


def test_replay_in_every_mode(recorded: Store) -> None:
    before = export_of(recorded, OK)
    calls = recorded.calls()

    def replay(*args: str) -> dict[str, Any]:
        nonlocal calls
        outcome: dict[str, Any] = ok_json(recorded, "replay", OK, "--agent", AGENT, *args)
        assert outcome["replay_of"] == OK
        assert outcome["execution_id"] != OK
        new, calls = recorded.calls() - calls, recorded.calls()
        outcome["called"] = dict(new)
        return outcome

    full = replay("--mode", "full")
    assert full["mode"] == "FULL"
    assert full["outcome"] == "finished"
    assert full["result"] == {"booking": "BK-LX-318"}
    assert full["called"] == {"search": 1, "choose": 1, "book": 1}  # tools too, for real

    mocked = replay("--mode", "mock_tools")
    assert mocked["outcome"] == "finished"
    assert mocked["called"] == {"choose": 1}
    steps = ok_json(recorded, "show", mocked["execution_id"])["nodes"][1:]
    assert [bool(n["metadata"].get("mocked")) for n in steps] == [False, True, False, True]

    offline = replay("--mode", "MOCK_TOOLS", "--mock-llm")
    assert offline["outcome"] == "finished"
    assert offline["called"] == {}

    from_node = replay("--mode", "from_node", "--from-step", "choose")
    assert from_node["called"] == {"choose": 1, "book": 1}
    assert replay("--mode", "from_node", "--from-step", "2")["called"] == {"choose": 1, "book": 1}

    what_if = replay(
        "--mode",
        "counterfactual",
        "--counterfactual",
        f"search={json.dumps(CHEAPEST_FIRST)}",
        "--real-tools",
    )
    assert what_if["outcome"] == "finished"
    assert what_if["result"] == {"booking": "BK-BA-731"}
    assert what_if["called"] == {"choose": 1, "book": 1}
    assert "book BA-731" in recorded.log.read_text().splitlines()

    # Without --real-tools the booking the recording lacks is refused, never made.
    refused = run(
        recorded,
        "replay",
        OK,
        "--agent",
        AGENT,
        "--mode",
        "counterfactual",
        "--counterfactual",
        f"search={json.dumps(CHEAPEST_FIRST)}",
        "--json",
    )
    line = one_error(refused, 1)
    diverged = json.loads(refused.stdout)
    assert diverged["outcome"] == "diverged"
    assert "the real tool was not called" in diverged["error"]
    assert f"replay {diverged['execution_id']} of {OK} diverged" in line
    assert recorded.calls() - calls == Counter({"choose": 1})
    failed_replay = by_id(listed(recorded, "--status", "FAILED"))
    assert failed_replay[diverged["execution_id"]]["replay_of"] == OK

    text = ok(recorded, "replay", OK, "--agent", AGENT, "--mode", "mock_tools").stdout
    assert "finished" in text
    assert "MOCK_TOOLS" in text
    assert "BK-LX-318" in text
    assert export_of(recorded, OK) == before  # the original is never changed


def test_fork_and_diff(recorded: Store) -> None:
    before = export_of(recorded, OK)
    forked = ok_json(recorded, "fork", OK, "choose")
    fork_id = forked["execution_id"]
    assert forked == {"execution_id": fork_id, "forked_from": OK, "step": "choose"}
    copied = ok_json(recorded, "show", fork_id)
    assert [n["metadata"].get("step") for n in copied["nodes"][1:]] == ["plan", "search"]
    assert copied["run"]["forked_from"] == OK
    assert copied["run"]["status"] == "RUNNING"

    compared = ok_json(recorded, "diff", OK, fork_id)
    assert compared["a"] == OK
    assert compared["b"] == fork_id
    assert compared["first_divergence"] == 2
    assert [step["changed"] for step in compared["steps"]] == [False, False, True, True]
    text = ok(recorded, "diff", OK, fork_id).stdout
    assert "first divergence at step 2" in text
    assert ok_json(recorded, "diff", OK, OK)["first_divergence"] is None

    by_position = ok(recorded, "fork", OK, "1").stdout.strip()  # just the id, for scripts
    assert len(by_position) == 32
    assert by_position != fork_id
    assert len(ok_json(recorded, "show", by_position)["nodes"]) == 2  # the run and plan
    assert export_of(recorded, OK) == before


def test_costs_add_up_model_calls(recorded: Store) -> None:
    (total,) = ok_json(recorded, "costs", "--by", "total")
    assert total["key"] == "total"
    assert total["calls"] >= 2
    assert total["cost"] > 0
    models = {row["key"]: row for row in ok_json(recorded, "costs", "--by", "model")}
    assert cli_agent.MODEL in models
    (one,) = ok_json(recorded, "costs", "--execution", OK)
    assert one["key"] == OK
    assert one["calls"] == 1
    assert one["prompt_tokens"] > 0
    assert one["completion_tokens"] == 12
    two = ok_json(recorded, "costs", "--execution", OK, "--execution", CRASH_BOOK)
    assert [row["key"] for row in two] == sorted([OK, CRASH_BOOK])
    today = datetime.now(UTC).date().isoformat()
    assert [row["key"] for row in ok_json(recorded, "costs", "--by", "day", "--since", "1d")] == [
        today
    ]
    assert ok_json(recorded, "costs", "--since", "2999-01-01") == []
    table = ok(recorded, "costs", "--execution", OK, "--execution", CRASH_BOOK).stdout
    assert "total" in table
    assert OK in table


def test_export_streams_every_version(recorded: Store, tmp_path: Path) -> None:
    result = ok(recorded, "-q", "export")
    assert result.stderr == ""  # no progress when stderr is not a terminal
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert set(IDS.values()) <= {line["execution_id"] for line in lines}
    ok_lines = [line for line in lines if line["execution_id"] == OK]
    assert ok_lines == export_of(recorded, OK)
    # every version: the run's record twice (started, finished), each tool's intent too
    assert len(ok_lines) == 2 + 1 + 2 + 1 + 2
    notes = [line for line in lines if line["execution_id"] == NOTES]
    assert sum(1 for line in notes if line["checkpoint"]) == 3
    assert all({"id", "type", "status", "created_at", "metadata"} <= set(line) for line in lines)

    target = tmp_path / "export.jsonl"
    summary = ok_json(recorded, "export", OK, NOTES, "--output", str(target))
    written = [json.loads(line) for line in target.read_text().splitlines()]
    assert summary == {"executions": 2, "versions": len(written), "output": str(target)}
    assert {line["execution_id"] for line in written} == {OK, NOTES}
    assert not list(tmp_path.glob("*.partial"))

    shown = run(recorded, "export", OK, env={"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1"})
    assert shown.exit_code == 0
    assert "exporting" in shown.stderr


def test_pending_and_recover(recorded: Store) -> None:
    pending = by_id(ok_json(recorded, "pending"))
    assert {CRASH_BOOK, CRASH_CHOOSE} <= set(pending)
    assert pending[CRASH_CHOOSE]["agent"] == "book_trip"
    assert pending[CRASH_CHOOSE]["args"] == ["paris"]
    assert OK not in pending
    assert FAILED not in pending
    assert CRASH_BOOK in ok(recorded, "pending").stdout
    calls, logged = recorded.calls(), len(recorded.log.read_text().splitlines())

    recovered = by_id(ok_json(recorded, "recover", "--agent", AGENT))
    assert recovered[CRASH_CHOOSE]["outcome"] == "finished"
    assert recovered[CRASH_CHOOSE]["result"] == {"booking": "BK-LX-318"}
    assert recovered[CRASH_BOOK]["outcome"] == "in_doubt"
    assert "InDoubtError" in recovered[CRASH_BOOK]["error"]
    new = recorded.calls() - calls
    forks = sum(1 for row in recovered.values() if row["execution_id"] not in IDS.values())
    # the resumed run chose and booked (as did the forks other tests left pending); the
    # booking in doubt was not made again, and nothing recorded ran twice
    assert new["book"] == 1 + forks
    assert new["choose"] == 1 + forks
    assert "search PARIS" not in recorded.log.read_text().splitlines()[logged:]

    after = by_id(ok_json(recorded, "pending"))
    assert CRASH_CHOOSE not in after
    assert after[CRASH_BOOK]["needs_human"]["step"] == "book"
    assert ok_json(recorded, "show", CRASH_CHOOSE)["run"]["status"] == "SUCCESS"
    text = ok(recorded, "recover", "--agent", AGENT).stdout
    assert "in_doubt" in text
    assert CRASH_BOOK in text


def test_stats_says_what_the_store_holds(recorded: Store) -> None:
    stats = ok_json(recorded, "stats")
    assert stats["executions"] >= len(IDS)
    assert stats["executions"] == sum(stats["by_status"].values())
    assert stats["by_status"]["FAILED"] >= 1
    assert stats["by_status"]["SUCCESS"] >= 2
    assert stats["in_doubt"] >= 1
    assert stats["usage"]["calls"] >= 2
    assert stats["usage"]["cost"] > 0
    assert stats["limits"]["max_id_bytes"] == 1024
    assert stats["limits"]["max_state_bytes"] > 0
    text = ok(recorded, "stats").stdout
    assert "executions" in text
    assert "limit: one state" in text


def test_errors_are_one_line(recorded: Store) -> None:
    calls = recorded.calls()
    for args in (
        ["show", "nope"],
        ["diff", OK, "nope"],
        ["fork", "nope", "1"],
        ["export", OK, "nope"],
        ["replay", "nope", "--mode", "full", "--agent", AGENT],
        ["replay", "nope", "--mode", "full"],
    ):
        assert "'nope'" in one_error(run(recorded, *args), 1), args
    assert "0: 'plan', 1: 'search'" in one_error(run(recorded, "fork", OK, "pay"), 1)
    line = one_error(run(recorded, "replay", OK, "--mode", "full"), 2)
    assert "--agent module:function" in line
    assert "'book_trip'" in line
    assert recorded.calls() == calls  # no agent ran


def test_a_real_process_replays_and_fails_cleanly(recorded: Store) -> None:
    """`python -m livingai` loads the agent by its import path (the current directory
    on sys.path) and runs a whole replay; an unknown execution is one line."""
    calls = recorded.calls()
    env = {cli_agent.LOG: str(recorded.log)}
    command = ["-m", "livingai", "--store", recorded.url]
    done = python(
        *command, "replay", OK, "--mode", "mock_tools", "--agent", AGENT, "--json", env=env
    )
    assert done.returncode == 0, done.stderr
    assert other_lines(done.stderr) == []
    outcome = json.loads(done.stdout)
    assert outcome["outcome"] == "finished"
    assert outcome["result"] == {"booking": "BK-LX-318"}
    assert recorded.calls() - calls == Counter({"choose": 1})

    missing = python(*command, "-q", "show", "nope")
    assert missing.returncode == 1
    assert missing.stdout == ""
    assert missing.stderr.splitlines() == [
        f"livingai: error: no execution 'nope' is stored in {store_repr(recorded)}"
    ]


def store_repr(store: Store) -> str:
    """As the store names itself (the prefix or schema in the URL is an option)."""
    if store.url.startswith("sqlite:///"):
        return f"SQLiteStore({store.url.removeprefix('sqlite:///')!r})"
    base, _, option = store.url.partition("?")
    name, _, value = option.partition("=")
    kind = "RedisStore" if base.startswith("redis") else "PostgresStore"
    return f"{kind}({base!r}, {name}={value!r})"


@pytest.mark.parametrize("kind", KINDS)
def test_gc_dry_run_then_for_real(kind: str, tmp_path: Path) -> None:
    with fresh_store(kind, tmp_path) as store:
        record(store)
        line = one_error(run(store, "gc"), 2)
        assert "--keep-checkpoints N, --finished-before TIME, or both" in line
        tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()

        would = ok_json(store, "gc", "--finished-before", tomorrow, "--dry-run")
        assert would["dry_run"]
        assert sorted(would["deleted"]) == sorted([OK, FAILED, NOTES])
        assert would["versions_deleted"] > 0
        assert set(would["kept"]) == {CRASH_BOOK, CRASH_CHOOSE}  # unfinished
        assert set(IDS.values()) <= set(by_id(listed(store)))  # nothing went

        dropped = ok_json(store, "gc", "--keep-checkpoints", "1")
        assert dropped["checkpoints_dropped"] == 2
        assert dropped["deleted"] == []
        states = [n["state"] for n in ok_json(store, "show", NOTES, "--state")["nodes"]]
        assert [state["kind"] for state in states if state] == ["text"]  # the newest stays

        gone = ok_json(store, "gc", "--finished-before", tomorrow)
        assert not gone["dry_run"]
        assert sorted(gone["deleted"]) == sorted([OK, FAILED, NOTES])
        assert sorted(by_id(listed(store))) == sorted([CRASH_BOOK, CRASH_CHOOSE])
        text = ok(store, "gc", "--finished-before", tomorrow, "--dry-run").stdout
        assert "would delete 0 executions" in text
        assert "dry run" in text


# -- errors outside any store -------------------------------------------------------------------


def test_a_bad_store_url_is_one_line() -> None:
    done = python("-m", "livingai", "--store", "nosuch://x", "list")
    assert done.returncode == 1
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("livingai: error: bad store URL 'nosuch://x': unknown scheme")


def test_a_missing_sqlite_file_is_an_error_not_a_new_store(tmp_path: Path) -> None:
    missing = tmp_path / "typo.db"
    line = one_error(RUNNER.invoke(cli, ["--store", f"sqlite:///{missing}", "list"]), 1)
    assert "no SQLite database" in line
    assert str(missing) in line
    assert not missing.exists()


# A child that cannot import `name` (as if it were not installed), then runs the CLI.
_BLOCKED_CHILD = """
import sys
from importlib.abc import MetaPathFinder

BLOCKED = sys.argv[1]

class Block(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Block())
sys.argv = ["livingai", *sys.argv[2:]]
import runpy
runpy.run_module("livingai", run_name="__main__")
"""


def test_a_missing_store_extra_is_one_line() -> None:
    done = python("-c", _BLOCKED_CHILD, "redis", "--store", "redis://127.0.0.1:6379/0", "list")
    assert done.returncode == 1
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("livingai: error: ")
    assert 'pip install "livingai[redis]"' in line


def test_without_the_cli_extra_python_m_livingai_says_what_to_install() -> None:
    done = python("-c", _BLOCKED_CHILD, "click", "list")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "livingai: error: 'click' is not installed; run: pip install \"livingai[cli]\""
    ]


def test_a_password_in_the_url_never_shows() -> None:
    url = "postgresql://postgres:s3cret@127.0.0.1:1/test"
    done = python("-m", "livingai", "--store", url, "list")
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert "postgres:***@127.0.0.1:1" in line
    assert "s3cret" not in done.stdout + done.stderr
    for args in (["stats", "--json"], ["show", "x", "--bogus"], ["export", "x"]):
        result = RUNNER.invoke(cli, ["--store", url, *args])
        assert result.exit_code in (1, 2), args
        assert "s3cret" not in result.output, args
    redis = RUNNER.invoke(cli, ["--store", "redis://:hunter22@127.0.0.1:1/0", "pending"])
    assert "redis://:***@127.0.0.1:1/0" in one_error(redis, 1)
    assert "hunter22" not in redis.output
    env = RUNNER.invoke(cli, ["list"], env={"LIVINGAI_STORE": url.replace(":1/", ":2/")})
    assert "s3cret" not in env.output
    assert env.exit_code == 1


def test_usage_errors_exit_2_with_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'never-opened.db'}"
    for args, expected in (
        (["list", "--since", "yesterday"], "is not a date or time"),
        (["list", "--status", "DONE"], "'--status'"),
        (["replay", "x", "--mode", "from_node", "--agent", AGENT], "give --from-step"),
        (["replay", "x", "--mode", "full", "--from-step", "1", "--agent", AGENT], "not full"),
        (["replay", "x", "--mode", "mock_tools", "--real-tools", "--agent", AGENT], "not mock"),
        (["replay", "x", "--mode", "counterfactual", "--counterfactual", "search"], "STEP=JSON"),
        (["replay", "x", "--mode", "counterfactual", "--counterfactual", "a=b"], "not JSON"),
        (["replay", "x", "--mode", "full", "--agent", "nosuch.module:fn"], "no module"),
        (["replay", "x", "--mode", "full", "--agent", "tests.cli_agent:nope"], "has no 'nope'"),
        (["replay", "x", "--mode", "full", "--agent", "tests.cli_agent"], "module:function"),
        (["replay", "x", "--mode", "full", "--agent", "tests.cli_agent:MODEL"], "not an agent"),
        (["replay", "x"], "--mode"),
        (["recover"], "--agent"),
        (["nosuch"], "No such command"),
    ):
        line = one_error(RUNNER.invoke(cli, ["--store", url, *args]), 2)
        assert expected in line, (args, line)
    assert not (tmp_path / "never-opened.db").exists()


def test_version_and_help() -> None:
    version = RUNNER.invoke(cli, ["--version"])
    assert version.exit_code == 0
    assert version.stdout == f"livingai {livingai.__version__}\n"
    helped = RUNNER.invoke(cli, ["--help"])
    assert helped.exit_code == 0
    for command in ("list", "show", "replay", "diff", "fork", "costs", "export", "gc"):
        assert f"  {command} " in helped.stdout
    assert "LIVINGAI_STORE" in helped.stdout
    assert "postgresql://" in helped.stdout


def test_a_long_chain_of_parents_is_drawn_without_recursion() -> None:
    """Logs like the demo's link each node to the one before: thousands deep."""
    from rich.console import Console

    from livingai import ExecutionNode, NodeType
    from livingai.cli import tree

    nodes = [ExecutionNode(id="n0", execution_id="x", type=NodeType.PROMPT)]
    for n in range(1, 3000):
        nodes.append(
            ExecutionNode(id=f"n{n}", execution_id="x", type=NodeType.PROMPT, parent_id=f"n{n - 1}")
        )
    drawn = livingai.step_tree(nodes)
    assert [depth for depth, _ in drawn] == list(range(3000))
    out = io.StringIO()
    Console(file=out, width=120).print(tree.show_view("x", "x/run", drawn, {}))
    lines = out.getvalue().splitlines()
    assert len(lines) == 3000 + 2  # the execution, each node, the count
    assert "n2999" in lines[-2]
    assert lines[-1] == "3000 nodes"


def test_the_store_may_follow_the_command(recorded: Store) -> None:
    """`livingai list --store URL`, as a new user typed it: the same as before the
    command; after it, it wins over the one before, and its password stays masked."""
    before = RUNNER.invoke(cli, ["--store", recorded.url, "list", "--json"])
    after = RUNNER.invoke(cli, ["list", "--store", recorded.url, "--json"])
    assert after.exit_code == 0, after.output
    assert json.loads(after.stdout) == json.loads(before.stdout)
    elsewhere = "sqlite:////nonexistent/where.db"
    wins = RUNNER.invoke(cli, ["--store", elsewhere, "show", IDS["ok"], "--store", recorded.url])
    assert wins.exit_code == 0, wins.output
    masked = RUNNER.invoke(cli, ["list", "--store", "redis://:s3cret@127.0.0.1:1/0"])
    assert "s3cret" not in masked.output
    assert "--store URL" in RUNNER.invoke(cli, ["costs", "--help"]).output
