"""The report's sections, each built from the outputs of the stages that produce it.

Every section is always present, in a fixed order, so a reader finds the same page every time;
a section whose stage was not part of the run says "not run". Each builder also returns the
section's one-line verdicts, which open the page (and which `make demo` prints).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

from subjectlm.report.collect import Stage, read_json, read_jsonl
from subjectlm.report.document import NOT_RUN, Image, Pre, Section, Table, Text

Built = tuple[Section, list[str]]


def pct(x: Any) -> str:
    return "–" if not isinstance(x, (int, float)) or math.isnan(x) else f"{100 * x:.1f}"


def num(x: Any, digits: int = 3) -> str:
    return "–" if not isinstance(x, (int, float)) or math.isnan(x) else f"{x:.{digits}f}"


def pval(x: Any) -> str:
    return "–" if not isinstance(x, (int, float)) else f"{x:.3g}{' *' if x < 0.05 else ''}"


def _of(stages: list[Stage], kind: str) -> list[Stage]:
    return [s for s in stages if s.kind == kind and s.dir is not None]


def _label(stage: Stage, stages_of_kind: list[Stage]) -> str:
    return f" ({stage.name})" if len(stages_of_kind) > 1 else ""


# --- exam -----------------------------------------------------------------------------------

def scoring_modes(obj: Any, marker: str) -> dict[str, dict[str, Any]]:
    """Per scoring mode, the part of an exam summary.json/compare.json that describes it.

    A file of several modes keeps one dict per mode under `modes` (eval/exam/report.py, eval/exam/compare.py;
    its top level repeats the primary mode's); a file of one mode (written before scoring modes
    existed) has `marker` (`overall` in compare.json, `macro` in summary.json) at the top."""
    if not isinstance(obj, dict):
        return {}
    if isinstance(obj.get("modes"), dict):
        inner = {m: v for m, v in obj["modes"].items() if isinstance(v, dict) and marker in v}
        if inner:
            return inner
    if marker in obj:
        return {"letter": obj}
    return {}


def _paired_row(name: str, s: dict[str, Any]) -> list[str]:
    delta = s.get("delta")
    return [name, str(s.get("n", "–")), pct(s.get("acc_a")), pct(s.get("acc_b")),
            "–" if delta is None else f"{100 * delta:+.1f}", f"{s.get('a_only', '–')} / {s.get('b_only', '–')}",
            pval(s.get("p_value"))]


PAIRED_HEADER = ["group", "questions", "start %", "tuned %", "Δ points", "start-only / tuned-only right", "McNemar p"]


def exam_section(stages: list[Stage]) -> Built:
    section = Section("Exam: starting vs tuned model", "exam")
    verdicts: list[str] = []
    evals = _of(stages, "eval")
    for stage in evals:
        label = _label(stage, evals)
        compare = scoring_modes(read_json(stage.dir / "compare" / "compare.json"), "overall")
        tuned = scoring_modes(read_json(stage.dir / "model" / "summary.json"), "macro")
        base = scoring_modes(read_json(stage.dir / "base" / "summary.json"), "macro")
        if not compare and not tuned:
            continue
        section.blocks.append(Text(f"Exam {stage.config.get('data', '?')}, split {stage.config.get('split', 'val')}, "
                                   f"{stage.config.get('shots', '?')}-shot{label}. Paired over the questions both "
                                   "models answered; exact McNemar test on the discordant questions; * p < 0.05."))
        for mode, result in compare.items():
            rows = [_paired_row("overall", result.get("overall", {}))]
            rows += [_paired_row(c, s) for c, s in result.get("categories", {}).items()]
            if len(result.get("subjects", {})) > 1:
                rows += [_paired_row(f"subject {n}", s) for n, s in result["subjects"].items()]
            section.blocks.append(Table(PAIRED_HEADER, rows, caption=f"scoring: {mode}"))
            o = result.get("overall", {})
            if o.get("delta") is not None:
                verdicts.append(f"exam ({mode}){label}: start {pct(o.get('acc_a'))}% -> tuned {pct(o.get('acc_b'))}% "
                                f"({100 * o['delta']:+.1f} points over {o.get('n')} questions, "
                                f"McNemar p={o.get('p_value', float('nan')):.3g})")
        if not compare:  # no base model to compare with: the tuned model's accuracies alone
            rows = [[mode, str(s.get("count", "–")), pct(base.get(mode, {}).get("micro")), pct(s.get("micro"))]
                    for mode, s in tuned.items()]
            section.blocks.append(Table(["scoring", "questions", "start %", "tuned %"], rows))
        chart = stage.dir / "compare" / "compare.png"
        if chart.is_file():
            section.blocks.append(Image(chart, f"exam accuracy by category, start vs tuned{label}"))
    if not section.blocks:
        section.blocks.append(Text(f"{NOT_RUN}: the recipe has no eval stage with an exam result."))
    return section, verdicts


# --- closed-book QA -------------------------------------------------------------------------

def paired_scores(obj: Any, prefix: str = "") -> dict[str, dict[str, Any]]:
    """Every paired before/after comparison in a QA compare.json: dicts with `mean_diff` and `ci`."""
    found: dict[str, dict[str, Any]] = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            if isinstance(value, dict) and "mean_diff" in value and "ci" in value:
                found[prefix + key] = value
            elif isinstance(value, dict):
                found.update(paired_scores(value, f"{prefix}{key} " if key not in ("scores", "overall") else prefix))
    return found


def _qa_dirs(stage: Stage) -> list[Path]:
    """Folders in an eval stage's output that hold a QA comparison (compare.json with paired scores)."""
    return sorted({p.parent for p in stage.dir.rglob("compare.json") if paired_scores(read_json(p))})


