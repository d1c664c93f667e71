"""The configuration file: validated as a whole, errors name the key and its line."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from edgeport.daemon.config import json_schema, load_config, parse_config
from edgeport.errors import ConfigError


def _write(tmp_path, text: str):
    (tmp_path / "model.onnx").write_bytes(b"placeholder")  # existence is all the config checks
    path = tmp_path / "edgeport.yaml"
    path.write_text(text)
    return path


GOOD = """\
model: model.onnx
cameras:
  - id: front
    source: videos/front.mp4
    loop: true
  - id: door
    source: rtsp://10.0.0.5/stream
mqtt:
  host: broker.local
  home_assistant: {enabled: true}
http:
  port: 9000
"""


def test_valid_config_resolves_relative_paths_and_defaults(tmp_path):
    config = load_config(_write(tmp_path, GOOD))
    assert config.model == tmp_path / "model.onnx"
    assert config.cameras[0].source == str(tmp_path / "videos/front.mp4")
    assert config.cameras[1].source == "rtsp://10.0.0.5/stream"  # URLs are not paths
    assert config.http.host == "127.0.0.1"  # binds loopback unless told otherwise
    assert config.mqtt.port == 1883 and config.mqtt.home_assistant.enabled


def test_unknown_key_is_named_with_its_line(tmp_path):
    text = GOOD.replace("    loop: true\n", "    loop: true\n    fsp: 5\n")
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text))
    message = str(info.value)
    assert "line 6" in message and "cameras.0.fsp" in message and "unknown key" in message


def test_wrong_value_is_named_with_its_line(tmp_path):
    text = GOOD.replace("  port: 9000", "  port: ninety")
    with pytest.raises(ConfigError, match=r"line 12: http\.port"):
        load_config(_write(tmp_path, text))


def test_every_problem_is_reported_at_once(tmp_path):
    text = GOOD.replace("  port: 9000", "  port: 70000").replace("id: door", "id: front")
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text))
    assert "http.port" in str(info.value) and "repeated: front" in str(info.value)


def test_missing_model_and_missing_cameras(tmp_path):
    with pytest.raises(ConfigError, match="model file not found"):
        parse_config("model: nowhere.onnx\ncameras: [{id: a, source: 0}]\n")
    with pytest.raises(ConfigError, match="cameras: required key is missing"):
        load_config(_write(tmp_path, "model: model.onnx\n"))


def test_not_yaml_and_not_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_write(tmp_path, "model: [unclosed\n"))
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(_write(tmp_path, "- just\n- a list\n"))


def test_schema_describes_every_section():
    schema = json_schema()
    assert set(schema["properties"]) >= {"model", "cameras", "mqtt", "http", "jsonl", "events", "watchdog"}
    assert schema["additionalProperties"] is False


def test_cli_check_and_schema(tmp_path, onnx_artifact):
    path = _write(tmp_path, GOOD.replace("broker.local", "127.0.0.1"))
    (tmp_path / "model.onnx").write_bytes(onnx_artifact.read_bytes())  # its record is embedded
    ok = subprocess.run([sys.executable, "-m", "edgeport.cli", "daemon", "--config", str(path), "--check"],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "valid" in ok.stdout and "front" in ok.stdout and "opened with onnxruntime" in ok.stdout
    assert "spool" in ok.stdout and "mqtt 127.0.0.1:1883" in ok.stdout
    bad = _write(tmp_path, GOOD + "extra_key: 1\n")
    failed = subprocess.run([sys.executable, "-m", "edgeport.cli", "daemon", "--config", str(bad), "--check"],
                            capture_output=True, text=True)
    assert failed.returncode == 2
    assert failed.stderr.startswith("edgeport: error:") and "line 13: extra_key" in failed.stderr
    schema = subprocess.run([sys.executable, "-m", "edgeport.cli", "daemon", "--schema"], capture_output=True,
                            text=True)
    assert json.loads(schema.stdout)["title"] == "DaemonConfig"


def test_cli_check_opens_the_model_and_refuses_a_broken_one(tmp_path):
    path = _write(tmp_path, GOOD.replace("broker.local", "127.0.0.1"))  # model.onnx holds 11 bytes of text
    done = subprocess.run([sys.executable, "-m", "edgeport.cli", "daemon", "--config", str(path), "--check"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "model" in done.stderr and "model.onnx" in done.stderr
    assert "rtsp://10.0.0.5/stream" in done.stdout  # what was found is printed before the error


def test_check_redacts_camera_credentials(tmp_path):
    path = _write(tmp_path, GOOD.replace("rtsp://10.0.0.5", "rtsp://admin:S3cret@10.0.0.5"))
    done = subprocess.run([sys.executable, "-m", "edgeport.cli", "daemon", "--config", str(path), "--check"],
                          capture_output=True, text=True)
    assert "S3cret" not in done.stdout + done.stderr and "rtsp://***@10.0.0.5/stream" in done.stdout


@pytest.mark.parametrize(("text", "expected"), [
    ("model: model.onnx\nmodel: other.onnx\ncameras: [{id: a, source: 0}]\n", "line 2: duplicate key 'model' "
                                                                               "(first given at line 1)"),
    ("model: model.onnx\ncameras:\n  - id: a\n    source: 0\n    id: b\n", "line 5: duplicate key 'id'"),
])
def test_duplicate_keys_are_refused_with_key_and_line(tmp_path, text, expected):
    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_config(_write(tmp_path, text))


@pytest.mark.parametrize("depth", [30, 100_000])
def test_deep_nesting_is_a_clear_error_not_a_traceback(tmp_path, depth):
    text = "model: model.onnx\ncameras: [{id: a, source: 0}]\nevents: " + "[" * depth + "]" * depth + "\n"
    with pytest.raises(ConfigError, match="nested"):
        load_config(_write(tmp_path, text))
