"""The analyze job: which sources still need work, the in-process engine (batched, decode in a reader
thread), and the steps both engines share (one batch of frames -> JSON lines, summary, annotated video)."""

from __future__ import annotations

import queue
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from edgeport.analyze.results import (
    LinesWriter,
    SourceSummary,
    frame_line,
    is_done,
    lines_path,
    summarize,
    write_annotated_video,
    write_summary,
)
from edgeport.analyze.sources import Frame, Source, SourceError, open_source, output_names
from edgeport.errors import EdgeportError
from edgeport.runtime.image_io import DEFAULT_MAX_PIXELS

# What an engine reports per source: the seconds it took, or the error that stopped it.
Outcome = tuple[Source, "float | EdgeportError"]
Engine = Callable[[list[Source], Path, "AnalyzeOptions"], Iterator[Outcome]]


@dataclass(frozen=True)
class AnalyzeOptions:
    """The model and how to run it; the same on every engine so that the lines are identical."""

    model: str
    batch: int = 16
    conf: float = 0.25
    iou: float = 0.45
    max_det: int = 300
    threads: int | None = None
    backend: str | None = None
    exif: bool = True
    max_pixels: int = DEFAULT_MAX_PIXELS
    save_video: bool = False
    overlap: bool = True  # decode in a reader thread while the detector runs
    progress: bool = True

    def open_detector(self, threads: int | None = None, backend_options: dict | None = None):
        """The runtime Detector for these options (`threads` overrides, e.g. one per Ray actor)."""
        from edgeport.runtime import Detector

        return Detector(self.model, backend=self.backend, threads=threads or self.threads, conf=self.conf,
                        iou=self.iou, max_det=self.max_det, exif=self.exif, max_pixels=self.max_pixels,
                        backend_options=backend_options)

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("overlap", "progress")}


def detect_lines(detector, frames: Sequence[Frame]) -> list[str]:
    """The JSON lines of frames of one source, in order: the decoded ones detected in one batch."""
    decoded = [f for f in frames if f.rgb is not None]
    found = iter(detector.detect_rgb([f.rgb for f in decoded]))
    return [frame_line(f, next(found) if f.rgb is not None else None) for f in frames]


def batches(frames: Iterable[Frame], size: int) -> Iterator[list[Frame]]:
    """Consecutive frames in lists of `size` (frame index // size is the batch of a frame)."""
    batch: list[Frame] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def prefetched(items: Iterator, depth: int = 2) -> Iterator:
    """Iterate `items` from a reader thread, `depth` items ahead; its exceptions are raised here."""
    done = object()
    ahead: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def read() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        ahead.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            ahead.put((done, None))
        except BaseException as exc:  # handed to the consumer
            ahead.put((done, exc))

    reader = threading.Thread(target=read, name="analyze-reader", daemon=True)
    reader.start()
    try:
        while True:
            item, error = ahead.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()
        reader.join(timeout=5)


def analyze_in_process(sources: list[Source], out: Path, options: AnalyzeOptions) -> Iterator[Outcome]:
    """The in-process engine: one Detector, batches of `options.batch`, decode overlapped when asked."""
    from edgeport.progress import Progress

    detector = options.open_detector()
    bar = Progress(sum(s.frames for s in sources), "analyze", enabled=options.progress)
    for source in sources:
        writer = LinesWriter(out, source)
        start = time.perf_counter()
        frames = batches(source.read(exif=options.exif, max_pixels=options.max_pixels), options.batch)
        try:
            for batch in prefetched(frames) if options.overlap else frames:
                for frame, line in zip(batch, detect_lines(detector, batch)):
                    writer.write(frame.index, line)
                bar.update(len(batch))
        except EdgeportError as exc:
            writer.abandon()
            yield source, exc
            continue
        writer.finish()
        yield source, time.perf_counter() - start


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _open_all(paths: Sequence[str | Path], say: Callable[[str], None]) -> list[Source | SourceSummary]:
    """Each path as a Source, or as the failed summary saying why it cannot be read (argument order kept)."""
    opened: list[Source | SourceSummary] = []
    for path, name in zip(paths, output_names(list(paths))):
        try:
            opened.append(open_source(path, name))
        except SourceError as exc:
            say(f"edgeport: error: {exc}")
            opened.append(SourceSummary(str(path), "unknown", status="failed", error=str(exc)))
    return opened


def analyze(paths: Sequence[str | Path], out: str | Path, options: AnalyzeOptions, engine: Engine | None = None,
            say: Callable[[str], None] = _say, extra: dict | None = None) -> list[SourceSummary]:
    """Analyze every source into `out`; return one summary per source (status "failed" with its error
    for a source that could not be read; the others go on). Sources finished by an earlier run are skipped."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    opened = _open_all(paths, say)
    sources = [s for s in opened if isinstance(s, Source)]
    todo = [s for s in sources if not lines_path(out, s).is_file()]
    summaries: dict[str, SourceSummary] = {}
    for source in sources:
        if lines_path(out, source).is_file():
            say(f"analyze: {source.path}: already done ({lines_path(out, source).name}), skipped")
            summaries[source.name] = summarize(source, out, "already done", None)
    for source, outcome in (engine or analyze_in_process)(todo, out, options):
        if isinstance(outcome, EdgeportError):
            say(f"edgeport: error: {source.path}: {outcome}")
            summaries[source.name] = SourceSummary(source.path, source.kind, status="failed", error=str(outcome))
        else:
            summaries[source.name] = summarize(source, out, "done", outcome)
    if options.save_video:
        _annotate(sources, out, options, summaries, say)
    rows = [summaries[s.name] if isinstance(s, Source) else s for s in opened]
    write_summary(out, rows, {"model": str(options.model), **options.to_dict(), **(extra or {})})
    return rows


def _annotate(sources: list[Source], out: Path, options: AnalyzeOptions, summaries: dict[str, SourceSummary],
              say: Callable[[str], None]) -> None:
    from edgeport.runtime import Detector

    names = None
    for source in sources:
        if source.kind != "video" or summaries[source.name].status == "failed" or is_done(out, source, True):
            continue
        names = names or Detector(options.model, backend=options.backend, threads=1).names
        say(f"analyze: drawing {write_annotated_video(source, out, names)}")
