"""A `map_fn` that runs pure tasks as Ray tasks (one CPU each), for `edgeport report --ray`.

Results come back in the order of the items, as builtin `map` gives them; a task lost with its
node is run again (max_retries), an OSError (a file not yet visible on a node) is retried too.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from edgeport.errors import ClusterError

TASK_RETRIES = 3


def ray_map(address: str | None = None, *, num_cpus: float = 1, retries: int = TASK_RETRIES,
            progress: bool = True, description: str = "evaluate (ray)") -> Callable[..., list]:
    """map_fn(fn, items) -> [fn(item) for item in items], each call a Ray task on the cluster at `address`
    (None: this machine's Ray, or a new one). Raises ClusterError when a task fails for good."""

    def map_fn(fn: Callable[[Any], Any], items: Iterable[Any]) -> list:
        from edgeport.cluster.session import connect
        from edgeport.progress import Progress

        ray = connect(address)
        remote = ray.remote(num_cpus=num_cpus, max_retries=retries, retry_exceptions=[OSError])(fn)
        refs = [remote.remote(item) for item in items]
        bar = Progress(len(refs), description, enabled=progress)
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                bar.update(len(done))
            return ray.get(refs)
        except ray.exceptions.RayError as exc:
            raise ClusterError(f"a Ray task failed: {type(exc).__name__}: {exc}") from exc

    return map_fn
