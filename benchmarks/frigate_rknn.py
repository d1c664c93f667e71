"""The Frigate copy of the rknn target for every Ultralytics family stand-in: does it build, and how well does its
one output agree with the float model (the convert's own Frigate check, kept in the copy's record).

    python benchmarks/frigate_rknn.py [--families yolov8,yolo26,...] [--imgsz 160] [--calibration-images 16]
                                      [--json benchmarks/results/frigate_rknn.json]

Stand-ins come from Ultralytics' YAMLs (edgeport.sample.families) and mean nothing, so the figure is agreement:
the share of the float model's anchors above Frigate's 0.4 that the int8 copy keeps alike (class, score above
0.25, box IoU >= 0.5), and the share of Frigate-decoded detections. Converts with the check off, so a copy
under edgeport's floor is kept and its finding shown. Needs the rknn venv (scripts/rknn-venv.sh).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeport import sample  # noqa: E402
from edgeport.artifact import read_sidecar  # noqa: E402
from edgeport.convert import ConvertOptions, convert  # noqa: E402
from edgeport.errors import EdgeportError  # noqa: E402
from edgeport.sample.families import FAMILIES, build_family_model  # noqa: E402


def one_family(family: str, work: Path, args) -> dict:
    """Convert the family's stand-in to rknn int8 (check off) and read its Frigate copy's check."""
    model = build_family_model(family, work / family / f"{family}.pt", imgsz=args.imgsz)
    start = time.perf_counter()
    try:
        artifact = convert(model, "rknn", ConvertOptions(out_dir=work / family, precision="int8", imgsz=args.imgsz,
                                                         data=sample.data_yaml(), check=False,
                                                         calibration_images=args.calibration_images))
    except EdgeportError as exc:
        return {"family": family, "status": "failed", "error": str(exc)}
    copies = [p for p in artifact.extra_files if p.name.endswith("_frigate.rknn")]
    if not copies:
        return {"family": family, "status": "no Frigate copy"}
    check = read_sidecar(copies[0]).provenance["frigate_check"]
    return {"family": family, "status": "ok", "convert_s": round(time.perf_counter() - start, 1), **check}


def table(rows: list[dict]) -> str:
    lines = ["| family | anchors alike (of float > 0.4) | after Frigate's decode | under the int8 floor | convert s |",
             "|---|---|---|---|---|"]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['family']} | {r['status']}: {r.get('error', '')} | | | |")
            continue
        lines.append(f"| {r['family']} | {r['anchors_matched']:.0%} of {r['anchors']} | {r['frigate_matched']:.0%} of "
                     f"{r['float_detections']} | {'yes' if r['problem'] else 'no'} | {r['convert_s']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--imgsz", type=int, default=160)
    parser.add_argument("--calibration-images", type=int, default=16)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "frigate_rknn.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgeport-frigate-rknn-"))
    rows = []
    for family in [f for f in args.families.split(",") if f]:
        rows.append(one_family(family, work, args))
        print(rows[-1], flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"imgsz": args.imgsz, "calibration_images": args.calibration_images,
                                     "families": rows}, indent=2))
    print(table(rows))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