def qa_section(stages: list[Stage]) -> Built:
    section = Section("Closed-book QA", "qa")
    verdicts: list[str] = []
    for stage in _of(stages, "eval"):
        for folder in _qa_dirs(stage):
            compare = read_json(folder / "compare.json")
            scores = paired_scores(compare)
            rows = []
            for name, s in scores.items():
                low, high = (s.get("ci") or [None, None])[:2]
                excludes = isinstance(low, (int, float)) and isinstance(high, (int, float)) and (low > 0 or high < 0)
                rows.append([name, str(s.get("n", "–")), num(s.get("mean_before")), num(s.get("mean_after")),
                             num(s.get("mean_diff")), f"[{num(low)}, {num(high)}]{' *' if excludes else ''}",
                             f"{s.get('up', '–')} / {s.get('down', '–')}", pval(s.get("p_value"))])
                if name in ("ref_logprob", "f1", "key_fact_recall") and s.get("mean_diff") is not None:
                    verdicts.append(f"QA {name}: start {num(s.get('mean_before'))} -> tuned {num(s.get('mean_after'))} "
                                    f"(Δ {s['mean_diff']:+.3f}, 95% CI [{num(low)}, {num(high)}], n={s.get('n')})")
            where = folder.relative_to(stage.dir.parent) if folder.is_relative_to(stage.dir.parent) else folder
            section.blocks.append(Text(f"Questions answered greedily by both models ({where}); per-question scores "
                                       "paired; 95% paired-bootstrap CI of the mean difference (* excludes 0) and "
                                       "an exact sign test."))
            section.blocks.append(Table(["score", "questions", "start", "tuned", "Δ", "95% CI of Δ",
                                         "up / down", "sign-test p"], rows))
    if not section.blocks:
        section.blocks.append(Text(f"{NOT_RUN}: no eval stage with QA data (qa_data)."))
    return section, verdicts


# --- perplexity -----------------------------------------------------------------------------

def ppl_section(stages: list[Stage]) -> Built:
    section = Section("Held-out perplexity", "ppl")
    verdicts: list[str] = []
    for stage in _of(stages, "eval"):
        tuned, base = read_json(stage.dir / "ppl_model.json"), read_json(stage.dir / "ppl_base.json")
        if not isinstance(tuned, dict):
            continue
        base = base if isinstance(base, dict) else {}
        rows = []
        for path, f in tuned.get("files", {}).items():
            b = base.get("files", {}).get(path, {})
            rows.append([Path(path).name, str(f.get("tokens", "–")), num(b.get("ppl"), 2), num(f.get("ppl"), 2)])
        t_all, b_all = tuned.get("overall", {}).get("ppl"), base.get("overall", {}).get("ppl")
        rows.append(["overall", str(tuned.get("overall", {}).get("tokens", "–")), num(b_all, 2), num(t_all, 2)])
        section.blocks.append(Text("Perplexity of text neither model trained on (lower is better)."))
        section.blocks.append(Table(["file", "tokens", "start", "tuned"], rows))
        verdicts.append(f"held-out perplexity: start {num(b_all, 2)} -> tuned {num(t_all, 2)}")
    if not section.blocks:
        section.blocks.append(Text(f"{NOT_RUN}: no eval stage with ppl_data."))
    return section, verdicts


