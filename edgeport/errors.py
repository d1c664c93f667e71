"""Every error edgeport raises on purpose, each with a message a user can act on.

The CLI prints any `EdgeportError` as one line and exits with status 2.
"""

from __future__ import annotations


class EdgeportError(Exception):
    """Base class of every error edgeport raises on purpose."""


class MissingDependencyError(EdgeportError):
    """An optional package (an interpreter, the converter stack) is not installed."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(f"{package} is not installed; install it with: pip install 'edgeport[{extra}]'")
        self.package = package
        self.extra = extra


# --- images -----------------------------------------------------------------------------------


class ImageError(EdgeportError):
    """An image could not be turned into pixels."""


class ImageNotFoundError(ImageError):
    """The image path does not exist or is not a file."""


class EmptyImageError(ImageError):
    """The image file or buffer holds zero bytes."""


class NotAnImageError(ImageError):
    """The bytes are not in any supported image format (JPEG, PNG, BMP, WebP, TIFF, GIF)."""


class CorruptImageError(ImageError):
    """The bytes start like an image but are truncated or damaged."""


class ImageTooLargeError(ImageError):
    """The image holds more pixels than the configured limit (a decompression-bomb guard)."""


class UnsupportedImageError(ImageError):
    """An array or PIL image of a shape, dtype or mode the runtime cannot use."""


# --- models and artifacts ---------------------------------------------------------------------


class ModelError(EdgeportError):
    """A model or artifact cannot be used."""


class ModelNotFoundError(ModelError):
    """The model path does not exist."""


class CorruptModelError(ModelError):
    """The interpreter could not load the file: truncated, damaged or not a model."""


class MetadataMissingError(ModelError):
    """The artifact has no edgeport metadata record and no Ultralytics metadata to derive one from."""


class ArtifactMismatchError(ModelError):
    """The metadata record disagrees with the file it describes."""


class UnsupportedModelError(ModelError):
    """The file is a model, but not one edgeport can convert or run (format, task, layout)."""


class BackendError(EdgeportError):
    """No backend can run this artifact, or the chosen one is unknown."""


# --- data, conversion, configuration -----------------------------------------------------------


class DatasetError(EdgeportError):
    """A dataset description (DATA.yaml) or its labels cannot be read."""


class ConversionError(EdgeportError):
    """A converter failed; the message names the target and the step."""


class ConfigError(EdgeportError):
    """A configuration key or value is wrong; the message names the key."""


class SourceError(EdgeportError):
    """An `edgeport analyze` source cannot be read (missing, not a video, an empty folder or list)."""


class ClusterError(EdgeportError):
    """Ray could not be reached or started at the given address, or a Ray job failed."""
