"""`subjectlm run RECIPE --dry-run`: every evaluation stage's items against the data trained on before it
(pipeline/leakage_check.py), printed under "across the plan:" with each flagged item's file:line and the
training file:line it matched; a flag is a warning, and data a stage of the run writes is not checked yet."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from subjectlm.cli import main

LEAKED = "Which mineral gives the black sand beaches of Kestrel Bay their dark colour after the winter storms?"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


@pytest.fixture()
def subject(tmp_path, monkeypatch) -> Path:
    """A folder with an exam (one dev, two val questions), QA, arena prompts and clean training data; the
    dry run is run from it, so the plan prints paths relative to it."""
    header = "id,question,A,B,C,D,answer\n"
    _write(tmp_path / "exam" / "subject_mapping.json", json.dumps({"geo": ["Geology", "地质", "STEM"]}))
    _write(tmp_path / "exam" / "dev" / "geo_dev.csv", header + "0,Which rock forms the cliffs?,basalt,chalk,granite,slate,A\n")
    _write(tmp_path / "exam" / "val" / "geo_val.csv", header
           + "0,How old is the oldest lava flow on the island?,2 million years,5 million years,9 million years,12 million years,B\n"
           + f"1,{LEAKED},magnetite,quartz,calcite,olivine,A\n")
    _write(tmp_path / "qa.jsonl", _jsonl([{"id": "q1", "question": "What is the capital of the island?",
                                           "reference": "Port Ardel."}]))
    _write(tmp_path / "prompts.jsonl", _jsonl([{"id": "p1", "prompt": "Describe the northern cliffs.",
                                                "reference": "Pillow basalts."}]))
    _write(tmp_path / "sft.jsonl", _jsonl([{"instruction": "Where is the harbour?", "output": "On the south coast."},
                                           {"instruction": "Which birds nest there?", "output": "Puffins."}]))
    monkeypatch.chdir(tmp_path)
    return tmp_path


RECIPE = """\
output_dir: out
stages:
  - {{stage: sft, data: {data}}}
  - {{stage: eval, data: exam, qa_data: qa.jsonl, shots: 1}}
  - {{stage: arena, prompts: prompts.jsonl, judge: reference}}
