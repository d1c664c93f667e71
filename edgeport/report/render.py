"""report.md, report.html (self-contained: inline CSS, images embedded, no script) and report.json, all
from one Report: summary, examples, the tables grouped by target, robustness."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import TYPE_CHECKING

from edgeport.report.rows import (
    EMULATED_MARK,
    MEASURED,
    NOT_MEASURED,
    PROXY,
    SKIPPED,
    ReportRow,
    artifact_name,
    is_emulated,
    number,
)
from edgeport.report.summary import RULE, points, Recommendation, summarize

if TYPE_CHECKING:
    from edgeport.report.model import Report

COLUMNS = ("artifact", "status", "precision", "I/O", "size MB", "mAP50-95 / mAP50", "drop pts",
           "worst class (drop pts)", "agreement / score shift", "p50 / p99 ms", "measured on")
WIDTHS = (19, 14, 6, 10, 5, 8, 5, 8, 8, 7, 10)  # percent of the page width, per column
SUMMARY_COLUMNS = ("device", "recommended artifact", "precision", "drop pts", "p50 ms", "size MB", "why", "measured")


def _status(row: ReportRow, report: "Report") -> str:
    text = "baseline" if row.baseline else row.status
    if row.status == PROXY:
        text = f"proxy: {row.proxy}"
    elif row.status not in (MEASURED, PROXY):
        text = row.note if row.note.startswith(row.status) else f"{row.status}: {row.note}"
    if row.over_budget:
        text = f"OVER BUDGET (drop > {report.max_drop:g}); {text}"
    return text


def table_cells(row: ReportRow, report: "Report") -> list[str]:
    """The artifact table's cells of one row, as text."""
    worst = "-" if row.worst_class is None or row.baseline else f"{row.worst_class} ({row.worst_class_drop:+.2f})"
    latency = "-" if row.latency_ms_p50 is None else f"{row.latency_ms_p50:.1f} / {row.latency_ms_p99:.1f}"
    agreement = "-" if row.agreement is None else f"{row.agreement:.1%} / {number(row.score_shift, '+.4f', row)}"
    if row.status not in (MEASURED, PROXY):
        worst = latency = agreement = NOT_MEASURED
    elif is_emulated(row):
        latency = "n/a (qemu)"  # emulated timings are not the device's
    elif row.status == PROXY and row.latency_ms_p50 is None:
        latency = f"{NOT_MEASURED} (proxy)"
    maps = NOT_MEASURED if row.map50_95 is None and row.status not in (MEASURED, PROXY) else \
        f"{number(row.map50_95, '.4f', row)} / {number(row.map50, '.4f', row)}"
    name = artifact_name(row.artifact) + (f" {EMULATED_MARK}" if is_emulated(row) else "")
    return [name, _status(row, report), row.precision, row.io, f"{row.size_bytes / 1e6:.1f}",
            maps, number(row.drop_map50_95, "+.2f", row), worst, agreement, latency, row.measured_on]


def summary_cells(rec: Recommendation) -> list[str]:
    row = rec.row
    if row is None:
        return [rec.device, "none", "-", "-", "-", "-", rec.why, rec.caveat]
    proxy = f" (proxy: {row.proxy})" if rec.is_proxy else ""
    latency = "-" if rec.latency_ms_p50 is None else f"{rec.latency_ms_p50:.1f}"
    if rec.latency_ms_p50 is not None and is_emulated(row):
        latency += " (this host)"
    return [rec.device, artifact_name(row.artifact) + proxy, row.precision, f"{row.drop_map50_95:+.2f}", latency,
            f"{row.size_bytes / 1e6:.1f}", rec.why, f"{row.measured_on}; {rec.caveat}"]


def robustness_cells(row: ReportRow, names: list[str], baseline: ReportRow) -> list[str]:
    """mAP50-95 under each perturbation, its drop from the row's clean mAP, and that drop minus the baseline's."""
    cells = [artifact_name(row.artifact)]
    for name in names:
        entry, base = row.robustness.get(name, {}), baseline.robustness.get(name, {})
        if entry.get("map50_95") is None:
            cells.append("not computed")
            continue
        text = f"{entry['map50_95']:.4f} ({-entry['drop']:+.2f})"
        if not row.baseline and base.get("drop") is not None:
            text += f" [{entry['drop'] - base['drop']:+.2f} vs float]"
        cells.append(text)
    return cells


def groups(report: "Report") -> list[tuple[str, list[ReportRow]]]:
    """The rows that are not skipped, by target, in the order the targets first appear (baseline first)."""
    out: dict[str, list[ReportRow]] = {}
    for row in report.rows:
        if row.status != SKIPPED:
            out.setdefault(row.target, []).append(row)
    return list(out.items())


