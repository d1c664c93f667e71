"""The report's unit of work: evaluating one (artifact, image set, shard) is a pure function of its task,
so the builder can hand the tasks to any map (the builtin one here, a cluster's elsewhere)."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from edgeport.evaluate.metrics import ImageEval

# map_fn(evaluate_task, tasks) -> results in task order; `map` is the default
MapFn = Callable[[Callable[["EvalTask"], "TaskResult"], Sequence["EvalTask"]], Iterable["TaskResult"]]

CLEAN = "clean"  # the perturbation name of the unperturbed val images


@dataclass(frozen=True)
class EvalTask:
    """Evaluate `model` (a file this host runs: the artifact, or the proxy standing for it) on shard
    `shard` of `shards` of the images of `data` (a DATA.yaml), under `perturbation` (only a label:
    `data` already holds the perturbed images). `row` names the report row the result belongs to."""

    row: str
    model: str
    data: str
    perturbation: str = CLEAN
    shard: int = 0
    shards: int = 1
    threads: int | None = None
    progress: bool = False


@dataclass
class TaskResult:
    """The per-image predictions of one task (dataset order within the shard), or why it failed."""

    task: EvalTask
    images: list[ImageEval] = field(default_factory=list)
    seconds: float = 0.0
    backend: str = ""
    names: tuple[str, ...] = ()
    error: str | None = None  # a dataset or model problem: the row is skipped with this reason


def shard_of(items: Sequence[Any], shard: int, shards: int) -> Sequence[Any]:
    """Contiguous slice `shard` of `shards` (concatenating every shard in order gives `items`)."""
    n = len(items)
    return items[shard * n // shards:(shard + 1) * n // shards]


_DETECTORS: "OrderedDict[tuple, Any]" = OrderedDict()  # (file, threads, mtime, size) -> Detector, newest last
_CACHE_SIZE = 16


def _key(model: str, threads: int | None) -> tuple:
    path = Path(model)
    stat = path.stat() if path.is_file() else None
    return (str(model), threads, stat.st_mtime_ns if stat else None, stat.st_size if stat else None)


def adopt(model: str | Path, threads: int | None, detector: Any) -> None:
    """Let the tasks of this process reuse a Detector already open on `model` (while the file is unchanged)."""
    _DETECTORS[_key(str(model), threads)] = detector
    while len(_DETECTORS) > _CACHE_SIZE:
        _DETECTORS.popitem(last=False)


def _detector(model: str, threads: int | None):
    """The Detector of a model file, reused across the tasks of one process while the file is unchanged."""
    key = _key(model, threads)
    if key not in _DETECTORS:
        from edgeport.runtime import Detector

        adopt(model, threads, Detector(model, threads=threads))
    _DETECTORS.move_to_end(key)
    return _DETECTORS[key]


def evaluate_task(task: EvalTask) -> TaskResult:
    """Run the task's model on its shard, COCO protocol, as `edgeport evaluate` does; never raises for a
    dataset or model problem (the result carries it), so one bad row cannot stop a whole map."""
    from edgeport.errors import DatasetError, ModelError
    from edgeport.evaluate import INTERPOLATION, PROTOCOLS, collect
    from edgeport.evaluate.dataset import Dataset, load_dataset

    try:
        detector = _detector(task.model, task.threads)
        dataset = load_dataset(task.data)
        if len(dataset.names) != len(detector.names):
            raise DatasetError(f"{dataset.yaml_path} has {len(dataset.names)} classes, the model "
                               f"{len(detector.names)} ({', '.join(detector.names)})")
        part = Dataset(dataset.yaml_path, dataset.root, dataset.names, list(shard_of(dataset.images, task.shard,
                                                                                    task.shards)))
        shard = f" [{task.shard + 1}/{task.shards}]" if task.shards > 1 else ""
        start = time.perf_counter()
        images, _ = collect(detector, part, PROTOCOLS["coco"], task.progress,
                            f"evaluate {Path(task.model).name}{shard}", None, INTERPOLATION["coco"])
        return TaskResult(task, images, time.perf_counter() - start, detector.backend_name, tuple(dataset.names))
    except (DatasetError, ModelError) as exc:
        return TaskResult(task, error=str(exc))


def run_tasks(tasks: Sequence[EvalTask], map_fn: MapFn | None = None,
              before: Callable[[EvalTask], None] | None = None) -> Iterator[TaskResult]:
    """Yield each task's result in task order; `before(task)` is called as its result is awaited
    (with the builtin map: just before it runs)."""
    results = iter((map_fn or map)(evaluate_task, tasks))
    for task in tasks:
        if before is not None:
            before(task)
        result = next(results)
        if result.task != task:
            raise RuntimeError(f"map_fn returned results out of order: {result.task} for {task}")
        yield result


def shards_for(row: str, model: str, data: str, perturbation: str, shards: int, threads: int | None,
               progress: bool) -> list[EvalTask]:
    """The tasks that together evaluate one model on one image set."""
    return [EvalTask(row, model, data, perturbation, i, shards, threads, progress) for i in range(shards)]


def merge(results: Sequence[TaskResult]) -> TaskResult:
    """One result from the shards of one (row, perturbation): images concatenated in shard order."""
    ordered = sorted(results, key=lambda r: r.task.shard)
    failed = next((r for r in ordered if r.error), None)
    if failed is not None:
        return failed
    first = ordered[0]
    images = [image for r in ordered for image in r.images]
    return TaskResult(first.task, images, float(np.sum([r.seconds for r in ordered])), first.backend, first.names)
