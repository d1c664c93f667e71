"""Joining Ray: a cluster's address, the job's cluster under `ray job submit`, or a Ray on this machine."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgeport.errors import ClusterError, ConfigError, MissingDependencyError


def import_ray() -> Any:
    """The ray module; raises MissingDependencyError naming the `cluster` extra when it is absent."""
    try:
        import ray
        import ray.data  # noqa: F401  (the data part of the extra)
    except ImportError as exc:
        raise MissingDependencyError("ray[data]", "cluster") from exc
    return ray


def check_address(address: str | None) -> str | None:
    """`address` when it names a cluster (host:port, ray://host:port or auto); raises ConfigError otherwise
    (typically a SOURCE taken as the value of a bare `--ray` written before the sources)."""
    if address is None or address == "auto" or ":" in address and not Path(address).exists():
        return address
    raise ConfigError(f"--ray {address}: not a Ray address (host:port); write --ray after the sources, or "
                      "--ray=HOST:PORT")


def connect(address: str | None) -> Any:
    """Join Ray and return the module: `address` (host:port) when given; otherwise the cluster of
    RAY_ADDRESS (set by `ray job submit`) or one already running here, else a new Ray on this machine
    (stopped when this process ends). Raises ClusterError naming the address."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        if address:
            ray.init(address=address, logging_level="WARNING", log_to_driver=False)
            return ray
        try:
            ray.init(address="auto", logging_level="WARNING", log_to_driver=False)
        except ConnectionError:  # no Ray here yet: start one for this process
            ray.init(include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = address or "this machine"
        raise ClusterError(f"cannot join Ray at {where}: {exc} (is `ray start --head` running there? "
                           "the address is the head's host:port)") from exc
    return ray


def slots(ray: Any) -> tuple[int, int]:
    """(CPUs, GPUs) of the whole cluster, each at least 0; CPUs at least 1."""
    resources = ray.cluster_resources()
    return max(int(resources.get("CPU", 1)), 1), int(resources.get("GPU", 0))
