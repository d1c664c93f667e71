"""Detection over many images (a folder, a list of frames) with the cores kept busy: the next image is
decoded while the current one is invoked, or several single-thread interpreters run side by side.
"""

from __future__ import annotations

import queue
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Callable, Iterable, Iterator, Sequence

from edgeport.errors import ImageError
from edgeport.runtime.detections import Detections
from edgeport.runtime.detector import Detector
from edgeport.runtime.image_io import ImageSource


def detect_stream(detectors: Sequence[Detector], images: Iterable[ImageSource],
                  ) -> Iterator[tuple[ImageSource, Detections | ImageError]]:
    """Yield (image, Detections) in input order; an image that cannot be read yields its ImageError instead,
    and the others go on. One detector: the next image is decoded in a second thread while this one is
    invoked. Several (open each with `threads=1`): one worker thread per detector, each decoding its next
    image while the others invoke. At most 2 images per worker are in flight (decoded pixels never pile up)."""
    if len(detectors) == 1:
        yield from _prefetched(detectors[0], images)
        return
    free: queue.Queue[Detector] = queue.Queue()
    for detector in detectors:
        free.put(detector)

    def run(image: ImageSource) -> Detections:
        detector = free.get()
        try:
            return detector.detect(image)  # large JPEGs decoded at reduced scale, boxes in full-image pixels
        finally:
            free.put(detector)

    with ThreadPoolExecutor(len(detectors), thread_name_prefix="detect") as pool:
        yield from _in_order(((image, pool.submit(run, image)) for image in images), 2 * len(detectors),
                             lambda image, future: future.result())


def _prefetched(detector: Detector, images: Iterable[ImageSource]):
    def finish(image: ImageSource, future: Future) -> Detections:
        pixels, reduction = future.result()
        found = detector.detect_rgb([pixels])[0]
        return found if reduction.factor == 1 else replace(found, xyxy=reduction.to_original(found.xyxy),
                                                           image_hw=reduction.original_hw)

    with ThreadPoolExecutor(1, thread_name_prefix="decode") as pool:
        yield from _in_order(((image, pool.submit(detector.load_for_model, image)) for image in images), 2, finish)


def _in_order(submitted: Iterator[tuple[ImageSource, Future]], window_size: int,
              finish: Callable[[ImageSource, Future], Detections]):
    window: deque[tuple[ImageSource, Future]] = deque()

    def pop():
        image, future = window.popleft()
        try:
            return image, finish(image, future)
        except ImageError as exc:
            return image, exc

    for item in submitted:
        window.append(item)
        if len(window) >= window_size:
            yield pop()
    while window:
        yield pop()
