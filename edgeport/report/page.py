"""report.html: one self-contained page (inline CSS, images embedded, no script) that opens with the
summary, then the examples, the tables grouped by target (sticky header, fits 1,280 px), robustness."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeport.errors import MissingDependencyError
from edgeport.report.render import (
    COLUMNS,
    NOTES,
    SUMMARY_COLUMNS,
    WIDTHS,
    _intro,
    escape as e,
    groups,
    png_uri,
    robustness_cells,
    summary_cells,
    table_cells,
)
from edgeport.report.rows import MEASURED, PROXY, SKIPPED, artifact_name
from edgeport.report.summary import RULE, points, summarize

if TYPE_CHECKING:
    from edgeport.report.model import Report

CSS = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:separate;border-spacing:0;margin:.5em 0 1.5em;width:100%;table-layout:fixed}
td,th{border:1px solid #ccc;border-width:0 1px 1px 0;padding:3px 5px;font-size:13px;text-align:left;
vertical-align:top;overflow-wrap:anywhere}
tr>:first-child{border-left-width:1px}thead th{border-top-width:1px}
thead th{position:sticky;top:0;background:#eee;z-index:1}
tr.over td{background:#fdd}tr.unmeasured td{background:#f4f4f4;color:#555}tr.baseline td{font-weight:600}
table.summary td:nth-child(2){font-weight:600}p.rule{max-width:70em}
figure{display:inline-block;margin:.5em 1em .5em 0;max-width:100%;vertical-align:top}
figcaption{font-weight:600}img{max-width:100%;height:auto}"""


def _table(header, body, widths=None, classes=None, table_id="", css_class="") -> str:
    cols = "<colgroup>" + "".join(f'<col style="width:{w}%">' for w in widths) + "</colgroup>" if widths else ""
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    lines = [f'<table id="{table_id}" class="{css_class}">{cols}<thead><tr>{head}</tr></thead><tbody>']
    for i, cells in enumerate(body):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        lines.append(f"<tr{cls}>" + "".join(f"<td>{e(c)}</td>" for c in cells) + "</tr>")
    return "\n".join(lines + ["</tbody></table>"])


def _figure(title: str, uri: str, css_class: str = "") -> str:
    cls = f' class="{css_class}"' if css_class else ""
    return f'<figure{cls}><figcaption>{e(title)}</figcaption><img alt="{e(title)}" src="{uri}"></figure>'


def _plot(draw, *args):
    """A plot's data URI, or the reason it is not drawn (matplotlib missing)."""
    try:
        return draw(*args), ""
    except MissingDependencyError as exc:  # the tables are still worth writing
        return None, f"<p>plots not drawn: {e(str(exc))}</p>"


def _summary(report: "Report") -> list[str]:
    from edgeport.report.plots import tradeoff_plot

    parts = ['<section id="summary"><h2>Summary</h2>',
             f'<p class="rule">Budget: {points(report.budget)} of mAP50-95. {e(RULE)}</p>',
             _table(SUMMARY_COLUMNS, [summary_cells(r) for r in summarize(report)], (11, 19, 6, 6, 6, 6, 24, 22),
                    table_id="summary-table", css_class="summary")]
    uri, why = _plot(tradeoff_plot, report)
    parts += [_figure("Accuracy against latency", uri)] if uri else [why] if why else []
    return parts + ["</section>"]


def _examples(report: "Report") -> list[str]:
    if not report.examples:
        return []
    parts = ['<section id="examples"><h2>Examples</h2>',
             "<p>The val images where the int8 artifacts disagree most with the float model (detections at score "
             "&ge; 0.25; the float model on the left).</p>"]
    for example in report.examples:
        title = (f"{example.image.rsplit('/', 1)[-1]}: {example.disagreement} detections differ ("
                 + ", ".join(f"{k}: {v}" for k, v in example.counts.items()) + ")")
        parts.append(_figure(title, png_uri(example.png), "example"))
    return parts + ["</section>"]


def _artifacts(report: "Report") -> list[str]:
    from edgeport.report.plots import detail_plots

    parts = ['<section id="artifacts"><h2>Artifacts</h2>']
    for target, rows in groups(report):
        classes = ["over" if r.over_budget else "baseline" if r.baseline else
                   "" if r.status in (MEASURED, PROXY) else "unmeasured" for r in rows]
        parts += [f"<h3>{e(target)}</h3>", _table(COLUMNS, [table_cells(r, report) for r in rows], WIDTHS, classes,
                                                  f"artifacts-{target}", "artifacts")]
    figures, why = _plot(detail_plots, report)
    parts += [_figure(title, uri) for title, uri in figures or []] + ([why] if why else [])
    return parts + ["</section>"]


def _robustness(report: "Report") -> list[str]:
    from edgeport.report.plots import robustness_plot

    names = [p["name"] for p in report.perturbations]
    if not names:
        return []
    body = [robustness_cells(r, names, report.rows[0]) for r in report.rows if r.robustness]
    parts = ['<section id="robustness"><h2>Robustness</h2>',
             _table(["artifact"] + names, body, [22] + [78 / len(names)] * len(names), table_id="robustness"), "<ul>"]
    parts += [f"<li><b>{e(p['name'])}</b>: {e(p['description'])}; seed "
              f"{e(str(p['seed']) if p['seed'] is not None else 'none (deterministic)')}; {e(p['status'])}</li>"
              for p in report.perturbations] + ["</ul>"]
    uri, why = _plot(robustness_plot, report)
    parts += [_figure("Robustness drop per perturbation", uri)] if uri else [why] if why else []
    return parts + ["</section>"]


def html_page(report: "Report") -> str:
    """The report as one self-contained HTML page (no script, no external resource)."""
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             "<title>edgeport accuracy report</title>", f"<style>{CSS}</style></head><body>",
             "<h1>edgeport accuracy report</h1>", "<ul>"]
    parts += [f"<li><b>{e(k)}</b>: {e(v)}</li>" for k, v in _intro(report)] + ["</ul>"]
    parts += _summary(report) + _examples(report) + _artifacts(report) + _robustness(report)
    skipped = [r for r in report.rows if r.status == SKIPPED]
    if skipped:
        parts += ["<h2>Skipped files</h2>", _table(["file", "reason"], [[artifact_name(r.artifact), r.note]
                                                                      for r in skipped], (30, 70), table_id="skipped")]
    parts += ["<h2>How to read it</h2>", "<ul>"] + [f"<li>{e(n)}</li>" for n in NOTES] + ["</ul>", "</body></html>"]
    return "\n".join(parts)
