"""The accuracy comparison report: every artifact of a folder side by side, with robustness.

`build_report` evaluates a folder (report.md, report.html, report.json); the row helpers below
also serve `edgeport convert`'s short drop report.
"""

from edgeport.report.rows import (
    MEASURED,
    NOT_EXECUTABLE,
    PROXY,
    SKIPPED,
    ReportRow,
    calibration_text,
    compare,
    format_table,
    host_description,
    io_types,
    measure_latency,
    over_budget,
    report_row,
    write_report,
)

__all__ = ["MEASURED", "NOT_EXECUTABLE", "PROXY", "SKIPPED", "ReportRow", "build_report", "calibration_text",
           "compare", "format_table", "host_description", "io_types", "measure_latency", "over_budget",
           "report_row", "write_report"]


def build_report(*args, **kwargs):
    """See edgeport.report.build.build_report."""
    from edgeport.report.build import build_report as build

    return build(*args, **kwargs)
