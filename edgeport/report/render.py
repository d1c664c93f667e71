"""report.md, report.html (self-contained: inline CSS, plots as embedded SVG images) and report.json."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from edgeport.report.rows import artifact_name, MEASURED, PROXY, SKIPPED, ReportRow

if TYPE_CHECKING:
    from edgeport.report.build import Report

COLUMNS = ("artifact", "status", "target", "precision", "I/O", "size MB", "mAP50-95", "mAP50", "drop pts",
           "worst class (drop pts)", "agreement", "score shift", "p50 / p99 ms", "measured on")


def _fmt(value: float | None, spec: str, row: ReportRow) -> str:
    if value is not None:
        return format(value, spec)
    return "-" if row.status in (MEASURED, PROXY) else "not measured"


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
    """The main table's cells of one row, as text."""
    worst = "-" if row.worst_class is None or row.baseline else f"{row.worst_class} ({row.worst_class_drop:+.2f})"
    latency = "-" if row.latency_ms_p50 is None else f"{row.latency_ms_p50:.1f} / {row.latency_ms_p99:.1f}"
    agreement = "-" if row.agreement is None else f"{row.agreement:.1%}"
    if row.status not in (MEASURED, PROXY):
        worst = latency = agreement = "not measured"
    elif row.status == PROXY and row.latency_ms_p50 is None:
        latency = "not measured (proxy)"
    return [artifact_name(row.artifact), _status(row, report), row.target, row.precision, row.io,
            f"{row.size_bytes / 1e6:.1f}", _fmt(row.map50_95, ".4f", row), _fmt(row.map50, ".4f", row),
            _fmt(row.drop_map50_95, "+.2f", row), worst,
            agreement, _fmt(row.score_shift, "+.4f", row),
            latency, row.measured_on]


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
    "latency: decoded image to Detections on this host, p50 / p99 over 30 runs; not reported for a proxy.",
    "robustness: mAP50-95 on perturbed copies of the same val images; in parentheses its change from the "
    "artifact's own clean mAP50-95 (points); [vs float]: the artifact's drop minus the float baseline's "
    "drop under the same perturbation (> 0: the artifact is more brittle than the float model).",
    "An artifact this host cannot execute is measured through the proxy its record names, labelled as "
    "such, or shows 'not measured'; it is never counted as within --max-drop.",
]


def markdown(report: "Report") -> str:
    """The report as Markdown."""
    def table(header, body):
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |" for cells in body]
        return "\n".join(lines)

    rows = [r for r in report.rows if r.status != SKIPPED]
    out = ["# edgeport accuracy report", ""] + [f"- **{k}**: {v}" for k, v in _intro(report)] + ["", "## Artifacts", ""]
    out += [table(COLUMNS, [table_cells(r, report) for r in rows]), ""]
    names = [p["name"] for p in report.perturbations]
    baseline = report.rows[0]
    if names:
        out += ["## Robustness", "", table(["artifact"] + names, [robustness_cells(r, names, baseline) for r in rows
                                                                   if r.robustness]), ""]
        out += [f"- **{p['name']}**: {p['description']}; seed {p['seed'] if p['seed'] is not None else 'none (deterministic)'}"
                f"; {p['status']}" for p in report.perturbations] + [""]
    coral = [r for r in rows if r.edgetpu]
    if coral:
        out += ["## Edge TPU mapping", "", table(["artifact", "model", "mapping"], [
            [artifact_name(r.artifact), r.family or "?", r.edgetpu] for r in coral]), ""]
    skipped = [r for r in report.rows if r.status == SKIPPED]
    if skipped:
        out += ["## Skipped files", ""] + [f"- `{artifact_name(r.artifact)}`: {r.note}" for r in skipped] + [""]
    out += ["## How to read it", ""] + [f"- {n}" for n in NOTES] + [""]
    return "\n".join(out)


# ---- plots ------------------------------------------------------------------------------------


