"""A throwaway Redis Cluster on loopback ports, for tests and benchmarks.

    with LocalRedisCluster(masters=3, replicas=1) as cluster:
        store = open_store(f"{cluster.url}?prefix=test")

`start()` runs one `redis-server --cluster-enabled yes` a node (no persistence: `--save ""
--appendonly no`), each in its own folder of a temporary directory, joins them with
`redis-cli --cluster create ... --cluster-yes`, and waits (bounded) until every node
says `cluster_state:ok` and every replica is in sync. `stop()` ends every server it
started and removes the directory. Everything listens on 127.0.0.1 only.

Besides, a test can kill a node (SIGKILL), start it again, and move one hash slot from
one primary to another by hand (`migrate_slot`), pausing half way so that it can check
what clients see while a slot is being migrated. Needs `redis-server` and `redis-cli` on
PATH (ClusterUnavailable says so otherwise) and redis-py for its own admin commands.
"""

from __future__ import annotations

import functools
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

START_SECONDS = 60.0  # a bound on every wait of this module
POLL_SECONDS = 0.02


class ClusterUnavailable(RuntimeError):
    """The cluster cannot be started here (a binary is missing); the message says why."""


def missing_binaries() -> list[str]:
    """Which of redis-server and redis-cli are not on PATH."""
    return [name for name in ("redis-server", "redis-cli") if shutil.which(name) is None]


@dataclass
class Node:
    """One redis-server of the cluster."""

    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        log = self.directory / "redis.log"
        return log.read_text(errors="replace")[-4000:] if log.exists() else "(no log)"


