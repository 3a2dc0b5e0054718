"""The verdict block: pure lines from evidence and thresholds (exact strings), and the block as the report
builds it from files the real code wrote (exam runs compared by compare_runs, retention.json, verify.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from subjectlm.config import ConfigError, to_dict
from subjectlm.eval.verdict_thresholds import VerdictThresholds, thresholds_from
from subjectlm.report.verdict import Evidence, Gguf, Interval, Leakage, Paired, Ratio, independence_line, verdict_lines

DEMO = Evidence(
    exam=[Paired("exam letter", 64, 0.25, 0.265625, 0.8, (-0.05, 0.08)),
          Paired("exam cloze_acc", 64, 0.203125, 0.453125, 0.0025, (0.11, 0.39))],
    qa=[Interval("QA f1", 0.091, 0.265, 0.125, 0.222)],
    ppl=[Ratio("held-out perplexity", 26.6, 9.9)],
    general=[Paired("general cloze_acc", 88, 0.6, 0.55, 0.03, (-0.09, -0.01))],
    general_ppl=[Ratio("general perplexity", 20.0, 21.0)],
    leakage=[Leakage(148, 0)],
    gguf=[Gguf("model-f16.gguf", 2.1e-6, 0.998), Gguf("model-f16-q8_0.gguf", 4.4e-4, 0.984)])


def test_lines_say_yes_or_no_with_evidence_and_threshold():
    assert verdict_lines(DEMO, VerdictThresholds()) == [
        "Knowledge gained: yes — exam letter 25.0% -> 26.6% (+1.6 points [-5.0, +8.0], p=0.8, n=64); "
        "exam cloze_acc 20.3% -> 45.3% (+25.0 points [+11.0, +39.0], p=0.0025, n=64); "
        "QA f1 0.091 -> 0.265 (95% CI of Δ [+0.125, +0.222]); held-out perplexity 26.60 -> 9.90 (x0.372) "
        "(threshold: yes when a subject measure gains and none drops: exam McNemar p < 0.05, QA 95% CI above 0, "
        "perplexity ratio <= 0.9)",
        "General ability kept: no — general cloze_acc 60.0% -> 55.0% (-5.0 points [-9.0, -1.0], p=0.03, n=88); "
        "general perplexity 20.00 -> 21.00 (x1.050) (threshold: no on a general-exam drop of more than 2 points "
        "with McNemar p < 0.05, or a general perplexity ratio above 1.1)",
        "Exam independent of training: yes — 0 of 148 evaluation items overlap the training data "
        "(threshold: at most 0 overlapping items; no gain on control questions with McNemar p < 0.05)",
        "Export faithful: yes — model-f16.gguf KLD 2.1e-06, top-1 99.8%; model-f16-q8_0.gguf KLD 4.4e-04, "
        "top-1 98.4% (threshold: each GGUF: mean KLD <= 0.05 nats, top-1 >= 90%)",
    ]


def test_nothing_measured_says_not_run():
    assert [line.split(" (threshold")[0] for line in verdict_lines(Evidence(), VerdictThresholds())] == [
        "Knowledge gained: not run — nothing measured",
        "General ability kept: not run — nothing measured",
        "Exam independent of training: not run — overlap not checked (the eval stage had no train_data)",
        "Export faithful: not run — nothing measured",
    ]


@pytest.mark.parametrize(("changes", "thresholds", "expected"), [
    # the same 5-point drop: significant but within a 6-point allowance -> kept
    ({}, {"general_max_drop": 6.0}, ["yes", "yes", "yes", "yes"]),
    # p=0.03 is not below a stricter alpha: the drop does not count; the exam gain (p=0.0025) still does
    ({}, {"alpha": 0.01}, ["yes", "yes", "yes", "yes"]),
    # one leaked item over an allowance of 0; a q4 file far from the HF model
    ({"leakage": [Leakage(None, 1)], "gguf": [Gguf("model-q4_k_m.gguf", 0.2, 0.8)]}, {}, ["yes", "no", "no", "no"]),
    # a significant exam drop is a "no" even when QA gained
    ({"exam": [Paired("exam cloze_acc", 64, 0.5, 0.3, 0.001)], "ppl": []}, {}, ["no", "no", "yes", "yes"]),
    # nothing significant, perplexity ratio above the threshold: no gain shown
    ({"exam": [Paired("exam cloze_acc", 64, 0.25, 0.3, 0.4)], "qa": [], "ppl": [Ratio("held-out", 10.0, 9.5)]}, {},
     ["no", "no", "yes", "yes"]),
])
def test_thresholds_decide(changes, thresholds, expected):
    evidence = Evidence(**{**DEMO.__dict__, **changes})
    lines = verdict_lines(evidence, VerdictThresholds(**thresholds))
    assert [line.split(": ", 1)[1].split(" — ")[0] for line in lines] == expected


def test_a_gain_on_control_questions_says_the_exam_is_guessable():
    taught = Paired("taught cloze_acc", 60, 0.25, 0.6, 0.0001)
    guessed = Paired("control cloze_acc", 20, 0.25, 0.6, 0.01)
    unmoved = Paired("control cloze_acc", 20, 0.25, 0.3, 1.0)
    line = independence_line(Evidence(leakage=[Leakage(80, 0)], control=[(taught, guessed)]), VerdictThresholds())
    assert line.startswith("Exam independent of training: no — 0 of 80 evaluation items overlap the training data; "
                           "taught cloze_acc 25.0% -> 60.0% (+35.0 points, p=0.0001, n=60) vs control cloze_acc "
                           "25.0% -> 60.0% (+35.0 points, p=0.01, n=20) (taught minus control +0.0 points)")
    line = independence_line(Evidence(control=[(taught, unmoved)]), VerdictThresholds())
    assert line.startswith("Exam independent of training: not run — overlap not checked")  # control alone: not enough
    assert "(taught minus control +30.0 points)" in line
    line = independence_line(Evidence(leakage=[Leakage(80, 0)], control=[(taught, unmoved)]), VerdictThresholds())
    assert line.startswith("Exam independent of training: yes")


def test_recipe_thresholds_are_checked_by_name():
    assert thresholds_from(None) == VerdictThresholds()
    assert thresholds_from({"alpha": 0.01}).alpha == 0.01
    with pytest.raises(ConfigError, match="unknown key 'alpah'"):
        thresholds_from({"alpah": 0.01})
    with pytest.raises(ConfigError, match="alpha: must be below 1"):
        thresholds_from({"alpha": 1.5})
    with pytest.raises(ConfigError, match="general_max_drop: must be at least 0"):
        thresholds_from({"general_max_drop": -1})
    from subjectlm.eval.recipe_stage import EvalStageConfig

    with pytest.raises(ConfigError, match="unknown key 'kld'"):
        EvalStageConfig(data="x", verdict={"kld": 0.1})
    with pytest.raises(ConfigError, match=r"general_data\[1\]: unknown key 'subject'"):
        EvalStageConfig(data="x", general_data=["a", {"path": "b", "subject": ["x"]}])


# --- the block as the report builds it -----------------------------------------------------------

def _graded_run(folder: Path, right: list[bool], category: str, model: str) -> None:
    """An exam run of one subject as `eval exam` writes it (predictions and summary, by eval/exam/report.py)."""
    from subjectlm.eval.exam.directory import SubjectInfo
    from subjectlm.eval.exam.prediction import Prediction
    from subjectlm.eval.exam.report import summarize

    folder.mkdir(parents=True)
    records = [{"subject": "s", "id": str(i), "repeat": 0, "answer": "A", "prediction": "A" if ok else "B",
                "correct": ok, "modes": {"cloze_acc_norm": {"prediction": "A" if ok else "B", "correct": ok}}}
               for i, ok in enumerate(right)]
    (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = summarize([Prediction.from_json(r) for r in records], [SubjectInfo("s", "S", category)],
                        {"model": model, "data": "x", "format": "ceval", "split": "val", "shots": 0,
                         "with_prompt": False, "cot": False, "n_times": 1, "scoring": "cloze",
                         "scoring_modes": ["cloze_acc_norm"]})
    (folder / "summary.json").write_text(json.dumps(summary))


def test_report_opens_with_the_verdict_block(tmp_path):
    from subjectlm.eval.exam.compare import compare_runs
    from subjectlm.eval.general import GeneralExam, exam_entry, retention_line
    from subjectlm.eval.recipe_stage import EvalStageConfig
    from subjectlm.io import write_json
    from subjectlm.report import REPORT_MD, verdict_block, write_report

    out = tmp_path / "run"
    stage = out / "eval"
    # subject exam: 10 of 40 right before, 30 after; general exam: 30 of 40 before, 20 after (the 10 lost)
    _graded_run(stage / "base", [i < 10 for i in range(40)], "STEM", "start")
    _graded_run(stage / "model", [i < 30 for i in range(40)], "STEM", "tuned")
    compare_runs(stage / "base", stage / "model", stage / "compare")
    general = stage / "general" / "everyday"
    _graded_run(general / "base", [i < 30 for i in range(40)], "Other", "start")
    _graded_run(general / "model", [i < 20 for i in range(40)], "Other", "tuned")
    compared = compare_runs(general / "base", general / "model", general / "compare")
    exam = GeneralExam("data/general", "everyday")
    retention = {"exams": [exam_entry(exam, general, compared)], "ppl": None}
    write_json(stage / "retention.json", retention)
    config = EvalStageConfig(data="x", model="tuned", base_model="default", output_dir=str(stage),
                             general_data=["data/general"], verdict={"general_max_drop": 5.0})
    state = {"eval": {"hash": "x", "config": to_dict(config), "seconds": 1.0,
                      "result": {"summary": retention_line(retention)}}}
    (out / "pipeline_state.json").write_text(json.dumps(state))
    assert retention_line(retention) == ("general exam everyday over 40 questions: "
                                         "cloze_acc_norm 75.0% → 50.0% (Δ -25.0, p=0.00195)")
    write_report(out)
    block = verdict_block(out)
    assert block[0].startswith("Knowledge gained: yes — exam cloze_acc_norm 25.0% -> 75.0% (+50.0 points [")
    assert block[1].startswith("General ability kept: no — everyday cloze_acc_norm 75.0% -> 50.0% (-25.0 points [")
    assert block[1].endswith(", p=0.002, n=40) (threshold: no on a general-exam drop of more than 5 points with "
                             "McNemar p < 0.05, or a general perplexity ratio above 1.1)")
    assert block[2].startswith("Exam independent of training: not run") and block[3].startswith("Export faithful: not run")
    md = (out / REPORT_MD).read_text()
    headings = [ln[3:] for ln in md.splitlines() if ln.startswith("## ")]
    assert headings[:2] == ["Verdict", "Summary"] and "General ability: what the tuning cost" in headings
    verdict = md.split("## Verdict\n\n")[1].split("\n## ")[0]
    assert [ln for ln in verdict.splitlines() if ln] == block
    assert "| cloze_acc_norm | 40 | 75.0 | 50.0 | -25.0 | [" in md  # the retention table, with the interval