"""


def _dry_run(capsys, recipe: str) -> tuple[int, list[str]]:
    Path("r.yaml").write_text(recipe)
    code = main(["run", "r.yaml", "--dry-run"])
    out = capsys.readouterr().out.splitlines()
    return code, out[out.index("  across the plan:") + 1:]


def test_an_exam_question_in_the_sft_data_is_flagged_at_both_lines(subject, capsys):
    _write(subject / "leak.jsonl", _jsonl([{"instruction": "Name a planet.", "output": "Mars."},
                                           {"instruction": LEAKED, "output": "Magnetite."}]))
    code, out = _dry_run(capsys, RECIPE.format(data="[sft.jsonl, {path: leak.jsonl, weight: 0.5}]"))
    assert code == 0  # a warning: the run goes on
    assert out == [
        "    leakage of eval, arena (vs the data of sft: 2 path(s), 4 record(s)): 5 item(s) checked, 1 flagged",
        "      exam    exam           3 item(s), 1 flagged",
        "      qa      qa.jsonl       1 item(s), 0 flagged",
        "      prompt  prompts.jsonl  1 item(s), 0 flagged",
        "      flagged: exam/val/geo_val.csv:3 (geo/1) matches leak.jsonl:2 (run of 18 tokens)",
        "warning: r.yaml:4: stage eval: 1 evaluation item(s) overlap the training data before it "
        "(listed under 'across the plan')",
        "OK with 1 warning(s)",
    ]


def test_a_clean_recipe_prints_its_counts_and_no_flags(subject, capsys):
    code, out = _dry_run(capsys, RECIPE.format(data="sft.jsonl"))
    assert code == 0
    assert out == [
        "    leakage of eval, arena (vs the data of sft: 1 path(s), 2 record(s)): 5 item(s) checked, 0 flagged",
        "      exam    exam           3 item(s), 0 flagged",
        "      qa      qa.jsonl       1 item(s), 0 flagged",
        "      prompt  prompts.jsonl  1 item(s), 0 flagged",
        "OK",
    ]


def test_only_the_data_trained_on_before_an_evaluation_counts(subject, capsys):
    """The arena comes before the training stage: nothing to check it against; eval after it is checked."""
    _write(subject / "leak.jsonl", _jsonl([{"instruction": LEAKED, "output": "Magnetite."}]))
    code, out = _dry_run(capsys, "output_dir: out\nstages:\n"
                                 "  - {stage: arena, prompts: prompts.jsonl, judge: reference}\n"
                                 "  - {stage: sft, data: leak.jsonl}\n"
                                 "  - {stage: eval, data: exam, shots: 1}\n")
    assert code == 0
    assert out[:4] == [
        "    leakage of arena: not checked: no training stage before it",
        "    leakage of eval (vs the data of sft: 1 path(s), 1 record(s)): 3 item(s) checked, 1 flagged",
        "      exam    exam  3 item(s), 1 flagged",
        "      flagged: exam/val/geo_val.csv:3 (geo/1) matches leak.jsonl:1 (run of 18 tokens)",
    ]


def test_a_data_set_an_earlier_stage_has_not_written_yet_is_not_checked(subject, capsys):
    _write(subject / "docs" / "a.md", "Kestrel Island has basalt cliffs.\n")
    code, out = _dry_run(capsys, "output_dir: out\nstages:\n"
                                 "  - {stage: synth, data: docs, teacher: 'http://127.0.0.1:9/v1'}\n"
                                 "  - {stage: pt, data: {from: synth, output: pt}}\n"
                                 "  - {stage: sft, data: sft.jsonl}\n"
                                 "  - {stage: eval, data: exam, qa_data: {from: synth, output: qa}, shots: 1}\n")
    assert code == 0
    assert out == [
        "    leakage of eval (vs the data of pt, sft: 1 path(s), 2 record(s)): 3 item(s) checked, 0 flagged",
        "      exam    exam  3 item(s), 0 flagged",
        "      not checked: out/synth/pt (data of pt): not written yet (synth writes it)",
        "      not checked: out/synth/qa.jsonl: not written yet (synth writes it)",
        "OK",
    ]


def test_past_ten_flagged_items_the_rest_are_counted(subject, capsys):
    questions = [f"In field season {n} which survey team mapped the basalt dykes along the northern cliffs of Kestrel?"
                 for n in range(12)]
    _write(subject / "exam" / "val" / "geo_val.csv", "id,question,A,B,C,D,answer\n"
           + "".join(f"{n},{q},a,b,c,d,A\n" for n, q in enumerate(questions)))
    _write(subject / "leak.jsonl", _jsonl([{"instruction": q, "output": "The first."} for q in questions]))
    code, out = _dry_run(capsys, RECIPE.format(data="leak.jsonl"))
    assert code == 0
    assert out[0].endswith("15 item(s) checked, 12 flagged")
    flagged = [line for line in out if line.startswith("      flagged: ")]
    assert flagged[0] == "      flagged: exam/val/geo_val.csv:2 (geo/0) matches leak.jsonl:1 (run of 17 tokens)"
    assert len(flagged) == 10 and out[out.index(flagged[-1]) + 1] == "      and 2 more"


def test_the_leakage_check_loads_no_torch(subject):
    _write(subject / "leak.jsonl", _jsonl([{"instruction": LEAKED, "output": "Magnetite."}]))
    Path("r.yaml").write_text(RECIPE.format(data="leak.jsonl"))
    script = ("import sys\nfrom subjectlm.cli import main\ncode = main(['run', 'r.yaml', '--dry-run'])\n"
              "print('heavy:', sorted(m for m in ('torch', 'transformers', 'peft', 'trl') if m in sys.modules))\n"
              "sys.exit(code)\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=subject, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "      flagged: exam/val/geo_val.csv:3 (geo/1) matches leak.jsonl:1 (run of 18 tokens)" in proc.stdout
    assert proc.stdout.splitlines()[-1] == "heavy: []"
