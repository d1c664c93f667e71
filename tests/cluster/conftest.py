"""The session's two-node Ray cluster on loopback (tests/cluster only)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from ray_support import RayCluster


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
