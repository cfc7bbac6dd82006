"""The guard the site is built under (tests/docs/offline.py) refuses the network before
anything is sent, and fails the run even when the module caught the refusal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

OFFLINE = Path(__file__).resolve().parent / "offline.py"


def run(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "probe.py").write_text(body)
    return subprocess.run(
        [sys.executable, str(OFFLINE), "probe", "an-argument"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path)},
        check=False,
    )


def test_a_module_that_stays_offline_runs_with_its_arguments_and_status(tmp_path: Path) -> None:
    result = run(tmp_path, "import sys\nprint(sys.argv[1:])\nsys.exit(3)\n")
    assert (result.returncode, result.stdout, result.stderr) == (3, "['an-argument']\n", "")


@pytest.mark.parametrize(
    ("body", "attempt"),
    [
        (
            "import socket\nsocket.socket().connect(('127.0.0.1', 9))\n",
            "socket.connect to ('127.0.0.1', 9)",
        ),
        (
            "import socket\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "s.sendto(b'x', ('127.0.0.1', 9))\n",
            "socket.sendto to ('127.0.0.1', 9)",
        ),
        (
            "import urllib.request\n"
            "try:\n"
            "    urllib.request.urlopen('https://example.org/objects.inv', timeout=1)\n"
            "except OSError as exc:\n"
            "    print('caught:', exc)\n",  # caught, as a plugin's download would be
            "socket.getaddrinfo of 'example.org'",
        ),
    ],
    ids=["tcp", "udp", "a-lookup-caught"],
)
def test_a_module_that_reaches_for_the_network_fails_naming_it(
    tmp_path: Path, body: str, attempt: str
) -> None:
    result = run(tmp_path, body)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"offline: probe tried the network: {attempt}" in result.stderr


def test_unix_sockets_stay_allowed(tmp_path: Path) -> None:
    body = (
        "import socket\n"
        "a, b = socket.socketpair()\n"
        "a.sendall(b'ok')\n"
        "print(b.recv(2).decode())\n"
        "a.close()\n"
        "b.close()\n"
    )
    result = run(tmp_path, body)
    assert (result.returncode, result.stdout, result.stderr) == (0, "ok\n", "")
