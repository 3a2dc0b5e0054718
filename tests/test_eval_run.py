"""Exam runs end to end on a hand-made exam: summary numbers, resume, submission, compare, ppl, stage, CLI."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import pytest

from subjectlm.cli import main
from subjectlm.eval.exam.compare import compare_runs, mcnemar_exact
from subjectlm.eval.exam.runner import PREDICTIONS, ExamConfig, read_predictions, run_exam

# subject -> val rows (question, answer); the fake model answers the letter after "pick".
VAL = {
    "alpha": [("q0 pick A", "A"), ("q1 pick B", "B"), ("q2 pick C", "D"), ("q3 pick A", "A")],   # 3/4
    "beta": [("q0 pick A", "B"), ("q1 pick B", "C"), ("q2 pick C", "C")],                        # 1/3
    "college_physics": [("q0 pick D", "D"), ("q1 pick D", "D")],                                # 2/2, C-Eval Hard
}
MAPPING = {"alpha": ["Alpha", "甲科", "STEM"], "beta": ["Beta", "乙科", "Humanities"],
           "college_physics": ["College Physics", "大学物理", "STEM"]}


def _write(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture()
def exam_dir(tmp_path) -> Path:
    root = tmp_path / "exam"
    for subject, rows in VAL.items():
        _write(root / "dev" / f"{subject}_dev.csv", ["id", "question", "A", "B", "C", "D", "answer", "explanation"],
               [[str(i), f"shot{i} of {subject}", "w", "x", "y", "z", "B", "because"] for i in range(3)])
        _write(root / "val" / f"{subject}_val.csv", ["id", "question", "A", "B", "C", "D", "answer"],
               [[str(i), q, "1", "2", "3", "4", a] for i, (q, a) in enumerate(rows)])
    _write(root / "test" / "alpha_test.csv", ["id", "question", "A", "B", "C", "D"],
           [["0", "t0 pick C", "1", "2", "3", "4"], ["1", "t1 pick A", "1", "2", "3", "4"]])
    (root / "subject_mapping.json").write_text(json.dumps(MAPPING, ensure_ascii=False), encoding="utf-8")
    return root


class FakeBackend:
    """Puts probability 0.7 on the letter after the last "pick" of the prompt; counts questions scored."""

    def __init__(self, fail_on: str | None = None):
        self.scored = 0
        self.fail_on = fail_on

    def chat_prompt(self, messages):
        return "".join(m["content"] for m in messages)

    def score_next(self, prompts, continuations, add_special_tokens=True):
        out = []
        for text in prompts:
            if self.fail_on and self.fail_on in text:
                raise RuntimeError("simulated crash")
            letter = re.findall(r"pick ([ABCD])", text)[-1]
            out.append([math.log(0.7) if c.strip() == letter else math.log(0.1) for c in continuations])
        self.scored += len(prompts)
        return out

    def generate(self, prompts, params):
        """The generation side (Backend.generate): an Answer per prompt, within params.max_tokens."""
        from subjectlm.backends import Answer

        texts = ["所以答案是" + re.findall(r"pick ([ABCD])", p)[-1] + "。" for p in prompts]
        return [Answer(t[: params.max_tokens], "stop", len(p), len(t)) for p, t in zip(prompts, texts)]

    def score_continuations(self, contexts, continuations, add_special_tokens=True):
        """Cloze: option text "4" is the likeliest after a question; after the bare cue (the neutral
        context of PMI) it is far likelier still, so PMI prefers the first other option."""
        out = []
        for text, options in zip(contexts, continuations):
            if self.fail_on and self.fail_on in text:
                raise RuntimeError("simulated crash")
            neutral = "pick" not in text
            out.append([(-0.1 if o == "4" else -5.0) if neutral else (-1.0 if o == "4" else -3.0) for o in options])
        return out


def _config(exam_dir, out, **kw) -> ExamConfig:
    return ExamConfig(data=str(exam_dir), output_dir=str(out), shots=2, **kw)


def test_summary_numbers(exam_dir, tmp_path):
    summary = run_exam(_config(exam_dir, tmp_path / "run"), log=lambda _: None, backend=FakeBackend())
    subj = summary["subjects"]
    assert (subj["alpha"]["accuracy"], subj["beta"]["accuracy"], subj["college_physics"]["accuracy"]) == (0.75, 1 / 3, 1.0)
    assert subj["alpha"]["name"] == "甲科" and subj["college_physics"]["hard"] is True
    assert summary["categories"]["STEM"]["accuracy"] == pytest.approx((0.75 + 1.0) / 2)  # mean over subjects
    assert summary["categories"]["STEM"]["micro"] == pytest.approx(5 / 6)                # over questions
    assert summary["categories"]["Humanities"]["accuracy"] == pytest.approx(1 / 3)
    assert summary["hard"]["accuracy"] == 1.0 and summary["hard"]["count"] == 2
    assert summary["macro"] == pytest.approx((0.75 + 1 / 3 + 1.0) / 3)
    assert summary["micro"] == pytest.approx(6 / 9) and summary["count"] == 9
    out = tmp_path / "run"
    for name in ("summary.json", "report.md", "categories.png", PREDICTIONS):
        assert (out / name).stat().st_size > 0
    assert not (out / "submission.json").exists()
    first = read_predictions(out / PREDICTIONS)[0]
    assert first.subject == "alpha" and first.prediction == "A" and first.correct is True
    assert first.probs == {"A": 0.7, "B": 0.1, "C": 0.1, "D": 0.1}
    assert "| Humanities | 1 | 3 | 33.33 | 33.33 |" in (out / "report.md").read_text()


def test_prompts_sent_are_the_official_ones(exam_dir, tmp_path):
    seen = []

    class Spy(FakeBackend):
        def score_next(self, prompts, continuations, add_special_tokens=True):
            seen.extend((p, tuple(continuations), add_special_tokens) for p in prompts)
            return super().score_next(prompts, continuations, add_special_tokens)

    run_exam(_config(exam_dir, tmp_path / "run", subjects=["beta"]), log=lambda _: None, backend=Spy())
    assert seen[0] == (
        "以下是中国关于乙科考试的单项选择题，请选出其中的正确答案。\n\n"
        "shot0 of beta\nA. w\nB. x\nC. y\nD. z\n答案：B\n\n"
        "shot1 of beta\nA. w\nB. x\nC. y\nD. z\n答案：B\n\n"
        "q0 pick A\nA. 1\nB. 2\nC. 3\nD. 4\n答案：", ("A", "B", "C", "D"), True)


def test_resume_after_crash_equals_uninterrupted_run(exam_dir, tmp_path):
    whole = tmp_path / "whole"
    run_exam(_config(exam_dir, whole), log=lambda _: None, backend=FakeBackend())
    crashed = tmp_path / "crashed"
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_exam(_config(exam_dir, crashed), log=lambda _: None, backend=FakeBackend(fail_on="乙科"))
    assert len(read_predictions(crashed / PREDICTIONS)) == 4  # alpha was finished and flushed
    with open(crashed / PREDICTIONS, "a", encoding="utf-8") as handle:
        handle.write('{"repeat": 0, "subject": "beta", "id": "0", "predic')  # a half-written line
    with pytest.raises(Exception, match="--resume"):
        run_exam(_config(exam_dir, crashed), log=lambda _: None, backend=FakeBackend())
    backend = FakeBackend()
    summary = run_exam(_config(exam_dir, crashed, resume=True), log=lambda _: None, backend=backend)
    assert backend.scored == 5  # only beta and college_physics
    assert (crashed / PREDICTIONS).read_text() == (whole / PREDICTIONS).read_text()
    assert summary["micro"] == pytest.approx(6 / 9)
    again = FakeBackend()
    run_exam(_config(exam_dir, crashed, resume=True), log=lambda _: None, backend=again)
    assert again.scored == 0
    with pytest.raises(Exception, match="other settings"):
        run_exam(_config(exam_dir, crashed, resume=True, with_prompt=True), log=lambda _: None, backend=again)


def test_test_split_writes_submission_and_n_times(exam_dir, tmp_path):
    out = tmp_path / "test"
    summary = run_exam(_config(exam_dir, out, split="test", n_times=2), log=lambda _: None, backend=FakeBackend())
    assert json.loads((out / "submission.json").read_text()) == {"alpha": {"0": "C", "1": "A"}}
    assert summary["macro"] is None and summary["repeats"] == 2
    assert len(read_predictions(out / PREDICTIONS)) == 4


def test_cot_extracts_letters(exam_dir, tmp_path):
    summary = run_exam(_config(exam_dir, tmp_path / "cot", cot=True), log=lambda _: None, backend=FakeBackend())
    assert summary["micro"] == pytest.approx(6 / 9)
    assert read_predictions(tmp_path / "cot" / PREDICTIONS)[0].response == "所以答案是A。"


def _fake_run(path: Path, outcomes: dict[str, list[bool]], categories: dict[str, str]) -> Path:
    path.mkdir(parents=True)
    subjects = {s: {"category": categories[s]} for s in outcomes}
    (path / "summary.json").write_text(json.dumps({"model": path.name, "subjects": subjects}))
    with open(path / PREDICTIONS, "w") as handle:
        for s, flags in outcomes.items():
            for i, ok in enumerate(flags):
                handle.write(json.dumps({"repeat": 0, "subject": s, "id": str(i), "correct": ok}) + "\n")
    return path


def test_compare_mcnemar_exact(tmp_path):
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(1, 7) == pytest.approx(18 / 256)     # 2 * (C(8,0) + C(8,1)) / 2^8
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)
    assert mcnemar_exact(5, 5) == 1.0
    # alpha: 20 questions; A right on 0-9; B right on 0-8 and 10-16 -> A-only 1 (q9), B-only 7 (q10-16).
    a = _fake_run(tmp_path / "a", {"alpha": [i < 10 for i in range(20)], "beta": [True, False]},
                  {"alpha": "STEM", "beta": "Other"})
    b = _fake_run(tmp_path / "b", {"alpha": [i < 9 or 10 <= i <= 16 for i in range(20)], "beta": [True, True],
                                   "gamma": [True]}, {"alpha": "STEM", "beta": "Other", "gamma": "STEM"})
    result = compare_runs(a, b, tmp_path / "cmp")
    alpha = result["subjects"]["alpha"]
    assert (alpha["n"], alpha["acc_a"], alpha["acc_b"], alpha["a_only"], alpha["b_only"]) == (20, 0.5, 0.8, 1, 7)
    assert alpha["delta"] == pytest.approx(0.3) and alpha["p_value"] == pytest.approx(18 / 256)
    assert "gamma" not in result["subjects"]  # only questions both runs answered
    assert result["overall"]["n"] == 22 and result["overall"]["b_only"] == 8
    assert result["overall"]["p_value"] == pytest.approx(2 * (1 + 9) / 512)
    assert result["categories"]["Other"]["delta"] == pytest.approx(0.5)
    for name in ("compare.json", "compare.md", "compare.png"):
        assert (tmp_path / "cmp" / name).stat().st_size > 0


def test_ppl_runs_on_chinese_text(tiny_llama_dir, tmp_path):
    """The windows themselves are tested against per-token contexts in test_loglik.py (score_rolling)."""
    from subjectlm.eval.ppl import PPLConfig, run_ppl

    text = tmp_path / "held_out.txt"
    text.write_text("光合作用是植物利用光能把二氧化碳和水合成有机物的过程。" * 3, encoding="utf-8")
    result = run_ppl(PPLConfig(model=str(tiny_llama_dir), data=[str(text)], max_length=32, stride=16,
                               output=str(tmp_path / "ppl.json")), log=lambda _: None)
    assert result["files"][str(text)]["ppl"] > 1 and json.loads((tmp_path / "ppl.json").read_text())["overall"]["tokens"] > 0


def test_stage_examines_both_models_and_compares(exam_dir, tmp_path, tiny_llama_dir, tiny_qwen2_dir):
    from subjectlm.eval.recipe_stage import EvalStageConfig, run

    result = run(EvalStageConfig(model=str(tiny_llama_dir), base_model=str(tiny_qwen2_dir), data=str(exam_dir),
                                 shots=1, output_dir=str(tmp_path / "stage")))
    assert "McNemar" in result["summary"] and "over 9 questions" in result["summary"]
    for sub in ("model/summary.json", "base/summary.json", "compare/compare.md"):
        assert (tmp_path / "stage" / sub).is_file()
    alone = run(EvalStageConfig(model=str(tiny_llama_dir), base_model=str(tiny_llama_dir), data=str(exam_dir),
                                shots=1, output_dir=str(tmp_path / "alone")))
    assert "McNemar" not in alone["summary"] and not (tmp_path / "alone" / "base").exists()


def test_cli_exam_and_compare(exam_dir, tmp_path, tiny_llama_dir, capsys):
    args = ["eval", "exam", "--model", str(tiny_llama_dir), "--data", str(exam_dir), "--subjects", "alpha,beta",
            "--shots", "1", "--output_dir", str(tmp_path / "cli")]
    assert main(args) == 0
    summary = json.loads((tmp_path / "cli" / "summary.json").read_text())
    assert set(summary["subjects"]) == {"alpha", "beta"} and summary["count"] == 7
    assert main(args) == 2  # exists, no --resume/--overwrite: a user error
    assert "--resume" in capsys.readouterr().err
    assert main(["eval", "compare", str(tmp_path / "cli"), str(tmp_path / "cli"), "--output_dir",
                 str(tmp_path / "cmp")]) == 0
    assert main(["eval", "exam", "--data", str(tmp_path / "nowhere")]) == 2
    assert "exam directory not found" in capsys.readouterr().err


@pytest.mark.parametrize("action", ["exam", "ppl", "compare"])
def test_cli_help(action, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", action, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert {"exam": "--shots", "ppl": "--stride", "compare": "RUN_B"}[action] in out


# -- scoring modes (letter and cloze side by side) --------------------------------------------------
# Cloze with FakeBackend picks option "4" (D) under acc/acc_norm/acc_bytes and A under PMI:
#   alpha answers A B D A -> cloze 1/4, pmi 2/4; beta B C C -> 0/3, 0/3; college_physics D D -> 2/2, 0/2.
CLOZE_WANT = {"alpha": 0.25, "beta": 0.0, "college_physics": 1.0}
PMI_WANT = {"alpha": 0.5, "beta": 0.0, "college_physics": 0.0}


def test_scoring_both_summary_report_and_predictions(exam_dir, tmp_path):
    out = tmp_path / "both"
    summary = run_exam(_config(exam_dir, out, scoring="both"), log=lambda _: None, backend=FakeBackend())
    assert summary["scoring_modes"] == ["letter", "cloze_acc", "cloze_acc_norm", "cloze_acc_bytes", "cloze_acc_pmi"]
    assert summary["primary_mode"] == "letter" and summary["micro"] == pytest.approx(6 / 9)  # top level: letter
    modes = summary["modes"]
    assert modes["letter"]["macro"] == pytest.approx((0.75 + 1 / 3 + 1.0) / 3)
    for mode in ("cloze_acc", "cloze_acc_norm", "cloze_acc_bytes"):
        assert {h: s["accuracy"] for h, s in modes[mode]["subjects"].items()} == CLOZE_WANT
        assert modes[mode]["micro"] == pytest.approx(3 / 9)
        assert modes[mode]["categories"]["STEM"]["accuracy"] == pytest.approx((0.25 + 1.0) / 2)
        assert modes[mode]["hard"]["accuracy"] == 1.0
    assert {h: s["accuracy"] for h, s in modes["cloze_acc_pmi"]["subjects"].items()} == PMI_WANT
    saved = json.loads((out / "summary.json").read_text())
    assert set(saved["modes"]) == set(summary["modes"])
    first = read_predictions(out / PREDICTIONS)[0]
    assert first.modes["letter"] == {"prediction": "A", "correct": True}
    assert first.modes["cloze_acc"] == {"prediction": "D", "correct": False}
    assert first.modes["cloze_acc_pmi"] == {"prediction": "A", "correct": True}
    assert first.cloze["logprobs"] == {"A": -3.0, "B": -3.0, "C": -3.0, "D": -1.0}
    assert first.cloze["neutral_logprobs"] == {"A": -5.0, "B": -5.0, "C": -5.0, "D": -0.1}
    report = (out / "report.md").read_text()
    assert "| group | subjects | questions | letter % | cloze acc % | cloze acc_norm % | cloze acc_bytes % " \
           "| cloze acc_pmi % |" in report
    assert "| **overall** | 3 | 9 | 69.44 | 41.67 | 41.67 | 41.67 | 16.67 |" in report
    assert "| alpha | 甲科 | STEM | 4 | 75.00 | 25.00 | 25.00 | 25.00 | 50.00 |" in report
    assert (out / "categories.png").stat().st_size > 0


def test_scoring_cloze_alone_heads_with_acc_norm(exam_dir, tmp_path):
    class NoLetters(FakeBackend):
        def score_next(self, *a, **k):
            raise AssertionError("cloze scoring must not ask for letters")

    summary = run_exam(_config(exam_dir, tmp_path / "cloze", scoring="cloze"), log=lambda _: None,
                       backend=NoLetters())
    assert summary["primary_mode"] == "cloze_acc_norm" and "letter" not in summary["modes"]
    assert summary["micro"] == pytest.approx(3 / 9)
    assert read_predictions(tmp_path / "cloze" / PREDICTIONS)[0].prediction == "D"


def test_cloze_prompts_sent(exam_dir, tmp_path):
    seen = []

    class Spy(FakeBackend):
        def score_continuations(self, contexts, continuations, add_special_tokens=True):
            seen.append((list(contexts), [list(c) for c in continuations], add_special_tokens))
            return super().score_continuations(contexts, continuations, add_special_tokens)

    run_exam(_config(exam_dir, tmp_path / "run", subjects=["beta"], scoring="cloze"), log=lambda _: None,
             backend=Spy())
    contexts, continuations, special = seen[0]
    assert contexts[0] == ("以下是中国关于乙科考试的单项选择题，请选出其中的正确答案。\n\n"
                           "shot0 of beta\n答案：x\n\nshot1 of beta\n答案：x\n\nq0 pick A\n答案：")
    assert continuations[0] == ["1", "2", "3", "4"] and special is True
    assert seen[1] == (["答案："], [["1", "2", "3", "4"]], True)  # the neutral context, each text once


def test_scoring_both_resume_after_crash_equals_uninterrupted_run(exam_dir, tmp_path):
    whole = tmp_path / "whole"
    run_exam(_config(exam_dir, whole, scoring="both"), log=lambda _: None, backend=FakeBackend())
    crashed = tmp_path / "crashed"
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_exam(_config(exam_dir, crashed, scoring="both"), log=lambda _: None, backend=FakeBackend(fail_on="乙科"))
    backend = FakeBackend()
    summary = run_exam(_config(exam_dir, crashed, scoring="both", resume=True), log=lambda _: None, backend=backend)
    assert backend.scored == 5
    assert (crashed / PREDICTIONS).read_text() == (whole / PREDICTIONS).read_text()
    assert summary["modes"]["cloze_acc"]["micro"] == pytest.approx(3 / 9)
    with pytest.raises(Exception, match="other settings"):
        run_exam(_config(exam_dir, crashed, scoring="letter", resume=True), log=lambda _: None, backend=backend)


def test_resume_of_a_run_from_before_scoring_modes(exam_dir, tmp_path):
    out = tmp_path / "old"
    with pytest.raises(RuntimeError):
        run_exam(_config(exam_dir, out), log=lambda _: None, backend=FakeBackend(fail_on="乙科"))
    saved = json.loads((out / "run_config.json").read_text())
    del saved["scoring"]  # as written before --scoring existed
    (out / "run_config.json").write_text(json.dumps(saved))
    lines = [json.loads(x) for x in (out / PREDICTIONS).read_text().splitlines()]
    (out / PREDICTIONS).write_text("".join(json.dumps({k: v for k, v in r.items() if k != "modes"}) + "\n"
                                           for r in lines))  # old records: letter at the top level only
    summary = run_exam(_config(exam_dir, out, resume=True), log=lambda _: None, backend=FakeBackend())
    assert summary["micro"] == pytest.approx(6 / 9) and summary["modes"]["letter"]["micro"] == pytest.approx(6 / 9)


def test_cot_needs_letter_scoring(exam_dir, tmp_path):
    from subjectlm.config import ConfigError

    with pytest.raises(ConfigError, match="scoring"):
        _config(exam_dir, tmp_path / "x", cot=True, scoring="both")
    with pytest.raises(ConfigError, match="scoring"):
        _config(exam_dir, tmp_path / "x", scoring="ppl")


def test_compare_runs_mcnemar_per_scoring_mode(exam_dir, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    run_exam(_config(exam_dir, a, scoring="both"), log=lambda _: None, backend=FakeBackend())

    class Better(FakeBackend):  # cloze now picks the right answer everywhere
        def score_continuations(self, contexts, continuations, add_special_tokens=True):
            out = []
            for text, options in zip(contexts, continuations):
                answer = "pick" in text and _correct_text(text)
                out.append([-1.0 if answer and o == answer else -3.0 for o in options])
            return out

    run_exam(_config(exam_dir, b, scoring="both"), log=lambda _: None, backend=Better())
    result = compare_runs(a, b, tmp_path / "cmp")
    assert result["primary_mode"] == "letter" and result["overall"]["delta"] == 0  # letters unchanged
    cloze = result["modes"]["cloze_acc"]["overall"]
    assert (cloze["n"], cloze["acc_a"], cloze["acc_b"], cloze["a_only"], cloze["b_only"]) == (9, 3 / 9, 1.0, 0, 6)
    assert cloze["p_value"] == pytest.approx(2 / 64)
    text = (tmp_path / "cmp" / "compare.md").read_text()
    assert "## Every scoring mode" in text and "| cloze_acc | **overall** | 9 | 33.33 | 100.00 | +66.67 | 0 / 6 |" in text
    letter_only = tmp_path / "c"
    run_exam(_config(exam_dir, letter_only), log=lambda _: None, backend=FakeBackend())
    assert set(compare_runs(letter_only, b, tmp_path / "cmp2")["modes"]) == {"letter"}  # modes both carry


def _correct_text(context: str) -> str:
    """The correct option's text (options are 1, 2, 3, 4) of the question a cloze context ends with."""
    subject = next(h for h, (_, name, _) in MAPPING.items() if f"关于{name}考试" in context)
    question = context.rsplit("\n\n", 1)[-1].split("\n")[0]
    answer = dict(VAL[subject])[question]
    return str("ABCD".index(answer) + 1)