def _svg(draw: Callable[[Any], None], width: float = 7.0, height: float = 4.0) -> str:
    """Draw on a fresh matplotlib figure; return it as a base64 data URI of an SVG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        from edgeport.errors import MissingDependencyError

        raise MissingDependencyError("matplotlib", "report") from exc
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "edgeport", "font.size": 9}):
        fig, ax = plt.subplots(figsize=(width, height))
        try:
            draw(ax)
            fig.tight_layout()
            buffer = io.StringIO()
            fig.savefig(buffer, format="svg", metadata={"Date": None})
        finally:
            plt.close(fig)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue().encode()).decode()


def plots(report: "Report") -> list[tuple[str, str]]:
    """(title, data URI) of every plot; none when nothing was measured."""
    import numpy as np

    rows = [r for r in report.rows if r.map50_95 is not None]
    if not rows:
        return []
    names = [artifact_name(r.artifact) for r in rows]
    labels = [n if len(n) <= 28 else n[:12] + "…" + n[-14:] for n in names]
    out = []

    def pr(ax):
        recall = np.linspace(0, 1, 101)
        for r, label in zip(rows, labels):
            ax.plot(recall, r.pr_curve, label=f"{label} (mAP50 {r.map50:.3f})")
        ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
               title="precision-recall at IoU 0.5 (mean over classes)")
        ax.legend(fontsize=7, loc="lower left")
    out.append(("Precision-recall curves", _svg(pr)))

    def maps(ax):
        x = np.arange(len(rows))
        ax.bar(x - 0.2, [r.map50_95 for r in rows], 0.4, label="mAP50-95")
        ax.bar(x + 0.2, [r.map50 for r in rows], 0.4, label="mAP50")
        for i, r in enumerate(rows):
            if r.drop_map50_95 is not None:
                ax.annotate(f"{r.drop_map50_95:+.2f} pts" + (" OVER" if r.over_budget else ""), (i - 0.2, r.map50_95),
                            ha="center", va="bottom", fontsize=7, color="red" if r.over_budget else "black")
        ax.set_xticks(x, labels, rotation=20, ha="right", fontsize=7)
        ax.set(ylabel="mAP", ylim=(0, 1.1), title="mAP per artifact (label: drop vs the float baseline)")
        ax.legend(fontsize=7, loc="lower right")
    out.append(("mAP and drop per artifact", _svg(maps)))

    timed = [(r, label) for r, label in zip(rows, labels) if r.latency_ms_p50 is not None]
    if timed:
        def tradeoff(ax):
            for r, label in timed:
                ax.scatter(r.latency_ms_p50, r.map50_95, s=30)
                ax.annotate(label, (r.latency_ms_p50, r.map50_95), fontsize=7, xytext=(4, 4),
                            textcoords="offset points")
            ax.set(xlabel="latency p50 (ms, this host)", ylabel="mAP50-95", title="latency against mAP50-95")
            ax.grid(alpha=0.3)
        out.append(("Latency against mAP", _svg(tradeoff)))

    perturbations = [p["name"] for p in report.perturbations]
    if perturbations:
        def robust(ax):
            x = np.arange(len(perturbations))
            width = 0.8 / len(rows)
            for i, (r, label) in enumerate(zip(rows, labels)):
                drops = [r.robustness.get(p, {}).get("drop") for p in perturbations]
                ax.bar(x - 0.4 + width * (i + 0.5), [np.nan if d is None else d for d in drops], width, label=label)
            for j, p in enumerate(perturbations):
                if all(r.robustness.get(p, {}).get("drop") is None for r in rows):
                    ax.annotate("not computed", (j, 0), ha="center", va="bottom", fontsize=7, rotation=90)
            ax.set_xticks(x, perturbations, fontsize=8)
            ax.axhline(0, color="black", linewidth=0.6)
            ax.set(ylabel="mAP50-95 drop (points)", title="robustness: drop from each artifact's clean mAP")
            ax.legend(fontsize=7)
        out.append(("Robustness drop per perturbation", _svg(robust)))
    return out


CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #bbb;padding:3px 6px;font-size:13px;text-align:left}th{background:#eee}
tr.over td{background:#fdd}tr.unmeasured td{background:#f4f4f4;color:#555}tr.baseline td{font-weight:600}
figure{display:inline-block;margin:1em}figcaption{font-weight:600}img{max-width:100%}"""


