"""scripts/pi-rootfs.sh without building anything: which rootfs counts as complete, and bad arguments."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from pi_support import SCRIPT


def _script(*args: str, rootfs: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "EDGEPORT_PI_ROOTFS": str(rootfs)}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=60)


def test_rootfs_without_its_stamp_counts_as_incomplete(tmp_path):
    rootfs = tmp_path / "pi-rootfs"
    (rootfs / "usr" / "bin").mkdir(parents=True)  # what an interrupted debootstrap leaves
    done = _script("status", rootfs=rootfs)
    assert done.returncode == 1 and "absent or incomplete" in done.stdout
    (rootfs / ".edgeport-rootfs").write_text("edgeport-pi-rootfs 0 an older recipe\n")
    assert _script("status", rootfs=rootfs).returncode == 1


def test_rootfs_with_its_stamp_is_reused(tmp_path):
    rootfs = tmp_path / "pi-rootfs"
    rootfs.mkdir()
    recipe = next(line for line in SCRIPT.read_text().splitlines() if line.startswith("RECIPE="))
    (rootfs / ".edgeport-rootfs").write_text(recipe.split('"')[1].replace("$SUITE", "bookworm") + "\n")
    done = _script("status", rootfs=rootfs)
    assert done.returncode == 2 and "edgeport not installed" in done.stdout
    (rootfs / ".edgeport-installed").write_text("digest tflite\n")
    assert _script("status", rootfs=rootfs).returncode == 0


def test_run_refuses_a_missing_host_folder(tmp_path):
    done = _script("run", "-v", str(tmp_path / "absent"), "--", "true", rootfs=tmp_path / "pi-rootfs")
    assert done.returncode != 0
    assert "absent does not exist" in done.stderr or "needs root" in done.stderr
    assert not (tmp_path / "pi-rootfs").exists()  # nothing built for a command that cannot run
