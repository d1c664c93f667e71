"""The report's plots (matplotlib, drawn as SVG data URIs): accuracy against latency for the summary,
precision-recall curves, mAP per artifact and robustness drops."""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING, Any, Callable

from edgeport.report.rows import ReportRow, artifact_name

if TYPE_CHECKING:
    from edgeport.report.model import Report


def _svg(draw: Callable[[Any], None], width: float = 7.0, height: float = 4.0) -> str:
    """Draw on a fresh matplotlib figure; return it as a base64 data URI of an SVG.
    Raises MissingDependencyError without matplotlib."""
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


def _label(row: ReportRow) -> str:
    name = artifact_name(row.artifact)
    return name if len(name) <= 28 else name[:12] + "…" + name[-14:]


def tradeoff_plot(report: "Report") -> str | None:
    """Accuracy against latency of every timed row, the budget drawn as a line: the trade-off a user picks
    from; None when no row has a latency."""
    timed = [r for r in report.rows if r.latency_ms_p50 is not None and r.map50_95 is not None]
    if not timed:
        return None
    base = report.rows[0]

    def draw(ax):
        for r in timed:
            over = r.drop_map50_95 is not None and r.drop_map50_95 > report.budget
            ax.scatter(r.latency_ms_p50, r.map50_95, s=36, color="tab:red" if over else "tab:blue")
            ax.annotate(f"{_label(r)} ({r.measured_on.split(',')[0]})", (r.latency_ms_p50, r.map50_95), fontsize=7,
                        xytext=(4, 4), textcoords="offset points")
        if base.map50_95 is not None:
            ax.axhline(base.map50_95 - report.budget / 100, color="gray", linestyle="--", linewidth=0.8)
            ax.annotate(f"drop budget {report.budget:g} points", (ax.get_xlim()[0], base.map50_95 - report.budget / 100),
                        fontsize=7, color="gray", xytext=(2, -10), textcoords="offset points")
        ax.set(xlabel="latency p50 (ms; where each row was measured)", ylabel="mAP50-95",
               title="accuracy against latency (proxies have no latency and are not shown)")
        ax.grid(alpha=0.3)
    return _svg(draw, 7.5, 4.2)


def detail_plots(report: "Report") -> list[tuple[str, str]]:
    """(title, data URI) of the precision-recall curves and the mAP per artifact; none when nothing was
    measured."""
    import numpy as np

    rows = [r for r in report.rows if r.map50_95 is not None and r.pr_curve]
    if not rows:
        return []
    labels = [_label(r) for r in rows]

    def pr(ax):
        recall = np.linspace(0, 1, 101)
        for r, label in zip(rows, labels):
            ax.plot(recall, r.pr_curve, label=f"{label} (mAP50 {r.map50:.3f})")
        ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
               title="precision-recall at IoU 0.5 (mean over classes)")
        ax.legend(fontsize=7, loc="lower left")

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
    return [("Precision-recall curves", _svg(pr)), ("mAP and drop per artifact", _svg(maps))]


def robustness_plot(report: "Report") -> str | None:
    """The mAP50-95 drop of each artifact under each perturbation; None without perturbations."""
    import numpy as np

    rows = [r for r in report.rows if r.robustness]
    perturbations = [p["name"] for p in report.perturbations]
    if not perturbations or not rows:
        return None

    def draw(ax):
        x = np.arange(len(perturbations))
        width = 0.8 / len(rows)
        for i, r in enumerate(rows):
            drops = [r.robustness.get(p, {}).get("drop") for p in perturbations]
            ax.bar(x - 0.4 + width * (i + 0.5), [np.nan if d is None else d for d in drops], width, label=_label(r))
        for j, p in enumerate(perturbations):
            if all(r.robustness.get(p, {}).get("drop") is None for r in rows):
                ax.annotate("not computed", (j, 0), ha="center", va="bottom", fontsize=7, rotation=90)
        ax.set_xticks(x, perturbations, fontsize=8)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set(ylabel="mAP50-95 drop (points)", title="robustness: drop from each artifact's clean mAP")
        ax.legend(fontsize=7)
    return _svg(draw)