class LocalRedisCluster:
    """`masters` primaries with `replicas` replicas each, on spare loopback ports.
    `node_timeout_ms` is cluster-node-timeout: how long a primary may be silent before
    its replica takes over."""

    def __init__(
        self,
        *,
        masters: int = 3,
        replicas: int = 0,
        node_timeout_ms: int = 5000,
        options: tuple[str, ...] = (),
    ) -> None:
        if masters < 3:
            raise ValueError("a Redis Cluster needs at least 3 primaries")
        missing = missing_binaries()
        if missing:
            raise ClusterUnavailable(
                f"{' and '.join(missing)} not found on PATH: a Redis Cluster test needs "
                "both (Debian: apt-get install redis-server)"
            )
        self.masters = masters
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.options = options  # more redis-server options, as "--name", "value", ...
        self.directory: Path | None = None
        self.nodes: list[Node] = []

    # -- starting and stopping ------------------------------------------------------

    @property
    def url(self) -> str:
        """The store URL of the cluster (one node is enough: the client finds the rest)."""
        return f"redis+cluster://{self.nodes[0].address}"

    @property
    def seeds(self) -> list[str]:
        return [node.address for node in self.nodes]

    def start(self) -> Self:
        self.directory = Path(tempfile.mkdtemp(prefix="livingai-redis-cluster-"))
        try:
            for port in _spare_ports(self.masters * (1 + self.replicas)):
                node = Node(port, self.directory / str(port))
                node.directory.mkdir()
                self.nodes.append(node)
                self._launch(node)
            for node in self.nodes:
                self.wait_for(functools.partial(self._answers, node), f"{node.address} to answer")
            create = ["redis-cli", "--cluster", "create", *self.seeds]
            create += ["--cluster-replicas", str(self.replicas), "--cluster-yes"]
            done = subprocess.run(create, capture_output=True, text=True, timeout=START_SECONDS)
            if done.returncode != 0 or "[OK] All 16384 slots covered" not in done.stdout:
                raise RuntimeError(f"redis-cli --cluster create failed: {done.stdout}{done.stderr}")
            self.wait_until_ok()
        except BaseException:
            self.stop()
            raise
        return self

    def _launch(self, node: Node) -> None:
        command = ["redis-server", "--port", str(node.port), "--bind", "127.0.0.1"]
        command += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        command += ["--cluster-node-timeout", str(self.node_timeout_ms)]
        command += ["--save", "", "--appendonly", "no", "--dir", str(node.directory)]
        # A replica syncs at once (not after diskless sync's 5 s delay), and may always
        # take over from its primary, however long it was cut off.
        command += ["--repl-diskless-sync-delay", "0", "--cluster-replica-validity-factor", "0"]
        command += ["--logfile", "redis.log", *self.options]
        node.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=node.directory
        )

    def stop(self) -> None:
        """End every server (SIGTERM, then SIGKILL) and remove the directory."""
        for node in self.nodes:
            if node.running:
                assert node.process is not None
                node.process.terminate()
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                try:
                    node.process.wait(10)
                except subprocess.TimeoutExpired:
                    node.process.kill()
                    node.process.wait(10)
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def __enter__(self) -> Self:
        return self.start() if not self.nodes else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- faults -------------------------------------------------------------------------

    def kill(self, node: Node) -> None:
        """SIGKILL: no shutdown, nothing saved."""
        if node.process is not None and node.process.poll() is None:
            node.process.send_signal(signal.SIGKILL)
            node.process.wait(START_SECONDS)

    def restart(self, node: Node) -> None:
        """Start a stopped node again on its port and folder: it rejoins the cluster
        (a primary that was replaced comes back as a replica)."""
        assert not node.running, f"{node.address} is running"
        self._launch(node)
        self.wait_for(lambda: self._answers(node), f"{node.address} to answer")

    # -- what the cluster says ----------------------------------------------------------

    def client(self, node: Node) -> Any:
        """A plain (not cluster) redis-py client of one node; close it after use."""
        import redis

        return redis.Redis(
            host="127.0.0.1", port=node.port, socket_timeout=5, socket_connect_timeout=2
        )

    def _ask(self, node: Node, *command: str) -> Any:
        client = self.client(node)
        try:
            return client.execute_command(*command)
        finally:
            client.close()

    def _answers(self, node: Node) -> bool:
        if not node.running:
            raise RuntimeError(f"redis-server {node.address} exited: {node.log_text()}")
        try:
            return bool(self._ask(node, "PING"))
        except Exception:  # refused, or still loading
            return False

    def topology(self) -> dict[str, dict[str, str]]:
        """CLUSTER NODES as one live node sees it: address -> id, role, master id, slots."""
        for node in self.nodes:
            if not node.running:
                continue
            text = self._ask(node, "CLUSTER", "NODES")
            text = text.decode() if isinstance(text, bytes) else str(text)
            found = {}
            for line in text.splitlines():
                parts = line.split()
                address = parts[1].split("@")[0]
                flags = parts[2].split(",")
                role = "primary" if "master" in flags else "replica"
                if "fail" in flags or "fail?" in flags:
                    role += " (failing)"
                found[address] = {
                    "id": parts[0],
                    "role": role,
                    "master": parts[3],
                    "slots": " ".join(parts[8:]),
                }
            return found
        raise RuntimeError("no node of the cluster is running")

    def primaries(self) -> list[Node]:
        """The running nodes that are primaries now, by port."""
        roles = self.topology()
        return [n for n in self.nodes if n.running and roles[n.address]["role"] == "primary"]

    def replicas_of(self, primary: Node) -> list[Node]:
        roles = self.topology()
        own = roles[primary.address]["id"]
        return [n for n in self.nodes if n.running and roles[n.address]["master"] == own]

    def owner(self, slot: int) -> Node:
        """The running primary serving `slot`."""
        for node in self.primaries():
            for part in self.topology()[node.address]["slots"].split():
                if part.startswith("["):
                    continue  # a slot being migrated or imported
                low, _, high = part.partition("-")
                if int(low) <= slot <= int(high or low):
                    return node
        raise RuntimeError(f"no primary serves slot {slot}")

    def load(self) -> dict[str, dict[str, int]]:
        """What each running primary holds and has done, by address: its keys (DBSIZE)
        and the commands it ran since it started (INFO commandstats): how evenly the
        load spreads."""
        found = {}
        for node in self.primaries():
            stats = self._ask(node, "INFO", "commandstats")
            calls = sum(int(entry["calls"]) for entry in stats.values())
            found[node.address] = {"keys": int(self._ask(node, "DBSIZE")), "calls": calls}
        return found

    def healthy(self) -> bool:
        """Every running node says cluster_state:ok, the primaries are as many as asked
        for, and every replica's link to its primary is up."""
        running = [n for n in self.nodes if n.running]
        for node in running:
            if b"cluster_state:ok" not in self._ask(node, "CLUSTER", "INFO"):
                return False
        roles = self.topology()
        for node in running:
            if roles.get(node.address, {}).get("role") == "replica":
                replication = self._ask(node, "INFO", "replication")
                if replication.get("master_link_status") != "up":
                    return False
        return len(self.primaries()) == self.masters

    def wait_until_ok(self, seconds: float = START_SECONDS) -> None:
        self.wait_for(self._safely(self.healthy), "the cluster to be ok", seconds)

    def _safely(self, probe: Callable[[], bool]) -> Callable[[], bool]:
        def safe() -> bool:
            try:
                return probe()
            except (OSError, RuntimeError, KeyError):
                raise
            except Exception:  # a node still starting or failing over
                return False

        return safe

    def wait_for(
        self, condition: Callable[[], bool], what: str, seconds: float = START_SECONDS
    ) -> None:
        """Poll `condition` until it holds; RuntimeError with the logs after `seconds`."""
        deadline = time.monotonic() + seconds
        while not condition():
            if time.monotonic() > deadline:
                logs = "\n".join(f"{n.address}: {n.log_text()[-600:]}" for n in self.nodes)
                raise RuntimeError(f"timed out after {seconds}s waiting for {what}\n{logs}")
            time.sleep(POLL_SECONDS)  # polling a condition, bounded by the deadline

    # -- moving a slot ------------------------------------------------------------------

    def migrate_slot(
        self, slot: int, target: Node, *, halfway: Callable[[], None] | None = None
    ) -> int:
        """Move `slot` to the primary `target` as redis-cli's resharding does (IMPORTING
        on the target, MIGRATING on the source, MIGRATE the keys a few at a time, then
        the slot's new owner told to every node); `halfway` runs once some of its keys
        have moved and some not. How many keys moved."""
        source = self.owner(slot)
        if source is target:
            raise ValueError(f"slot {slot} is already on {target.address}")
        ids = {address: entry["id"] for address, entry in self.topology().items()}
        source_id, target_id = ids[source.address], ids[target.address]
        self._ask(target, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", source_id)
        self._ask(source, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", target_id)
        moved = 0
        client = self.client(source)
        try:
            total = int(client.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot))
            while True:
                keys = client.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 5)
                if not keys:
                    break
                client.execute_command(
                    "MIGRATE", "127.0.0.1", target.port, "", 0, 10_000, "KEYS", *keys
                )
                moved += len(keys)
                if halfway is not None and moved >= total // 2:
                    halfway()
                    halfway = None
        finally:
            client.close()
        if halfway is not None:
            halfway()
        for node in self.primaries():
            self._ask(node, "CLUSTER", "SETSLOT", str(slot), "NODE", target_id)
        self.wait_for(self._safely(lambda: self.owner(slot) is target), f"slot {slot} to move")
        return moved


def _spare_ports(count: int) -> Iterator[int]:
    """Ports p with p and p + 10000 (its cluster bus) free on loopback now, both below
    the kernel's range of ephemeral ports, which a client's connection could take."""
    rng = random.Random()
    low = min(_ephemeral_low() - 10_000, 55_000)
    given: set[int] = set()
    for _ in range(10_000):
        if len(given) == count:
            break
        port = rng.randrange(10_000, max(low, 10_100))
        if {port, port + 10_000} & {p for g in given for p in (g, g + 10_000)}:
            continue
        if _free(port) and _free(port + 10_000):
            given.add(port)
            yield port
    if len(given) < count:
        raise RuntimeError(f"found only {len(given)} spare port pairs of {count}")


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
