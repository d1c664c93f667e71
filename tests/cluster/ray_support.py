"""Cluster test support: a real two-node Ray cluster on loopback (a head and a worker node, each with one
CPU and a resource naming it, in a private temp dir), stopped through the processes it started; drivers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from daemon_support import free_port

ROOT = Path(__file__).resolve().parents[2]
# Loopback addresses, one per node. Not 127.0.0.1: `ray start` and `ray.init` replace that one with the
# machine's own address ("a remotely reachable IP"); the rest of 127.0.0.0/8 is kept as given.
HEAD_IP, WORKER_IP = "127.0.0.2", "127.0.0.3"


def _ray_program() -> Path:
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        message = "ray is not installed: pip install -e '.[cluster]' (scripts/setup.sh installs .[dev])"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return Path(sys.executable).parent / "ray"


def cluster_env() -> dict[str, str]:
    """The environment of the nodes and of the drivers the tests start: this checkout importable, no
    usage stats, no token (loopback only), a lost node noticed after about 6 s instead of 30, and this
    interpreter's bin first on PATH (as an activated venv has it: a `ray job submit` entrypoint `edgeport`)."""
    path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
    env = dict(os.environ, PYTHONPATH=str(ROOT), PATH=path, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled",
               RAY_DEDUP_LOGS="0", RAY_health_check_period_ms="2000", RAY_health_check_failure_threshold="3")
    env.pop("RAY_ADDRESS", None)
    return env


class RayCluster:
    """`ray start --block` processes, each in its own process group: the head, then worker nodes."""

    def __init__(self, temp_dir: Path, dashboard_port: int | None = None) -> None:
        self.temp_dir = temp_dir
        self.dashboard_port = dashboard_port  # the job server of `ray job submit` (needs ray[default])
        self.port = free_port()
        self.address = f"{HEAD_IP}:{self.port}"
        self.ray = _ray_program()
        self.head: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self.log = temp_dir / "nodes.log"

    def _start(self, role: list[str], resource: str, ip: str) -> subprocess.Popen:
        ports = ["--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
                 "--dashboard-agent-grpc-port", "--metrics-export-port", "--runtime-env-agent-port"]
        command = [str(self.ray), "start", "--block", *role, f"--node-ip-address={ip}", "--num-cpus=1",
                   "--num-gpus=0", f"--resources={json.dumps({resource: 1})}", f"--temp-dir={self.temp_dir}",
                   "--object-store-memory=200000000", "--disable-usage-stats"]
        command += [f"{flag}={free_port()}" for flag in ports]
        with self.log.open("a") as log:
            return subprocess.Popen(command, env=cluster_env(), stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, cwd=ROOT)

    def start_head(self) -> None:
        dashboard = ["--include-dashboard=false"] if self.dashboard_port is None else [
            "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}"]
        self.head = self._start(["--head", f"--port={self.port}", *dashboard], "head", HEAD_IP)

    def start(self) -> "RayCluster":
        self.start_head()
        self.start_worker()  # it waits for the head's GCS by itself
        return self

    def start_worker(self) -> None:
        self.worker = self._start([f"--address={self.address}"], "worker", WORKER_IP)
        self.wait_nodes(2)

    def ensure_worker(self) -> None:
        """Start the worker node again when an earlier test killed it."""
        if self.worker is None or self.worker.poll() is not None:
            self.start_worker()

    def nodes(self) -> int:
        """Active nodes, as `ray status` (the GCS, over loopback) lists them."""
        done = subprocess.run([str(self.ray), "status", f"--address={self.address}"], env=cluster_env(),
                              capture_output=True, text=True)
        active = done.stdout.partition("Active:")[2].partition("Pending:")[0]
        return sum(1 for line in active.splitlines() if " node_" in line)

    def wait_nodes(self, count: int, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.nodes() >= count:
                return
            for process in (self.head, self.worker):
                if process is not None and process.poll() is not None:
                    raise RuntimeError(f"a Ray node exited ({process.returncode}); see {self.log}")
            time.sleep(1.0)
        raise TimeoutError(f"{count} Ray nodes not up after {timeout:.0f} s; see {self.log}")

    @staticmethod
    def _kill(process: subprocess.Popen | None, how: int) -> None:
        """Signal a node: its `ray start`, and every process under it (raylet, agents, workers: Ray puts
        workers in process groups of their own, so the node's group alone would miss them)."""
        import psutil

        if process is None:
            return
        try:
            tree = psutil.Process(process.pid)
            members = [tree, *tree.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for member in members:
            try:
                member.send_signal(how)
            except psutil.NoSuchProcess:
                pass

    def kill_worker(self) -> None:
        """The worker node dies at once (SIGKILL to its process group), as a lost machine would."""
        self._kill(self.worker, signal.SIGKILL)
        self.worker.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM to both nodes, SIGKILL to whatever is left of them 5 s later (Ray would drain for 30 s)."""
        import psutil

        members = []
        for process in (self.worker, self.head):
            if process is not None and process.poll() is None:
                members += [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
        for member in members:
            try:
                member.terminate()
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(members, timeout=5)
        for member in alive:
            try:
                member.kill()
            except psutil.NoSuchProcess:
                pass
        for process in (self.worker, self.head):
            if process is not None:
                process.wait(timeout=10)


def run_driver(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m edgeport ARGS` as a Ray driver of its own (never a ray.init inside pytest)."""
    return subprocess.run([sys.executable, "-m", "edgeport", *args], env=cluster_env(), capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="session")
def ray_cluster():
    """The two-node loopback cluster, started once for the session (Ray starts slowly on shared cores)."""
    temp_dir = Path(tempfile.mkdtemp(prefix="epray-", dir="/tmp"))  # short: Ray's socket paths have a limit
    cluster = RayCluster(temp_dir)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
        shutil.rmtree(temp_dir, ignore_errors=True)
