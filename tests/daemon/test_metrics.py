"""The daemon's /metrics through prometheus_client, read back with the client's own parser."""

from __future__ import annotations

from edgeport.daemon.metrics import Metrics


def samples_of(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of a /metrics text, read by prometheus_client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_render_prometheus_text():
    from prometheus_client.parser import text_string_to_metric_families

    metrics = Metrics()
    metrics.frames.inc("front")
    metrics.frames.inc("front")
    for ms in (3, 30, 3000):
        metrics.inference_ms.observe(ms, "front")
    metrics.fps.bind(lambda: {("front",): 9.5})
    text = metrics.render()
    samples = samples_of(text)
    assert samples[("edgeport_frames_total", (("camera", "front"),))] == 2
    bucket = "edgeport_inference_milliseconds_bucket"
    assert samples[(bucket, (("camera", "front"), ("le", "5.0")))] == 1
    assert samples[(bucket, (("camera", "front"), ("le", "35.0")))] == 2
    assert samples[(bucket, (("camera", "front"), ("le", "+Inf")))] == 3
    assert samples[("edgeport_inference_milliseconds_count", (("camera", "front"),))] == 3
    assert samples[("edgeport_fps", (("camera", "front"),))] == 9.5
    kinds = {family.name: family.type for family in text_string_to_metric_families(text)}
    assert kinds["edgeport_inference_milliseconds"] == "histogram" and kinds["edgeport_frames"] == "counter"
    assert metrics.frames.value("front") == 2 and metrics.inference_ms.count("front") == 3
