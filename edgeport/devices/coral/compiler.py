"""Run `edgetpu_compiler` when it is on PATH and read its log into the report."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

COMPILER = "edgetpu_compiler"
INSTALL_HINT = ("edgetpu_compiler is not on PATH, so the model was not compiled. It runs on x86_64 Linux: "
                "install the 'edgetpu-compiler' package from Coral's apt repository, then run "
                "`edgetpu_compiler -s -o DIR MODEL` (the analysis above predicts what it will map)")


def parse_log(text: str) -> dict:
    """Read the compiler's summary: ops on the Edge TPU and on the CPU, and the per-op table."""
    def number(pattern: str) -> int | None:
        match = re.search(pattern, text)
        return int(match.group(1)) if match else None

    table = []
    for line in text.splitlines():
        match = re.match(r"^([A-Z][A-Z0-9_]+)\s+(\d+)\s+(.+?)\s*$", line.strip())
        if match:
            table.append({"operator": match.group(1), "count": int(match.group(2)), "status": match.group(3)})
    return {"edgetpu_ops": number(r"Number of operations that will run on Edge TPU:\s*(\d+)"),
            "cpu_ops": number(r"Number of operations that will run on CPU:\s*(\d+)"),
            "edgetpu_subgraphs": number(r"Number of Edge TPU subgraphs:\s*(\d+)"), "operators": table,
            "compiled": "Model compiled successfully" in text}


def compile_model(model: Path, out_dir: Path, timeout_s: int = 600) -> tuple[Path | None, dict | None, str]:
    """Compile with edgetpu_compiler; return (compiled path or None, parsed log or None, message)."""
    compiler = shutil.which(COMPILER)
    if compiler is None:
        return None, None, INSTALL_HINT
    result = subprocess.run([compiler, "-s", "-o", str(out_dir), str(model)], capture_output=True, text=True,
                            timeout=timeout_s)
    log = parse_log(result.stdout + result.stderr)
    (out_dir / f"{model.stem}_edgetpu.log").write_text(result.stdout + result.stderr)
    compiled = out_dir / f"{model.stem}_edgetpu.tflite"
    if result.returncode != 0 or not compiled.is_file():
        return None, log, f"edgetpu_compiler failed (exit {result.returncode}): {result.stderr.strip()[:300]}"
    return compiled, log, (f"edgetpu_compiler: {log['edgetpu_ops']} ops on the Edge TPU, {log['cpu_ops']} on "
                           "the CPU")
