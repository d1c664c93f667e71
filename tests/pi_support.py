"""Emulated Raspberry Pi support, registered as a pytest plugin by the root conftest (`pytest_plugins`): the
arm64 Debian 12 rootfs of scripts/pi-rootfs.sh, built (when missing) and given this tree's edgeport once per
session; tests run commands inside it. Under CI=true a rootfs that cannot be built fails the tests."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Sequence

import pytest

from edgeport.report.arm64 import pi_command

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "pi-rootfs.sh"
BUILD_TIMEOUT = 1800  # debootstrap and pip under qemu on a busy machine


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _unavailable(message: str) -> None:
    if _in_ci():
        pytest.fail(message)
    pytest.skip(message)


class Pi:
    """Runs commands inside the emulated Pi: host folders appear at the same paths (read-only unless
    `writable`), this tree at /project; timeouts are generous since everything inside is emulated."""

    def run(self, command: Sequence[str | Path], mounts: Sequence[Path] = (), writable: Sequence[Path] = (),
            timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(pi_command(command, mounts, writable, workdir="/"), capture_output=True, text=True,
                              timeout=timeout)

    def start(self, command: Sequence[str | Path], mounts: Sequence[Path] = (), writable: Sequence[Path] = (),
              log: Path | None = None) -> subprocess.Popen:
        """A long-running command (its own process group: `stop` reaches it through sudo, unshare and chroot)."""
        out = open(log, "w") if log else subprocess.DEVNULL
        return subprocess.Popen(pi_command(command, mounts, writable, workdir="/"), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)

    @staticmethod
    def stop(process: subprocess.Popen, timeout: float = 60) -> int:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                return process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        return process.wait(timeout)


@pytest.fixture(scope="session")
def pi() -> Pi:
    """The emulated Pi with this tree's edgeport[tflite,onnx,ncnn,daemon] installed. Outside CI, a missing rootfs
    skips (building one takes minutes: scripts/pi-rootfs.sh build, or scripts/setup.sh); under CI it is built."""
    status = subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True, text=True)
    if status.returncode == 1 and not _in_ci():
        pytest.skip(f"no arm64 rootfs ({status.stdout.strip()}): build it once with `scripts/pi-rootfs.sh build` "
                    "(root, debootstrap + qemu-user-static, about 5 minutes)")
    try:
        done = subprocess.run(["bash", str(SCRIPT), "install"], capture_output=True, text=True,
                              timeout=BUILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        _unavailable(f"scripts/pi-rootfs.sh install did not finish in {BUILD_TIMEOUT} s")
    if done.returncode != 0:
        _unavailable(f"the arm64 rootfs cannot be built (scripts/pi-rootfs.sh install, exit {done.returncode}):\n"
                     f"{done.stderr[-2000:]}")
    return Pi()