def _intro(report: "Report") -> list[tuple[str, str]]:
    return [("folder", str(report.directory)), ("data", f"{report.data} ({report.images} val images)"),
            ("baseline", f"{report.baseline} (float; drops are its mAP minus the artifact's, in points)"),
            ("host", report.host), ("created", report.created)] + (
        [("--max-drop", f"{report.max_drop:g} points of mAP50-95: "
          + (", ".join(artifact_name(r.artifact) for r in report.failing) + " over budget" if report.failing
             else "every measured artifact within budget"))] if report.max_drop is not None else [])


NOTES = [
    "mAP50-95 / mAP50: COCO protocol through the edgeport runtime, as `edgeport evaluate` computes them.",
    "agreement: share of the baseline's detections at score >= 0.25 that the artifact also finds "
    "(same class, IoU >= 0.5); score shift: mean score change of those matched detections.",
    "latency: decoded image to Detections where the row was measured (measured on), p50 / p99 over 30 runs; "
    "not reported for a proxy.",
    f"{EMULATED_MARK}: measured inside the emulated Raspberry Pi (arm64 under qemu-user, `report --arm64`): the "
    "accuracy of the Pi's arm64 interpreters; a latency under qemu is not a Pi's latency, so none is shown "
    "(the summary ranks such a row by the same file's latency on this host, and says so).",
    "robustness: mAP50-95 on perturbed copies of the same val images; in parentheses its change from the "
    "artifact's own clean mAP50-95 (points); [vs float]: the artifact's drop minus the float baseline's "
    "drop under the same perturbation (> 0: the artifact is more brittle than the float model).",
    "An artifact this host cannot execute is measured through the proxy its record names, labelled as "
    "such, or shows 'not measured'; it is never counted as within --max-drop.",
]


def _md_table(header, body) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |" for cells in body]
    return "\n".join(lines)


def markdown(report: "Report") -> str:
    """The report as Markdown: summary, examples (named; drawn in report.html), tables, robustness."""
    out = ["# edgeport accuracy report", ""] + [f"- **{k}**: {v}" for k, v in _intro(report)]
    out += ["", "## Summary", "", f"Budget: {points(report.budget)} of mAP50-95. {RULE}", ""]
    out += [_md_table(SUMMARY_COLUMNS, [summary_cells(r) for r in summarize(report)]), ""]
    if report.examples:
        out += ["## Examples", "", "Val images where the int8 artifacts disagree most with the float model "
                "(drawn side by side in report.html):", ""]
        out += [f"- `{Path(e.image).name}`: {e.disagreement} detections differ; "
                + ", ".join(f"{k}: {v}" for k, v in e.counts.items()) for e in report.examples] + [""]
    out += ["## Artifacts", ""]
    for target, rows in groups(report):
        out += [f"### {target}", "", _md_table(COLUMNS, [table_cells(r, report) for r in rows]), ""]
    names = [p["name"] for p in report.perturbations]
    if names:
        body = [robustness_cells(r, names, report.rows[0]) for r in report.rows if r.robustness]
        out += ["## Robustness", "", _md_table(["artifact"] + names, body), ""]
        out += [f"- **{p['name']}**: {p['description']}; seed {p['seed'] if p['seed'] is not None else 'none (deterministic)'}"
                f"; {p['status']}" for p in report.perturbations] + [""]
    coral = [r for r in report.rows if r.edgetpu]
    if coral:
        out += ["## Edge TPU mapping", "", _md_table(["artifact", "model", "mapping"], [
            [artifact_name(r.artifact), r.family or "?", r.edgetpu] for r in coral]), ""]
    skipped = [r for r in report.rows if r.status == SKIPPED]
    if skipped:
        out += ["## Skipped files", ""] + [f"- `{artifact_name(r.artifact)}`: {r.note}" for r in skipped] + [""]
    out += ["## How to read it", ""] + [f"- {n}" for n in NOTES] + [""]
    return "\n".join(out)


def write_all(report: "Report") -> list[Path]:
    """Write report.md, report.html and report.json into the report's folder (each replaced whole)."""
    from edgeport.report.page import html_page

    report.apply_budget()
    directory = report.directory
    paths = [directory / "report.md", directory / "report.html", directory / "report.json"]
    paths[0].write_text(markdown(report))
    paths[1].write_text(html_page(report))
    paths[2].write_text(json.dumps(report.to_dict(), indent=2))
    return paths


def png_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


escape = html.escape