def html_page(report: "Report") -> str:
    """The report as one self-contained HTML page (no script, no external resource)."""
    e = html.escape

    def table(header, body, classes=None, table_id=""):
        head = "".join(f"<th>{e(h)}</th>" for h in header)
        lines = [f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>']
        for i, cells in enumerate(body):
            cls = f' class="{classes[i]}"' if classes and classes[i] else ""
            lines.append(f"<tr{cls}>" + "".join(f"<td>{e(c)}</td>" for c in cells) + "</tr>")
        return "\n".join(lines + ["</tbody></table>"])

    rows = [r for r in report.rows if r.status != SKIPPED]
    classes = ["over" if r.over_budget else "baseline" if r.baseline else
               "" if r.status in (MEASURED, PROXY) else "unmeasured" for r in rows]
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>edgeport accuracy report</title>", f"<style>{CSS}</style></head><body>",
             "<h1>edgeport accuracy report</h1>", "<ul>"]
    parts += [f"<li><b>{e(k)}</b>: {e(v)}</li>" for k, v in _intro(report)] + ["</ul>", "<h2>Artifacts</h2>"]
    parts.append(table(COLUMNS, [table_cells(r, report) for r in rows], classes, "artifacts"))
    names = [p["name"] for p in report.perturbations]
    if names:
        parts += ["<h2>Robustness</h2>", table(["artifact"] + names, [robustness_cells(r, names, report.rows[0])
                                                                       for r in rows if r.robustness],
                                               None, "robustness"), "<ul>"]
        parts += [f"<li><b>{e(p['name'])}</b>: {e(p['description'])}; seed "
                  f"{e(str(p['seed']) if p['seed'] is not None else 'none (deterministic)')}; {e(p['status'])}</li>"
                  for p in report.perturbations] + ["</ul>"]
    from edgeport.errors import MissingDependencyError

    try:
        figures = plots(report)
    except MissingDependencyError as exc:  # the tables are still worth writing
        figures = []
        parts += ["<h2>Plots</h2>", f"<p>not drawn: {e(str(exc))}</p>"]
    if figures:
        parts.append("<h2>Plots</h2>")
        parts += [f'<figure><figcaption>{e(title)}</figcaption><img alt="{e(title)}" src="{uri}"></figure>'
                  for title, uri in figures]
    skipped = [r for r in report.rows if r.status == SKIPPED]
    if skipped:
        parts += ["<h2>Skipped files</h2>", table(["file", "reason"], [[artifact_name(r.artifact), r.note]
                                                                      for r in skipped], None, "skipped")]
    parts += ["<h2>How to read it</h2>", "<ul>"] + [f"<li>{e(n)}</li>" for n in NOTES] + ["</ul>", "</body></html>"]
    return "\n".join(parts)


def write_all(report: "Report") -> list[Path]:
    """Write report.md, report.html and report.json (a list of rows) into the report's folder."""
    directory = report.directory
    rows: list[dict[str, Any]] = []
    for row in report.rows:
        data = row.to_dict()
        for name, entry in data["robustness"].items():
            entry.update({k: v for k, v in next(p for p in report.perturbations if p["name"] == name).items()
                          if k in ("seed", "description")})
        rows.append(data)
    paths = [directory / "report.md", directory / "report.html", directory / "report.json"]
    paths[0].write_text(markdown(report))
    paths[1].write_text(html_page(report))
    paths[2].write_text(json.dumps(rows, indent=2))
    return paths
