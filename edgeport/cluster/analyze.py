"""`edgeport analyze --ray`: Ray Data reads the sources as blocks (frame ranges of a video, slices of a
folder or list), an actor pool of Detectors runs `map_batches`, the driver writes each source in order."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from edgeport.analyze.results import LinesWriter
from edgeport.analyze.run import AnalyzeOptions, Outcome, detect_lines
from edgeport.analyze.sources import Frame, Source
from edgeport.errors import ClusterError

# An actor reserves half a CPU: when a node is lost, its actors restart on the survivors (which then run
# two per core) instead of waiting for a node that may never come back. Decode tasks reserve none: they
# overlap inference, as the in-process reader thread does.
ACTOR_CPUS = 0.5
READ_CPUS = 0.0


def _frames_block(source_id: int, frames: list[Frame]) -> dict[str, np.ndarray]:
    pixels = np.empty(len(frames), dtype=object)
    pixels[:] = [f.rgb if f.rgb is not None else np.zeros((0, 0, 3), np.uint8) for f in frames]
    return {"source": np.full(len(frames), source_id, np.int64), "index": np.array([f.index for f in frames], np.int64),
            "t": np.array([np.nan if f.t is None else f.t for f in frames], np.float64),
            "image": np.array([f.image or "" for f in frames], dtype=object),
            "error": np.array([f.error or "" for f in frames], dtype=object), "rgb": pixels}


def _frames_of(batch: dict[str, np.ndarray]) -> list[Frame]:
    frames = []
    for i in range(len(batch["index"])):
        t, error, image = float(batch["t"][i]), str(batch["error"][i]), str(batch["image"][i])
        frames.append(Frame(int(batch["index"][i]), None if np.isnan(t) else t,
                            None if error else np.asarray(batch["rgb"][i]), image or None, error or None))
    return frames


def frame_datasource(sources: list[Source], options: AnalyzeOptions, block_frames: int) -> Any:
    """A Ray Data datasource with one read task per block of `block_frames` frames of one source."""
    from ray.data.block import BlockAccessor, BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    class FrameDatasource(Datasource):
        def estimate_inmemory_data_size(self) -> None:
            return None

        def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                           data_context: Any = None) -> list:
            tasks = []
            for source_id, source in enumerate(sources):
                for start, stop in source.ranges(block_frames):
                    def read(source_id=source_id, source=source, start=start, stop=stop):
                        frames = list(source.read(start, stop, exif=options.exif, max_pixels=options.max_pixels))
                        yield BlockAccessor.batch_to_block(_frames_block(source_id, frames))

                    meta = BlockMetadata(num_rows=None, size_bytes=None, exec_stats=None,
                                         input_files=(source.path,))
                    tasks.append(ReadTask(read, meta, per_task_row_limit=per_task_row_limit))
            return tasks

    return FrameDatasource()


class DetectActor:
    """One Detector per actor; a batch is cut into the in-process batches (source, frame // batch)."""

    def __init__(self, options: AnalyzeOptions, threads: int, gpu: bool) -> None:
        backend_options = None
        if gpu and Path(options.model).suffix.lower() == ".onnx":
            backend_options = {"providers": ["cuda", "cpu"]}
        self.detector = options.open_detector(threads=threads, backend_options=backend_options)
        self.batch = options.batch

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        frames, sources = _frames_of(batch), batch["source"]
        lines: list[str] = []
        start = 0
        while start < len(frames):
            group = (sources[start], frames[start].index // self.batch)
            stop = start + 1
            while stop < len(frames) and (sources[stop], frames[stop].index // self.batch) == group:
                stop += 1
            lines += detect_lines(self.detector, frames[start:stop])
            start = stop
        return {"source": batch["source"], "index": batch["index"], "line": np.array(lines, dtype=object)}


def _pipeline(ray: Any, sources: list[Source], options: AnalyzeOptions, block_batches: int) -> Any:
    from edgeport.cluster.session import slots

    cpus, gpus = slots(ray)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # rows come back in source and frame order
    context.enable_progress_bars = False  # ours counts frames
    data = ray.data.read_datasource(frame_datasource(sources, options, options.batch * block_batches),
                                    num_cpus=READ_CPUS, compute=ray.data.TaskPoolStrategy(size=cpus))
    resources = {"num_gpus": 1, "num_cpus": 0} if gpus else {"num_cpus": ACTOR_CPUS}
    pool = ray.data.ActorPoolStrategy(size=gpus or cpus)  # one actor per CPU slot, or per GPU
    # Ray Data's actor pool restarts a lost actor and retries its batch (max_restarts=-1,
    # max_task_retries=-1 are its defaults); a lost read task or block is recomputed from its lineage.
    return data.map_batches(DetectActor, fn_constructor_args=(options, options.threads or 1, bool(gpus)),
                            batch_size=options.batch * block_batches if gpus else None, batch_format="numpy",
                            compute=pool, **resources)


def ray_engine(address: str | None, block_batches: int = 4):
    """The `analyze` engine that runs on Ray at `address` (None: this machine's Ray, or a new one)."""

    def engine(sources: list[Source], out: Path, options: AnalyzeOptions) -> Iterator[Outcome]:
        from edgeport.cluster.session import connect
        from edgeport.progress import Progress

        if not sources:
            return
        ray = connect(address)
        bar = Progress(sum(s.frames for s in sources), "analyze (ray)", enabled=options.progress)
        writers: dict[int, LinesWriter] = {}
        started: dict[int, float] = {}
        current = 0
        try:
            for batch in _pipeline(ray, sources, options, block_batches).iter_batches(batch_size=None,
                                                                                        batch_format="numpy"):
                for source_id, index, line in zip(batch["source"].tolist(), batch["index"].tolist(), batch["line"]):
                    while current < source_id:  # every earlier source is complete
                        yield _finish(sources, writers, started, current, out)
                        current += 1
                    if source_id not in writers:
                        writers[source_id] = LinesWriter(out, sources[source_id])
                        started[source_id] = time.perf_counter()
                    writers[source_id].write(index, str(line))
                bar.update(len(batch["index"]))
            while current < len(sources):
                yield _finish(sources, writers, started, current, out)
                current += 1
        except Exception as exc:  # the job failed on the cluster: the unfinished sources fail, nothing half-written
            for writer in writers.values():
                if writer.partial.exists():
                    writer.abandon()
            error = ClusterError(f"the Ray job failed: {type(exc).__name__}: {exc}")
            for source in sources[current:]:
                yield source, error

    return engine


def _finish(sources: list[Source], writers: dict[int, LinesWriter], started: dict[int, float], source_id: int,
            out: Path) -> Outcome:
    writer = writers.get(source_id) or LinesWriter(out, sources[source_id])
    writer.finish()
    return sources[source_id], time.perf_counter() - started.get(source_id, time.perf_counter())
