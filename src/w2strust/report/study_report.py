"""The study report: Table 1 set against the paper, every sensitivity curve the study's sweeps hold, and a
link to each run's own report (Figure 2, the ceiling's λ curve). Written to ``<study>/report.md``.

The figures are drawn from the run folders alone (``config.yaml`` + ``results.jsonl``), so the report can be
rebuilt at any time with ``w2strust report STUDY_DIR`` and never holds hand-written numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..io import atomic_write_text
from .run_report import write_report
from .sensitivity import markdown as curve_markdown
from .sensitivity import study_curves
from .table1 import write_study_table


def write_study_reports(out: Path, run_dirs: list[Path], labels: list[str] | None = None,
                        cache: Path | None = None) -> dict[str, Any]:
    """Everything a study's results give: every run folder's report (``cache``: where the stages are, default each
    run's ``cache`` link), Table 1 over the run folders against the paper (``table1.md``), and the study report."""
    for d in run_dirs:
        write_report(d, cache=cache)
    table = write_study_table(run_dirs, out, labels, heading_level=2)
    return write_study_report(out, run_dirs, table)


def write_study_report(out: Path, run_dirs: list[Path], table: str = "") -> dict[str, Any]:
    """``<out>/report.md`` (+ ``<out>/curves/``): ``table`` (Table 1 against the paper, headed at level 2), a link
    to every run's report, and every sensitivity curve the run folders hold."""
    out = Path(out)
    index = json.loads((out / "study.json").read_text()) if (out / "study.json").exists() else {}
    title = f"w2strust study {Path(index['study_file']).name}" if index.get("study_file") else "w2strust study"
    docs = study_curves(run_dirs, out / "curves")
    lines = [f"# {title}", ""]
    if table:
        lines += [table, ""]
    lines += ["## Runs", "", "Each run folder has its own report: Figure 2 (every role's trust and task metric by "
              "strategy), all metrics, the WTS-trust tests and, with `lambda_ceiling: auto`, the ceiling's λ curve.",
              ""]
    for d in run_dirs:
        rel = Path(d).resolve().relative_to(out.resolve()) if Path(d).resolve().is_relative_to(out.resolve()) \
            else Path(d)
        summary = json.loads((Path(d) / "summary.json").read_text()) if (Path(d) / "summary.json").exists() else {}
        chosen = summary.get("ceiling_selection", {}).get("suggested_lambda")
        note = f" (ceiling λ chosen by rule: {chosen:g})" if chosen is not None else ""
        lines.append(f"- [{rel}]({rel}/report.md){note}")
    lines += ["", "## Sensitivity curves (paper Figure 3, A1-A8)", ""]
    if not docs:
        lines += ["No config key is swept in this study: no curves.", ""]
    for doc in docs:
        lines += [curve_markdown(doc, f"curves/{doc['folder']}".rstrip("/")), ""]
    atomic_write_text(out / "report.md", "\n".join(lines))
    return {"curves": docs}
