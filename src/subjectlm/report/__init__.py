"""One validation page per recipe run: did the tuning work?

    from subjectlm.report import write_report
    write_report("runs/demo")   # -> runs/demo/report.html (and report.md beside it)

The recipe calls it after its last stage. It reads only what the stages wrote (pipeline_state.json
and each stage's output files) and puts, for the starting and the tuned model side by side, the
verdict block (knowledge gained, general ability kept, exam independent of training, export
faithful: yes / no / not run, with evidence and thresholds), the exam accuracy per scoring mode with
McNemar p, QA scores with CIs, held-out perplexity, general ability (retention), leakage, arena
ratings, the GGUF checks and sample answer, the training loss curves and every stage's config on
one page. Sections whose stage did not run say so.

    collect.py   what a recipe run left behind: its stages and the files each one wrote
    sections.py  the report's sections (and their one-line verdicts), built from those outputs
    retention.py the sections on general ability (what the tuning cost) and exam independence
    verdict.py   the verdict block: evidence from the outputs, lines from evidence and thresholds (pure)
    document.py  the report as plain data, rendered as Markdown and as one self-contained HTML page
"""

from __future__ import annotations

from pathlib import Path

from subjectlm.io import write_text
from subjectlm.report.collect import load_stages
from subjectlm.report.document import render_html, render_markdown
from subjectlm.report.sections import build_sections

REPORT_HTML = "report.html"
REPORT_MD = "report.md"


def write_report(recipe_output_dir: str | Path) -> Path:
    """Write report.html and report.md into the recipe's output folder (atomically); return the HTML path."""
    run_dir = Path(recipe_output_dir)
    sections, _verdicts = build_sections(load_stages(run_dir))
    title = f"Validation report: {run_dir.resolve().name}"
    write_text(run_dir / REPORT_MD, render_markdown(title, sections, run_dir))
    write_text(run_dir / REPORT_HTML, render_html(title, sections))
    return run_dir / REPORT_HTML


def summary_lines(recipe_output_dir: str | Path) -> list[str]:
    """The report's summary lines (each section's results, under the verdict block), for printing at the end
    of a run."""
    return build_sections(load_stages(Path(recipe_output_dir)))[1]


def verdict_block(recipe_output_dir: str | Path) -> list[str]:
    """The four verdict lines that open the report (report/verdict.py)."""
    from subjectlm.report.verdict import verdict_section

    return verdict_section(load_stages(Path(recipe_output_dir)))[1]
