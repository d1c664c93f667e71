"""The report object every command builds (`convert --data`, `report`, `quickstart`), and report.json.

Rows come from sources (measured here, measured on another machine, kept from an earlier run); the
budget check, the summary and the JSON are computed here once, whatever the source.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from edgeport.report.rows import PROXY, MEASURED, ReportRow, host_description

SCHEMA = "edgeport.report/2"
DEFAULT_BUDGET = 1.0  # points of mAP50-95 the summary allows when no --max-drop is given


@dataclass
class Example:
    """One val image where the int8 artifacts disagree most with the float model, drawn side by side."""

    image: str
    disagreement: int  # detections (score >= 0.25) one side has and the other lacks, summed over the artifacts
    artifacts: list[str]  # baseline first, then the int8 artifacts drawn
    counts: dict[str, int]  # artifact -> detections drawn
    png: bytes = b""  # the side-by-side drawing (embedded in report.html; not in report.json)

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.image, "disagreement": self.disagreement, "artifacts": self.artifacts,
                "counts": self.counts}


@dataclass
class Report:
    """What one report run measured; `rows[0]` is the baseline."""

    directory: Path
    data: str
    images: int
    rows: list[ReportRow]
    baseline: str
    perturbations: list[dict[str, Any]] = field(default_factory=list)  # name, description, seed, status
    max_drop: float | None = None
    host: str = field(default_factory=host_description)
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    command: str = ""
    examples: list[Example] = field(default_factory=list)

    @property
    def budget(self) -> float:
        """The drop budget (points of mAP50-95) of the summary: --max-drop, else DEFAULT_BUDGET."""
        return DEFAULT_BUDGET if self.max_drop is None else self.max_drop

    @property
    def failing(self) -> list[ReportRow]:
        return [r for r in self.rows if r.over_budget]

    def apply_budget(self) -> None:
        """Mark the rows over --max-drop (the one place this is decided); a row without a number never passes
        nor fails: it is 'not checked'."""
        for row in self.rows:
            row.over_budget = is_over(row, self.max_drop)

    def add_rows(self, rows: Iterable[ReportRow]) -> None:
        """Add rows from another source (another machine, an earlier run); a row keeps its own drop, or gets
        one against this report's baseline when it has a mAP and no drop."""
        base = self.rows[0] if self.rows else None
        for row in rows:
            if row.drop_map50_95 is None and row.map50_95 is not None and base is not None and base.map50_95:
                row.drop_map50_95 = round((base.map50_95 - row.map50_95) * 100, 3)
            self.rows.append(row)
        self.apply_budget()

    def to_dict(self) -> dict[str, Any]:
        """report.json: the run, the summary, the examples, the perturbations and every row."""
        from edgeport.report.summary import summarize

        rows = []
        for row in self.rows:
            data = row.to_dict()
            for name, entry in data["robustness"].items():
                described = next((p for p in self.perturbations if p["name"] == name), {})
                entry.update({k: v for k, v in described.items() if k in ("seed", "description")})
            rows.append(data)
        return {"schema": SCHEMA, "created": self.created, "command": self.command, "host": self.host,
                "directory": str(self.directory), "data": self.data, "images": self.images,
                "baseline": self.baseline, "max_drop": self.max_drop, "budget": self.budget,
                "summary": [s.to_dict() for s in summarize(self)],
                "examples": [e.to_dict() for e in self.examples], "perturbations": self.perturbations, "rows": rows}


def is_over(row: ReportRow, max_drop: float | None) -> bool:
    """True when the row's mAP50-95 drop (points) exceeds max_drop."""
    return max_drop is not None and row.drop_map50_95 is not None and row.drop_map50_95 > max_drop


def row_from_dict(data: dict[str, Any]) -> ReportRow:
    """A ReportRow from its report.json form (unknown keys ignored, missing ones defaulted)."""
    names = {f.name for f in fields(ReportRow)}
    required = ("artifact", "target", "precision", "io", "backend", "size_bytes", "map50_95", "map50",
                "drop_map50_95", "latency_ms_p50", "latency_ms_p99", "images_per_second", "measured_on")
    values = {k: data.get(k) for k in required}
    values.update({k: v for k, v in data.items() if k in names and k not in required})
    values["size_bytes"] = int(values["size_bytes"] or 0)
    values["measured_on"] = str(values["measured_on"] or "not measured")
    for key in ("artifact", "target", "precision", "io", "backend"):
        values[key] = str(values[key] if values[key] is not None else "?")
    return ReportRow(**values)


def read_report_json(path: str | Path) -> dict[str, Any]:
    """A report.json as a dict with "rows" (a list of row dicts); the list-only form of earlier versions
    becomes {"rows": [...]}. Raises ConfigError when the file is not a report."""
    from edgeport.errors import ConfigError

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable report.json ({exc})") from exc
    if isinstance(data, list):
        data = {"rows": data}
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise ConfigError(f"{path}: not a report.json (no list of rows)")
    return data


def rows_from_file(path: str | Path, measured_on: str | None = None) -> list[ReportRow]:
    """Rows measured on another machine (e.g. an emulated arm64 Raspberry Pi): a report.json, or a JSON list
    of rows. `measured_on` labels them when the file does not; a row must say where it was measured."""
    from edgeport.errors import ConfigError

    rows = []
    for data in read_report_json(path)["rows"]:
        if data.get("baseline"):
            continue  # the other machine's own baseline: drops here are against this report's baseline
        if measured_on:
            data = {**data, "measured_on": measured_on}
        if not data.get("measured_on") or data["measured_on"] == "not measured":
            raise ConfigError(f"{path}: row {data.get('artifact')!r} does not say where it was measured "
                              "(measured_on)")
        row = row_from_dict(data)
        row.status = row.status if row.status in (MEASURED, PROXY) else MEASURED
        row.baseline = False
        rows.append(row)
    return rows


def previous_rows(path: Path, data: str, baseline: str, fresh: Iterable[str]) -> tuple[list[ReportRow], str]:
    """The rows of an earlier report.json in the same folder worth keeping beside fresh ones: same data and
    baseline, an artifact that still exists and is not measured again. Returns (rows, why none when empty)."""
    if not path.is_file():
        return [], ""
    try:
        previous = read_report_json(path)
    except Exception as exc:  # a damaged earlier report is replaced, saying so
        return [], f"the earlier {path.name} is not readable ({exc}); it is replaced"
    if previous.get("data") != data or previous.get("baseline") != baseline:
        return [], f"the earlier {path.name} measured other data or another baseline; it is replaced"
    fresh = {str(Path(f).resolve()) for f in fresh}
    kept = [row_from_dict(r) for r in previous["rows"] if isinstance(r, dict) and not r.get("baseline")
            and Path(str(r.get("artifact"))).exists() and str(Path(str(r.get("artifact"))).resolve()) not in fresh]
    return kept, ""