# --- arena ----------------------------------------------------------------------------------

def _duel_counts(battles: list[dict[str, Any]], model: str, other: str) -> tuple[int, int, int]:
    """(won, lost, tied) of `model` against `other`; a both-bad verdict is a tie."""
    won = lost = tied = 0
    for b in battles:
        if {b.get("model_a"), b.get("model_b")} != {model, other}:
            continue
        winner = {"A": b.get("model_a"), "B": b.get("model_b")}.get(b.get("winner"))
        won, lost, tied = won + (winner == model), lost + (winner == other), tied + (winner not in (model, other))
    return won, lost, tied


def _duel(stage: Stage, battles: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The arena stage's tuned-vs-base win rate and interval (recomputed by the arena's own function
    for a run recorded before the stage returned it)."""
    duel = stage.result.get("tuned_vs_base")
    if not isinstance(duel, dict):
        from subjectlm.arena.recipe_stage import head_to_head

        duel = head_to_head(battles, "tuned", "base", int(stage.config.get("n_bootstrap", 1000)),
                            int(stage.config.get("seed", 0)))
    return duel if duel.get("battles") else None


def arena_section(stages: list[Stage]) -> Built:
    section = Section("Arena ratings", "arena")
    verdicts: list[str] = []
    arenas = _of(stages, "arena")
    for stage in arenas:
        results = read_json(stage.dir / "results.json")
        if not isinstance(results, dict):
            continue
        label = _label(stage, arenas)
        overall = results.get("overall", {})
        section.blocks.append(Text(f"{overall.get('n_battles', '?')} battles, judge {stage.config.get('judge', '?')}"
                                   f"{label}; ratings on the Elo scale with 95% bootstrap intervals."))
        rows = [[r.get("model", "?"), num(r.get("bt"), 0), "–".join(num(x, 0) for x in r.get("bt_ci", [])),
                 num(r.get("elo"), 0), "–".join(num(x, 0) for x in r.get("elo_ci", [])), pct(r.get("win_rate")),
                 str(r.get("battles", "–"))] for r in overall.get("leaderboard", [])]
        header = ["model", "Bradley–Terry", "95% CI", "Elo", "95% CI", "win rate %", "battles"]
        section.blocks.append(Table(header, rows))
        models = [r.get("model") for r in overall.get("leaderboard", [])]
        if {"base", "tuned"} <= set(models):
            battles = read_jsonl(stage.dir / "battles.jsonl")
            duel = _duel(stage, battles)
            if duel:
                won, lost, tied = _duel_counts(battles, "tuned", "base")
                low, high = duel["ci"]
                section.blocks.append(Table(
                    ["pair", "battles", "tuned won", "base won", "tied", "tuned win rate", "95% CI"],
                    [["tuned vs base", str(duel["battles"]), str(won), str(lost), str(tied), num(duel["win_rate"], 2),
                      f"[{num(low, 2)}, {num(high, 2)}]"]],
                    caption="win rate of the tuned model against the start (ties count half; bootstrap over battles)"))
                verdicts.append(f"arena{label}: tuned win rate vs base {duel['win_rate']:.2f} "
                                f"(95% CI [{num(low, 2)}, {num(high, 2)}], {duel['battles']} battles, "
                                f"{won} won / {lost} lost / {tied} tied)")
    if not section.blocks:
        section.blocks.append(Text(f"{NOT_RUN}: no arena stage with results."))
    return section, verdicts


# --- export ---------------------------------------------------------------------------------

def export_section(stages: list[Stage]) -> Built:
    section = Section("GGUF export", "gguf")
    verdicts: list[str] = []
    for stage in _of(stages, "export"):
        rows = read_json(stage.dir / "verify.json")
        if isinstance(rows, list) and rows:
            section.blocks.append(Text("Each GGUF against the HF model on the same tokens: mean KL divergence "
                                       "(nats), top-1 agreement and both perplexities."))
            section.blocks.append(Table(["file", "tokens", "mean KLD", "top-1 %", "ppl HF", "ppl GGUF"], [
                [Path(str(r.get("name", "?"))).name, str(r.get("n_tokens", "–")),
                 f"{r.get('mean_kld', float('nan')):.2e}",
                 pct(r.get("top1")), num(r.get("ppl_hf"), 2), num(r.get("ppl_gguf"), 2)] for r in rows]))
            verdicts.append("export: " + "; ".join(f"{Path(str(r.get('name'))).stem} KLD {r.get('mean_kld', 0):.1e}, "
                                                   f"top-1 {pct(r.get('top1'))}%" for r in rows))
        answer = read_json(stage.dir / "answer.json")
        if isinstance(answer, dict):
            gguf = Path(str(answer.get("gguf", ""))).name
            section.blocks.append(Pre(f"Q: {answer.get('question', '')}\nA: {str(answer.get('answer', '')).strip()}",
                                      title=f"Sample answer through llama.cpp ({gguf})"))
            verdicts.append(f"export answer to {answer.get('question', '')!r}: "
                            f"{' '.join(str(answer.get('answer', '')).split())[:160]!r}")
        if not isinstance(rows, list) and not isinstance(answer, dict):
            section.blocks.append(Text(f"{NOT_RUN}: the export stage wrote no verify.json (verify: false)."))
    if not section.blocks:
        section.blocks.append(Text(f"{NOT_RUN}: no export stage."))
    return section, verdicts


# --- training and configs -------------------------------------------------------------------

def training_section(stages: list[Stage]) -> Built:
    section = Section("Training loss curves", "training")
    rows = []
    for stage in _of(stages, "train"):
        summary = read_json(stage.dir / "train_summary.json") or {}
        rows.append([stage.name, str(summary.get("steps", "–")), str(summary.get("trained_tokens", "–")),
                     num(summary.get("final_loss"), 4), num(stage.seconds, 0)])
        loss = stage.dir / "loss.png"
        if loss.is_file():
            section.blocks.append(Image(loss, f"{stage.name}: training loss by step"))
        else:
            section.blocks.append(Text(f"{stage.name}: no loss.png"))
    if rows:
        section.blocks.insert(0, Table(["stage", "steps", "trained tokens", "final loss", "seconds"], rows))
    else:
        section.blocks.append(Text(f"{NOT_RUN}: no training stage."))
    return section, []


def config_section(stages: list[Stage]) -> Built:
    section = Section("Stage configs", "configs")
    for stage in stages:
        seconds = "" if stage.seconds is None else f", {stage.seconds:.0f} s"
        text = "\n".join(f"{k}: {json.dumps(v, ensure_ascii=False, default=str)}" for k, v in stage.config.items())
        section.blocks.append(Pre(text, title=f"{stage.name} ({stage.kind}{seconds}): {stage.summary}"))
    if not section.blocks:
        section.blocks.append(Text(f"{NOT_RUN}: pipeline_state.json records no stage."))
    return section, []


def builders() -> tuple[Callable[[list[Stage]], Built], ...]:
    """The page, top to bottom (the verdict block and the summary are put in front of these by build_sections).
    retention.py builds its sections with this module's helpers, so it is imported here, not at the top."""
    from subjectlm.report.retention import general_section, independence_section

    return (exam_section, qa_section, ppl_section, general_section, independence_section, arena_section,
            export_section, training_section, config_section)


def build_sections(stages: list[Stage]) -> tuple[list[Section], list[str]]:
    """Every section, the verdict block first, then the summary of each section's one-line results."""
    from subjectlm.report.verdict import verdict_section

    sections, verdicts = [], []
    for builder in builders():
        section, lines = builder(stages)
        sections.append(section)
        verdicts += lines
    summary = Section("Summary", "summary", [Text(line) for line in verdicts] or [Text(f"{NOT_RUN}: no results yet.")])
    return [verdict_section(stages)[0], summary, *sections], verdicts
