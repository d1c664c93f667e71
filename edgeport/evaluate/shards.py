"""Evaluations as pure tasks: (artifact, data, image shard) -> per-image evals, run by any `map_fn`
(builtin `map` in-process, `edgeport.cluster.tasks.ray_map` on Ray) and scored as one run would be."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from edgeport import errors
from edgeport.errors import DatasetError, EdgeportError
from edgeport.evaluate import INTERPOLATION, PROTOCOLS, EvalResult, collect, score
from edgeport.evaluate.dataset import load_dataset
from edgeport.evaluate.metrics import ImageEval
from edgeport.runtime import Detector

MapFn = Callable[[Callable[[Any], Any], Iterable[Any]], Iterable[Any]]
SHARD_IMAGES = 16  # images per task: large enough to amortize opening the artifact, small enough to spread


@dataclass(frozen=True)
class EvalShard:
    """Images start..stop-1 of a split, evaluated through one artifact (paths every worker can read)."""

    artifact: str
    data: str
    start: int
    stop: int
    split: str = "val"
    protocol: str = "coco"
    threads: int | None = None
    exif: bool = True


@dataclass(frozen=True)
class ShardResult:
    """A shard's per-image evals and the seconds they took, or the error (class name, message) that stopped it."""

    images: list[ImageEval]
    seconds: float
    error: tuple[str, str] | None = None


_opened: dict[tuple[str, int | None], Detector] = {}  # a worker reuses an artifact across its shards


def run_shard(shard: EvalShard) -> ShardResult:
    """Evaluate one shard; an EdgeportError comes back as a value (so the caller can re-raise it by class)."""
    try:
        key = (shard.artifact, shard.threads)
        if key not in _opened:
            _opened.clear()
            _opened[key] = Detector(shard.artifact, threads=shard.threads)
        detector = _opened[key]
        dataset = load_dataset(shard.data, shard.split)
        if len(dataset.names) != len(detector.names):
            raise DatasetError(f"{dataset.yaml_path} has {len(dataset.names)} classes, the model "
                               f"{len(detector.names)} ({', '.join(detector.names)})")
        part = dataclasses.replace(dataset, images=dataset.images[shard.start:shard.stop])
        images, rate = collect(detector, part, PROTOCOLS[shard.protocol], progress=False, exif=shard.exif,
                               interpolation=INTERPOLATION[shard.protocol])
    except EdgeportError as exc:
        return ShardResult([], 0.0, (type(exc).__name__, str(exc)))
    return ShardResult(images, len(images) / rate if rate else 0.0)


def _error(error: tuple[str, str]) -> EdgeportError:
    kind = getattr(errors, error[0], EdgeportError)
    exc = EdgeportError.__new__(kind if isinstance(kind, type) and issubclass(kind, EdgeportError) else EdgeportError)
    Exception.__init__(exc, error[1])
    return exc


class Evaluations:
    """(artifact, data) evaluations computed ahead through `map_fn`, all shards of all of them at once;
    `get` returns what `evaluate_with_predictions` would, or raises the error it would have raised."""

    def __init__(self, map_fn: MapFn = map, threads: int | None = None, shard_images: int = SHARD_IMAGES) -> None:
        self.map_fn, self.threads, self.shard_images = map_fn, threads, shard_images
        self._done: dict[tuple[str, str], tuple[EvalResult, list[ImageEval]] | EdgeportError] = {}

    def compute(self, jobs: Sequence[tuple[Detector, str | Path]]) -> None:
        """Fan out every job's shards through map_fn; raises DatasetError for a split that cannot be read."""
        plan = []
        for detector, data in jobs:
            key = _key(detector, data)
            dataset = load_dataset(key[1])
            count = len(dataset.images)
            shards = [EvalShard(key[0], key[1], start, min(start + self.shard_images, count), threads=self.threads)
                      for start in range(0, count, self.shard_images)]
            plan.append((detector, key, dataset.names, shards))
        results = iter(list(self.map_fn(run_shard, [s for *_, shards in plan for s in shards])))
        for detector, key, names, shards in plan:
            parts = [next(results) for _ in shards]
            failed = next((p.error for p in parts if p.error), None)
            if failed:
                self._done[key] = _error(failed)
                continue
            images = [image for part in parts for image in part.images]
            seconds = sum(p.seconds for p in parts)
            self._done[key] = (score(detector, names, images, rate=len(images) / seconds if seconds else 0.0), images)

    def get(self, detector: Detector, data: str | Path) -> tuple[EvalResult, list[ImageEval]]:
        """The computed (result, per-image evals) of `detector` on `data`; raises its stored error."""
        done = self._done.get(_key(detector, data))
        if done is None:
            from edgeport.evaluate import evaluate_with_predictions

            return evaluate_with_predictions(detector, data, progress=False)
        if isinstance(done, EdgeportError):
            raise done
        return done


def _key(detector: Detector, data: str | Path) -> tuple[str, str]:
    """Absolute paths: a task may run in another working directory, or on another node."""
    return str(Path(detector.path).resolve()), str(Path(data).resolve())
