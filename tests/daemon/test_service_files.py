"""The systemd unit and the example configuration shipped in edgeport/devices/daemon/."""

from __future__ import annotations

import configparser
from pathlib import Path

import edgeport.devices.daemon as service_files
from edgeport.daemon.config import parse_config

FOLDER = Path(service_files.__file__).parent


def test_unit_is_type_notify_with_watchdog_and_runs_the_daemon():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read(FOLDER / "edgeport.service")
    service = unit["Service"]
    assert service["Type"] == "notify" and int(service["WatchdogSec"]) > 0
    assert service["Restart"] == "always" and service["KillSignal"] == "SIGTERM"
    assert " daemon --config " in service["ExecStart"]


def test_example_configuration_is_valid(tmp_path):
    text = (FOLDER / "edgeport.yaml").read_text()
    model = tmp_path / "model.tflite"
    model.write_bytes(b"x")
    config = parse_config(text.replace("/var/lib/edgeport/models/model_full_integer_int8.tflite", str(model)))
    assert [c.id for c in config.cameras] == ["driveway", "door"]
    assert config.http.host == "127.0.0.1" and config.mqtt.home_assistant.enabled
