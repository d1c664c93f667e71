"""One builder of runtime options: threads, spinning, providers and device reach the engine from the Python API,
`detect`, `run` and the daemon, and an option a backend cannot honour is refused instead of ignored."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edgeport.errors import BackendError
from edgeport.runtime import Detector, RuntimeOptions


def session_settings(detector: Detector) -> tuple[list[str], int, str]:
    session = detector.backend._session
    options = session.get_session_options()
    return session.get_providers(), options.intra_op_num_threads, \
        options.get_session_config_entry("session.intra_op.allow_spinning")


def test_python_api_applies_threads_spin_and_providers(onnx_artifact):
    assert session_settings(Detector(onnx_artifact, threads=1, providers=["cpu"])) == (["CPUExecutionProvider"], 1, "0")
    assert session_settings(RuntimeOptions(threads=2, spin=True).open(onnx_artifact))[1:] == (2, "1")


def test_an_unavailable_provider_is_an_error_naming_the_installed_ones(onnx_artifact):
    with pytest.raises(BackendError, match="CPUExecutionProvider"):
        Detector(onnx_artifact, providers=["cuda"])


@pytest.mark.parametrize("options,backend,message", [
    (RuntimeOptions(providers=("cpu",)), "litert", "applies to .onnx artifacts"),
    (RuntimeOptions(device="usb:0"), "onnxruntime", "does not apply to the onnxruntime backend"),
])
def test_an_option_the_backend_lacks_is_refused(options, backend, message):
    with pytest.raises(BackendError, match=message):
        options.backend_kwargs(backend)


def test_device_reaches_the_edge_tpu_and_coreml_backends():
    assert RuntimeOptions(device="usb:1", threads=2).backend_kwargs("edgetpu") == {"threads": 2, "device": "usb:1"}
    assert RuntimeOptions(device="CPU_ONLY").backend_kwargs("coreml")["compute_units"] == "CPU_ONLY"


@pytest.mark.parametrize("command", ["detect", "run"])
def test_cli_honours_providers_in_detect_and_run(command, onnx_artifact, val_images):
    target = [str(val_images[0])] if command == "detect" else ["--source", str(val_images[0].parent),
                                                               "--max-frames", "1"]
    result = subprocess.run([sys.executable, "-m", "edgeport.cli", command, "--model", str(onnx_artifact), *target,
                             "--providers", "cuda"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "execution provider 'cuda' is not available" in result.stderr


def test_daemon_config_reaches_the_session(tmp_path, onnx_artifact, camera_video):
    from edgeport.daemon.config import parse_config
    from edgeport.daemon.service import Daemon

    config = parse_config(f"model: {onnx_artifact}\nthreads: 1\nproviders: [cpu]\nspin: true\n"
                          f"cameras: [{{id: c, source: {camera_video}}}]\nstate_dir: {tmp_path}/state\n")
    assert session_settings(Daemon(config).detector) == (["CPUExecutionProvider"], 1, "1")
