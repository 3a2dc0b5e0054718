"""The validation report: built from the files the stages write (written here by the stages' own
writers where that is cheap), rendered as Markdown and as one self-contained HTML page that is
checked in headless Chromium (Debian's chromium through Playwright, as tests/test_arena_web.py)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from subjectlm.config import to_dict
from subjectlm.report import REPORT_HTML, REPORT_MD, summary_lines, write_report
from subjectlm.report.collect import load_stages
from subjectlm.report.sections import scoring_modes

REPO = Path(__file__).resolve().parents[1]
EXAM = REPO / "examples" / "data" / "exam"
INDEPENDENCE = "Exam independence: overlap with the training data, control questions"
HEADINGS = ["Verdict", "Summary", "Exam: starting vs tuned model", "Closed-book QA", "Held-out perplexity",
            "General ability: what the tuning cost", INDEPENDENCE, "Arena ratings",
            "GGUF export", "Training loss curves", "Stage configs"]


def _train_stage(out: Path, name: str, losses: list[float]) -> dict:
    from subjectlm.train.config import PTConfig
    from subjectlm.train.outputs import METRICS, plot_loss

    folder = out / name
    folder.mkdir(parents=True)
    rows = [{"step": 2 * i + 2, "loss": v} for i, v in enumerate(losses)]
    (folder / METRICS).write_text("".join(json.dumps(r) + "\n" for r in rows))
    plot_loss(folder / METRICS, folder / "loss.png")
    (folder / "train_summary.json").write_text(json.dumps({"steps": 2 * len(losses), "final_loss": losses[-1],
                                                          "trained_tokens": 4096}))
    config = PTConfig(data="examples/data/corpus", output_dir=str(folder), learning_rate=1e-3)
    return {"hash": "x", "result": {"adapter": str(folder), "summary": f"{name} done"}, "config": to_dict(config),
            "seconds": 12.5}


def _exam_run(folder: Path, right: set[int], docs, infos, model: str) -> None:
    """An exam run scored both ways: letters right on every third question (both models), cloze on `right`."""
    from subjectlm.eval.exam.prediction import Prediction
    from subjectlm.eval.exam.report import summarize

    folder.mkdir(parents=True)
    records = []
    for i, d in enumerate(docs):
        modes = {"letter": {"prediction": "A", "correct": i % 3 == 0},
                 "cloze_acc": {"prediction": "B", "correct": i in right}}
        records.append({"subject": "kestrel_geology", "id": d.id, "repeat": 0, "answer": d.answer, "modes": modes,
                        "prediction": "A", "correct": i % 3 == 0})
    (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = summarize([Prediction.from_json(r) for r in records], infos, {"model": model, "data": str(EXAM), "format": "ceval", "split": "val",
                                         "shots": 5, "with_prompt": False, "cot": False, "n_times": 1,
                                         "scoring": "both", "scoring_modes": ["letter", "cloze_acc"]})
    (folder / "summary.json").write_text(json.dumps(summary))


def _eval_stage(out: Path) -> dict:
    from subjectlm.eval.exam.compare import compare_runs
    from subjectlm.eval.exam.directory import read_exam
    from subjectlm.eval.recipe_stage import EvalStageConfig

    folder = out / "eval"
    _fmt, exams = read_exam(EXAM, "ceval", "val")
    docs, infos = exams[0].docs, [e.info for e in exams]
    n = len(docs)
    _exam_run(folder / "base", set(range(0, n, 4)), docs, infos, "default")        # a quarter right
    _exam_run(folder / "model", set(range(0, n, 4)) | set(range(1, n, 2)), docs, infos, "tuned")
    compare_runs(folder / "base", folder / "model", folder / "compare")
    for which, ppl in (("model", 9.5), ("base", 26.0)):
        (folder / f"ppl_{which}.json").write_text(json.dumps(
            {"model": which, "files": {"/x/heldout.txt": {"tokens": 400, "nll": 1.0, "ppl": ppl}},
             "overall": {"tokens": 400, "ppl": ppl}}))
    qa = folder / "qa" / "compare"
    qa.mkdir(parents=True)
    # the shape of eval/stats.py's paired_comparison: means, bootstrap CI of the difference, sign test
    scores = {"ref_logprob": {"mean_before": -2.86, "mean_after": -1.54, "n": 5, "mean_diff": 1.32,
                              "ci": [0.94, 1.70], "up": 5, "down": 0, "ties": 0, "p_value": 0.0625},
              "f1": {"mean_before": 0.1, "mean_after": 0.44, "n": 5, "mean_diff": 0.34, "ci": [0.22, 0.44],
                     "up": 5, "down": 0, "ties": 0, "p_value": 0.0625}}
    (qa / "compare.json").write_text(json.dumps({"scores": scores}))
    # general ability: the same questions standing in for a general exam, half right before, a quarter after
    from subjectlm.eval.general import GeneralExam, exam_entry
    from subjectlm.io import write_json

    general = folder / "general" / "exam"
    _exam_run(general / "base", set(range(0, n, 2)), docs, infos, "default")
    _exam_run(general / "model", set(range(0, n, 4)), docs, infos, "tuned")
    compared = compare_runs(general / "base", general / "model", general / "compare")
    write_json(folder / "retention.json", {"exams": [exam_entry(GeneralExam(str(EXAM), "exam"), general, compared)],
                                           "ppl": None})
    config = EvalStageConfig(data=str(EXAM), base_model="default", model="tuned", output_dir=str(folder),
                             ppl_data=["/x/heldout.txt"], general_data=[str(EXAM)])
    return {"hash": "x", "result": {"summary": "eval done"}, "config": to_dict(config), "seconds": 30.0}


def _arena_stage(out: Path) -> dict:
    from subjectlm.arena.config import ResultsConfig
    from subjectlm.arena.recipe_stage import ArenaStageConfig
    from subjectlm.arena.results import run_results

    folder = out / "arena"
    folder.mkdir(parents=True)
    winners = ["B"] * 14 + ["A"] * 2 + ["tie"] * 4  # model_b is the tuned model
    (folder / "battles.jsonl").write_text("".join(json.dumps(
        {"prompt_id": f"p{i}", "model_a": "base", "model_b": "tuned", "winner": w, "judge": "reference",
         "category": "recall"}) + "\n" for i, w in enumerate(winners)))
    run_results(ResultsConfig(output_dir=str(folder), n_bootstrap=50))
    config = ArenaStageConfig(prompts="p.jsonl", output_dir=str(folder), base_model="default")
    return {"hash": "x", "result": {"summary": "arena done"}, "config": to_dict(config), "seconds": 40.0}


def _export_stage(out: Path) -> dict:
    from subjectlm.export.job import ExportStageConfig
    from subjectlm.export.verify import VerifyRow

    folder = out / "export"
    folder.mkdir(parents=True)
    fields = {f.name for f in dataclasses.fields(VerifyRow)}
    rows = [VerifyRow(**{k: v for k, v in dict(name=str(folder / name), n_tokens=511, mean_kld=kld, top1=top1,
                                                ppl_hf=9.52, ppl_gguf=ppl, tokens_match=True).items() if k in fields})
            for name, kld, top1, ppl in (("model-f16.gguf", 2.1e-6, 0.998, 9.53),
                                         ("model-f16-q8_0.gguf", 4.4e-4, 0.984, 9.60))]
    (folder / "verify.json").write_text(json.dumps([dataclasses.asdict(r) for r in rows]))
    (folder / "answer.json").write_text(json.dumps({"gguf": str(folder / "model-f16-q8_0.gguf"),
                                                    "question": "What kind of volcano is Mount Harrow?",
                                                    "answer": "Mount Harrow is a stratovolcano."}))
    config = ExportStageConfig(output_dir=str(folder), question="What kind of volcano is Mount Harrow?")
    return {"hash": "x", "result": {"summary": "export done"}, "config": to_dict(config), "seconds": 20.0}


@pytest.fixture
def run_dir(tmp_path):
    out = tmp_path / "demo"
    out.mkdir()
    state = {"pt": _train_stage(out, "pt", [3.2, 2.5, 1.9, 1.4]), "sft": _train_stage(out, "sft", [2.0, 1.1, 0.7]),
             "eval": _eval_stage(out), "export": _export_stage(out), "arena": _arena_stage(out)}
    (out / "pipeline_state.json").write_text(json.dumps(state))
    return out


def test_stage_kinds_come_from_the_real_configs(run_dir):
    assert [(s.name, s.kind) for s in load_stages(run_dir)] == [
        ("pt", "train"), ("sft", "train"), ("eval", "eval"), ("export", "export"), ("arena", "arena")]


def test_markdown_lists_every_section_and_the_numbers(run_dir):
    path = write_report(run_dir)
    assert path == run_dir / REPORT_HTML and path.is_file()
    md = (run_dir / REPORT_MD).read_text()
    assert [ln[3:] for ln in md.splitlines() if ln.startswith("## ")] == HEADINGS
    # every section has its results, but the overlap check (no train_data) and hence its verdict line
    assert {s.splitlines()[0] for s in md.split("\n## ")[1:] if "not run" in s} == {"Verdict", INDEPENDENCE}
    from subjectlm.eval.exam.directory import read_exam

    n = len(read_exam(EXAM, "ceval", "val")[1][0].docs)
    assert n % 4 == 0  # so the accuracies below are exact
    lines = summary_lines(run_dir)
    letter = next(ln for ln in lines if ln.startswith("exam (letter)"))
    assert "(+0.0 points" in letter and "McNemar p=1)" in letter
    cloze = next(ln for ln in lines if ln.startswith("exam (cloze_acc)"))
    # base: every 4th right; tuned: those plus every odd one
    assert f"start 25.0% -> tuned 75.0% (+50.0 points over {n} questions" in cloze
    assert "**scoring: letter**" in md and "**scoring: cloze_acc**" in md
    assert any(ln.startswith("QA ref_logprob: start -2.860 -> tuned -1.540 (Δ +1.320") for ln in lines)
    assert "held-out perplexity: start 26.00 -> tuned 9.50" in lines
    arena = next(ln for ln in lines if ln.startswith("arena"))
    assert "tuned win rate vs base 0.80" in arena and "20 battles, 14 won / 2 lost / 4 tied" in arena
    assert any("stratovolcano" in ln for ln in lines)
    assert "![pt: training loss by step](pt/loss.png)" in md
    assert not list(run_dir.glob(".report*"))  # no temporary files left behind
    from subjectlm.report import verdict_block

    assert [line.split(" — ")[0] for line in verdict_block(run_dir)] == [
        "Knowledge gained: yes", "General ability kept: no", "Exam independent of training: not run",
        "Export faithful: yes"]
    general = next(ln for ln in lines if ln.startswith("general exam exam (cloze_acc)"))
    # 16 discordant questions, all lost: p = 2 / 2^16; the interval: 2000 bootstrap rounds, seed 0
    assert general == ("general exam exam (cloze_acc): start 50.0% -> tuned 25.0% (-25.0 points, 95% CI [-35.9, -14.1], "
                       "McNemar p=3.05e-05 *)")


def test_missing_stages_say_not_run(tmp_path):
    out = tmp_path / "only-pt"
    out.mkdir()
    (out / "pipeline_state.json").write_text(json.dumps({"pt": _train_stage(out, "pt", [2.0, 1.0])}))
    write_report(out)
    md = (out / REPORT_MD).read_text()
    sections = md.split("\n## ")[1:]
    status = {s.splitlines()[0]: "not run" in s for s in sections}
    assert status == {"Verdict": True, "Summary": True, "Exam: starting vs tuned model": True, "Closed-book QA": True,
                      "General ability: what the tuning cost": True, INDEPENDENCE: True,
                      "Held-out perplexity": True, "Arena ratings": True, "GGUF export": True,
                      "Training loss curves": False, "Stage configs": False}
    empty = tmp_path / "nothing"
    empty.mkdir()
    write_report(empty)  # no pipeline_state.json at all: a page that says so, not an error
    assert "not run" in (empty / REPORT_MD).read_text()


def test_scoring_modes_of_one_and_several_modes():
    one = {"overall": {"n": 3}, "categories": {}}
    assert scoring_modes(one, "overall") == {"letter": one}
    many = {"overall": {"n": 1}, "primary_mode": "letter",
            "modes": {"letter": {"overall": {"n": 1}}, "cloze_acc": {"overall": {"n": 2}}}}
    assert list(scoring_modes(many, "overall")) == ["letter", "cloze_acc"]
    assert scoring_modes({"macro": 0.2, "modes": {"cloze_acc_norm": {"macro": 0.5}}}, "macro") == {
        "cloze_acc_norm": {"macro": 0.5}}
    assert scoring_modes({"something": 1}, "macro") == {}


def test_report_page_in_chromium(run_dir, browser):
    path = write_report(run_dir)
    page = browser.new_page()
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.as_uri())
    assert page.locator("h2").all_inner_texts() == HEADINGS
    assert page.locator("nav a").count() == len(HEADINGS)
    images = page.locator("img")
    assert images.count() == 4  # pt and sft loss curves, the exam chart, the general exam's chart
    widths = page.eval_on_selector_all("img", "els => els.map(e => e.complete ? e.naturalWidth : 0)")
    assert all(w > 100 for w in widths)  # every embedded image decoded
    assert all(u.startswith(("file:", "data:")) for u in requests)  # self-contained: nothing fetched
    text = page.inner_text("body")
    assert "stratovolcano" in text and "McNemar p" in text and "95% CI of Δ" in text


def test_the_report_reads_what_the_real_eval_stage_wrote(tmp_path, tiny_llama_dir, tiny_qwen2_dir):
    """No hand-written results: the real eval stage (exam, QA, perplexity, overlap) on two tiny models,
    then the report, whose numbers must be the ones in the files the stage wrote."""
    from subjectlm.eval.recipe_stage import EvalStageConfig, run

    data = REPO / "examples" / "data"
    out = tmp_path / "run"
    config = EvalStageConfig(model=str(tiny_llama_dir), base_model=str(tiny_qwen2_dir), data=str(EXAM), shots=0,
                             limit=4, ppl_data=[str(data / "heldout.txt")], qa_data=str(data / "qa.jsonl"),
                             qa_max_new_tokens=4, train_data=[str(data / "sft")], output_dir=str(out / "eval"),
                             dtype="fp32", device="cpu")
    result = run(config)
    state = {"eval": {"hash": "x", "kind": "eval", "config": to_dict(config), "result": result, "seconds": 1.0}}
    (out / "pipeline_state.json").write_text(json.dumps(state))
    write_report(out)
    md = (out / REPORT_MD).read_text()

    stage = out / "eval"
    model, base = (json.loads((stage / which / "summary.json").read_text()) for which in ("model", "base"))
    for mode in ("letter", "cloze_acc"):
        after, before = (100 * s["modes"][mode]["micro"] for s in (model, base))
        assert f"exam ({mode}): start {before:.1f}% -> tuned {after:.1f}% (" in md, mode
    assert f"over {model['count']} questions" in md
    ppl = {which: json.loads((stage / f"ppl_{which}.json").read_text())["overall"]["ppl"] for which in ("model", "base")}
    assert f"held-out perplexity: start {ppl['base']:.2f} -> tuned {ppl['model']:.2f}" in md
    qa = json.loads(next((stage / "qa").rglob("compare.json")).read_text())["scores"]
    assert f"QA f1: start {qa['f1']['mean_before']:.3f} -> tuned {qa['f1']['mean_after']:.3f}" in md
    leakage = json.loads((stage / "leakage.json").read_text())
    assert f"{len(leakage['flagged'])} evaluation items overlap the training data" in md
    assert md.splitlines().count("## Verdict") == 1
