"""The accuracy comparison report: artifacts side by side against the float baseline, with a summary,
examples and robustness; one builder (`build_report`) for `convert --data`, `report` and `quickstart`."""

from edgeport.report.rows import (
    MEASURED,
    NOT_EXECUTABLE,
    NOT_MEASURED,
    PROXY,
    SKIPPED,
    ReportRow,
    calibration_text,
    format_table,
    host_description,
    io_types,
    measure_latency,
)

__all__ = ["MEASURED", "NOT_EXECUTABLE", "NOT_MEASURED", "PROXY", "SKIPPED", "ReportRow", "build_report",
           "calibration_text", "format_table", "host_description", "io_types", "measure_latency"]


def build_report(*args, **kwargs):
    """See edgeport.report.build.build_report."""
    from edgeport.report.build import build_report as build

    return build(*args, **kwargs)
