"""examples/06_web_ui.py runs as a new user would run it (no API key, no network): it
records its runs, and the UI it starts serves them until it is stopped."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import IO

import pytest

from tests.services import ROOT, free_port

EXAMPLE = str(ROOT / "examples" / "06_web_ui.py")


def test_web_ui_example_records_a_crash_a_failure_and_a_replay(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-W", "error", EXAMPLE, "--record-only"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == "", result.stderr
    out = result.stdout
    assert out.count("provider: card charged") == 3  # order-1, order-2, order-4: once each
    assert "kill -9" in out
    assert "provider: key order-4/1 was charged before: no new charge" in out
    assert "order-3: failed: card declined for $180" in out
    assert "charges at the provider: 3 (one per paid order)" in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    for done in ("order-1", "order-2", "order-4"):
        assert " SUCCESS " in rows[done], rows[done]
        assert float(rows[done].split("$")[1]) > 0  # the model steps were priced
    assert " FAILED " in rows["order-3"]
    [replay] = [line for line in rows.values() if line.endswith("replay of order-1")]
    assert "$0.000000" in replay  # the model was served from the recording: nothing spent
    assert "web UI" not in out  # --record-only: nothing served


def test_web_ui_example_serves_the_runs_it_recorded(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn", reason='the web UI needs the "ui" extra')
    port = free_port()
    command = [sys.executable, "-W", "error", EXAMPLE, "--port", str(port)]
    command += ["--serve-seconds", "60"]  # a bound: stopped by SIGINT long before that
    with subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            lines: queue.Queue[str] = queue.Queue()
            reader = threading.Thread(target=_read_lines, args=(process.stdout, lines))
            reader.start()
            line = ""
            while not line.startswith("the web UI: http://127.0.0.1:"):
                line = lines.get(timeout=60)  # recording takes a few seconds
                assert line, "the example ended without saying where the UI is"
            assert "(log in with token " in line
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
                page = response.read().decode()
            assert response.status == 200
            for execution_id in ("order-1", "order-2", "order-3", "order-4"):
                assert f'data-execution-id="{execution_id}"' in page
            process.send_signal(signal.SIGINT)  # Ctrl-C: uvicorn shuts down cleanly
            assert process.wait(timeout=30) == 0
            reader.join(timeout=10)
            rest = "".join(iter(lines.get_nowait, ""))
            assert process.stderr is not None
            err = process.stderr.read()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert "Traceback" not in err, err
    assert "the web UI stopped" in rest


def _read_lines(stream: IO[str], lines: queue.Queue[str]) -> None:
    """Hand the child's output over line by line, then "" at its end: the test waits on
    the queue with a timeout instead of blocking on the pipe."""
    for line in stream:
        lines.put(line)
    lines.put("")
