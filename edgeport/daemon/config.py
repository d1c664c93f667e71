"""The daemon's configuration file: typed, validated as a whole before anything starts.

`load_config` returns a `DaemonConfig` or raises ConfigError naming the key and its line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edgeport.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Reconnect(_Strict):
    """Exponential backoff with jitter between attempts to reopen a failed source."""

    initial_s: float = Field(0.5, gt=0, description="first wait after a failure")
    max_s: float = Field(30.0, gt=0, description="cap of the wait")
    factor: float = Field(2.0, ge=1, description="growth of the wait per failed attempt")
    jitter: float = Field(0.2, ge=0, le=1, description="random share added to or taken from each wait")
    max_attempts: Optional[int] = Field(None, ge=1, description="give up (state 'failed') after this many; "
                                                                "null: retry for ever")


class Camera(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="name used in topics and URLs")
    source: Union[int, str] = Field(description="V4L2 index or device path, rtsp:// or http(s):// URL, video file, "
                                                "image folder, 'picamera2' or 'picamera2:N', 'csi' or 'csi:N'")
    type: Literal["auto", "v4l2", "url", "file", "folder", "picamera2", "csi"] = "auto"
    loop: bool = Field(False, description="file and folder sources: start again at the end")
    policy: Optional[Literal["latest", "every"]] = Field(
        None, description="latest: only the newest frame is kept (a slow model never builds a queue); every: no "
                          "frame is skipped (files). Default: every for files and folders, latest otherwise")
    fps: Optional[float] = Field(None, gt=0, description="cap on frames read per second")
    timeout_s: float = Field(5.0, gt=0, description="streams: open and read timeout before a reconnect")
    width: Optional[int] = Field(None, gt=0)
    height: Optional[int] = Field(None, gt=0)
    reconnect: Reconnect = Field(default_factory=Reconnect)


class Tls(_Strict):
    ca_certs: Optional[Path] = None
    certfile: Optional[Path] = None
    keyfile: Optional[Path] = None
    insecure: bool = Field(False, description="skip the broker hostname check (self-signed test brokers)")


class HomeAssistant(_Strict):
    enabled: bool = False
    discovery_prefix: str = "homeassistant"


class Mqtt(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    client_id: Optional[str] = None
    username: Optional[str] = None
    password: Optional[str] = None
    tls: Optional[Tls] = None
    keepalive: int = Field(30, ge=5)
    topic_prefix: str = Field("edgeport", pattern=r"^[^#+]+$")
    detections_max_hz: float = Field(2.0, gt=0, description="per camera; frames in between are not published")
    qos: Literal[0, 1, 2] = 1
    home_assistant: HomeAssistant = Field(default_factory=HomeAssistant)
    queue_max_events: int = Field(10_000, ge=1, description="store-and-forward capacity while the broker is down")


class Batching(_Strict):
    """POST /detect under load: admission, then uploads queue and run in batches (as Triton's dynamic batcher)."""

    enabled: bool = Field(False, description="true: queued uploads share model invokes (pays where an invoke of N "
                                             "images costs less than N invokes: measure with benchmarks/serve.py); "
                                             "false: one invoke per upload (admission still applies)")
    max_batch: int = Field(4, ge=1, description="images per model invoke at most")
    max_queue_delay_ms: float = Field(5.0, ge=0, description="wait after the oldest queued upload for a fuller batch")
    max_queue: int = Field(64, ge=1, description="uploads admitted at once (read, decoded or queued); "
                                                 "beyond: 503 with Retry-After")
    deadline_ms: float = Field(10_000, gt=0, description="from admission to the answer; past it: 504")
    decode_workers: int = Field(2, ge=1, description="uploads decoded at once")
    max_inflight_bytes: int = Field(64_000_000, ge=1, description="upload bytes held at once; beyond: 503 with "
                                                                  "Retry-After (one upload is always admitted)")


class Http(_Strict):
    host: str = Field("127.0.0.1", description="bind address; 0.0.0.0 exposes the API to the network")
    port: int = Field(8080, ge=0, le=65535)
    token: Optional[str] = Field(None, description="bearer token required on every route but /health")
    max_upload_bytes: int = Field(10_000_000, ge=1)
    max_pixels: int = Field(40_000_000, ge=1, description="decompression-bomb guard for POST /detect")
    stream_fps: float = Field(5.0, gt=0)
    header_timeout_s: float = Field(10.0, gt=0, description="a connection must send a request's headers within this")
    body_timeout_s: float = Field(30.0, gt=0, description="an upload must arrive whole within this (else 408)")
    keep_alive_s: int = Field(5, ge=1, description="idle keep-alive connections are closed after this")
    max_connections: int = Field(512, ge=2, description="open connections; beyond, the oldest idle one is closed")
    batching: Batching = Field(default_factory=Batching)


class Jsonl(_Strict):
    path: Path
    max_bytes: int = Field(50_000_000, ge=1000, description="rotated to <path>.1 beyond this size")


class Events(_Strict):
    """Object appeared / left events from a small IoU tracker."""

    min_hits: int = Field(2, ge=1, description="frames an object must be seen before 'appeared'")
    max_misses: int = Field(5, ge=1, description="frames an object may be missing before 'left'")
    iou: float = Field(0.3, gt=0, lt=1)
    snapshots: bool = True
    max_snapshots: int = Field(200, ge=1, description="oldest snapshots are deleted beyond this count")


class Watchdog(_Strict):
    stall_s: float = Field(15.0, gt=0, description="an inference that runs longer is a stall: the service "
                                                   "manager is told (systemd WATCHDOG=trigger) and health fails")


class DaemonConfig(_Strict):
    model: Path
    backend: Optional[str] = None
    threads: Optional[int] = Field(None, ge=1, description="interpreter threads; default: every core but one "
                                                          "(left to capture, decode and HTTP)")
    device: Optional[str] = Field(None, description="Edge TPU device (usb:0) or CoreML compute units")
    providers: list[str] = Field(default_factory=list, description="onnxruntime execution providers in order "
                                                                   "(tensorrt, cuda, cpu)")
    spin: bool = Field(False, description="onnxruntime: idle worker threads spin-wait (slower with shared cores)")
    conf: float = Field(0.25, ge=0, le=1)
    iou: float = Field(0.45, gt=0, le=1)
    cameras: list[Camera] = Field(min_length=1)
    state_dir: Path = Field(Path("edgeport-state"), description="store-and-forward queue and event snapshots")
    mqtt: Optional[Mqtt] = None
    http: Optional[Http] = None
    jsonl: Optional[Jsonl] = None
    events: Events = Field(default_factory=Events)
    watchdog: Watchdog = Field(default_factory=Watchdog)
    sink_queue: int = Field(256, ge=1, description="frames each sink may hold before it drops (counted)")

    @field_validator("model")
    @classmethod
    def _model_exists(cls, value: Path) -> Path:
        if not value.is_file():
            raise ValueError(f"model file not found: {value}")
        return value

    @field_validator("cameras")
    @classmethod
    def _unique_ids(cls, cameras: list[Camera]) -> list[Camera]:
        ids = [camera.id for camera in cameras]
        duplicated = sorted({i for i in ids if ids.count(i) > 1})
        if duplicated:
            raise ValueError(f"camera ids must be unique; repeated: {', '.join(duplicated)}")
        return cameras


def json_schema() -> dict[str, Any]:
    """The JSON schema of the configuration file (`edgeport daemon --schema`)."""
    return DaemonConfig.model_json_schema()


def _node_at(root: yaml.Node | None, loc: tuple[Any, ...]) -> yaml.Node | None:
    """The deepest YAML node along `loc` (keys and list indices)."""
    node = root
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if match is None:
                return node
            node = match[0] if part == loc[-1] else match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            return node
    return node


def _key_line(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    node = _node_at(root, loc)
    return node.start_mark.line + 1 if node is not None else None


MAX_DEPTH = 16  # the schema nests 4 levels; anything far deeper is a mistake or an attack


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise ConfigError(f"line {line}: duplicate key {key!r} (first given at line {seen[key]}); "
                                  "keep one")
            if isinstance(key, (str, int, float, bool)):
                seen[key] = line
        return super().construct_mapping(node, deep)


def _check_depth(root: yaml.Node | None) -> None:
    """Raise ConfigError at the first node nested deeper than MAX_DEPTH (walked without recursion)."""
    stack = [(root, 1)] if root is not None else []
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ConfigError(f"line {node.start_mark.line + 1}: nested more than {MAX_DEPTH} levels deep; "
                              "the configuration needs at most 4 (see `edgeport daemon --schema`)")
        if isinstance(node, yaml.MappingNode):
            stack += [(value, depth + 1) for _, value in node.value]
        elif isinstance(node, yaml.SequenceNode):
            stack += [(value, depth + 1) for value in node.value]


def _load_yaml(text: str, name: str) -> tuple[yaml.Node | None, Any]:
    try:
        root = yaml.compose(text)
        _check_depth(root)
        return root, yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{name}: nested too deeply to read (more than {MAX_DEPTH} levels); the "
                          "configuration needs at most 4") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{name}: not valid YAML: {exc}") from exc


def parse_config(text: str, name: str = "<config>", base_dir: Path | None = None) -> DaemonConfig:
    """Validate a YAML text; relative paths are taken from `base_dir`. Raises ConfigError (key and line)."""
    root, data = _load_yaml(text, name)
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: the configuration must be a mapping of keys (model, cameras, ...)")
    if base_dir is not None:
        data = _resolve_paths(data, base_dir)
    try:
        return DaemonConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            # union members ("int", "str") and validator names ("function-after[...]") are not keys
            loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and (p in ("int", "str") or "[" in p)))
            key = ".".join(str(p) for p in loc) or "(top level)"
            line = _key_line(root, loc)
            where = f"line {line}: " if line else ""
            message = error["msg"]
            if error["type"] == "extra_forbidden":
                message = "unknown key (see `edgeport daemon --schema`)"
            elif error["type"] == "missing":
                message = "required key is missing"
            problem = f"{where}{key}: {message}"
            if problem not in problems:
                problems.append(problem)
        raise ConfigError(f"{name}: " + "; ".join(problems)) from None


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    data = dict(data)

    def fix(value: Any) -> Any:
        return str(base / value) if isinstance(value, str) and value and not Path(value).is_absolute() else value

    for key in ("model", "state_dir"):
        if key in data:
            data[key] = fix(data[key])
    if isinstance(data.get("jsonl"), dict) and "path" in data["jsonl"]:
        data["jsonl"] = {**data["jsonl"], "path": fix(data["jsonl"]["path"])}
    if isinstance(data.get("cameras"), list):
        cameras = []
        for camera in data["cameras"]:
            if isinstance(camera, dict) and isinstance(camera.get("source"), str):
                source = camera["source"]
                local = not any(source.startswith(p) for p in ("rtsp://", "rtsps://", "http://", "https://",
                                                                "/dev/", "picamera2", "csi"))
                if local and not source.isdigit():
                    camera = {**camera, "source": fix(source)}
            cameras.append(camera)
        data["cameras"] = cameras
    return data


def load_config(path: str | Path) -> DaemonConfig:
    """Read and validate a YAML (or JSON) configuration file. Raises ConfigError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read configuration {path}: {exc.strerror or exc}") from exc
    return parse_config(text, str(path), path.resolve().parent)


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2)
