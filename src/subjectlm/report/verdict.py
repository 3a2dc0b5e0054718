"""The verdict block: four lines a lab can sign, each yes / no / not run, with its evidence and thresholds.

    Knowledge gained               the subject exam (per scoring mode), closed-book QA, held-out perplexity
    General ability kept           the general exams' paired deltas and intervals, general perplexity ratio
    Exam independent of training   the overlap check's counts (leakage.json) and, when the exam has a
                                   `control` category, the gain on control questions (a gain there means
                                   the exam can be guessed)
    Export faithful                each GGUF's mean KL divergence and top-1 agreement with the HF model

`collect_evidence` reads what the stages wrote; `verdict_lines` (pure) turns that evidence and the
thresholds (eval/verdict_thresholds.py, set in the recipe's eval stage as `verdict:`) into the lines.
A line says "not run" when the run has no evidence for it, never a guess.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from subjectlm.eval.verdict_thresholds import VerdictThresholds, thresholds_from
from subjectlm.report.collect import Stage, read_json
from subjectlm.report.document import Section, Text
from subjectlm.report.sections import paired_scores

YES, NO, NOT_RUN = "yes", "no", "not run"
QA_SCORES = ("ref_logprob", "f1", "key_fact_recall")


@dataclasses.dataclass(frozen=True)
class Paired:
    """One exam comparison, start (a) against tuned (b), as eval/exam/compare.py writes it."""
    what: str            # e.g. "exam cloze_acc", "general cloze_acc", "control letter"
    n: int
    acc_a: float
    acc_b: float
    p_value: float
    ci: tuple[float, float] | None = None  # bootstrap interval of acc_b - acc_a

    @property
    def delta(self) -> float:
        return self.acc_b - self.acc_a


@dataclasses.dataclass(frozen=True)
class Interval:
    """A paired mean difference with its 95% bootstrap interval (closed-book QA)."""
    what: str
    before: float
    after: float
    low: float
    high: float


@dataclasses.dataclass(frozen=True)
class Ratio:
    """Perplexity of the start and the tuned model on the same text."""
    what: str
    start: float
    tuned: float

    @property
    def ratio(self) -> float:
        return self.tuned / self.start


@dataclasses.dataclass(frozen=True)
class Leakage:
    checked: int | None  # evaluation items checked (None: the file does not say)
    flagged: int


@dataclasses.dataclass(frozen=True)
class Gguf:
    name: str
    kld: float
    top1: float


@dataclasses.dataclass
class Evidence:
    exam: list[Paired] = dataclasses.field(default_factory=list)
    qa: list[Interval] = dataclasses.field(default_factory=list)
    ppl: list[Ratio] = dataclasses.field(default_factory=list)
    general: list[Paired] = dataclasses.field(default_factory=list)
    general_ppl: list[Ratio] = dataclasses.field(default_factory=list)
    leakage: list[Leakage] = dataclasses.field(default_factory=list)
    control: list[tuple[Paired, Paired]] = dataclasses.field(default_factory=list)  # (taught, control)
    gguf: list[Gguf] = dataclasses.field(default_factory=list)


# --- the lines (pure) -----------------------------------------------------------------------

def _points(x: float) -> str:
    return f"{100 * x:+.1f}"


def _paired_text(p: Paired) -> str:
    ci = f" [{_points(p.ci[0])}, {_points(p.ci[1])}]" if p.ci else ""
    return (f"{p.what} {100 * p.acc_a:.1f}% -> {100 * p.acc_b:.1f}% ({_points(p.delta)} points{ci}, "
            f"p={p.p_value:.2g}, n={p.n})")


def _line(name: str, verdict: str, evidence: list[str], threshold: str) -> str:
    said = "; ".join(evidence) if evidence else "nothing measured"
    return f"{name}: {verdict} — {said} (threshold: {threshold})"


def knowledge_line(ev: Evidence, t: VerdictThresholds) -> str:
    gained = lost = False
    texts = []
    for p in ev.exam:
        significant = p.p_value < t.alpha
        gained, lost = gained or (significant and p.delta > 0), lost or (significant and p.delta < 0)
        texts.append(_paired_text(p))
    for q in ev.qa:
        gained, lost = gained or q.low > 0, lost or q.high < 0
        texts.append(f"{q.what} {q.before:.3f} -> {q.after:.3f} (95% CI of Δ [{q.low:+.3f}, {q.high:+.3f}])")
    for r in ev.ppl:
        gained = gained or r.ratio <= t.knowledge_max_ppl_ratio
        texts.append(f"{r.what} {r.start:.2f} -> {r.tuned:.2f} (x{r.ratio:.3f})")
    verdict = NOT_RUN if not texts else NO if lost or not gained else YES
    return _line("Knowledge gained", verdict, texts,
                 f"yes when a subject measure gains and none drops: exam McNemar p < {t.alpha:g}, QA 95% CI above 0, "
                 f"perplexity ratio <= {t.knowledge_max_ppl_ratio:g}")


def general_line(ev: Evidence, t: VerdictThresholds) -> str:
    lost = False
    texts = []
    for p in ev.general:
        lost = lost or (p.delta < 0 and p.p_value < t.alpha and -100 * p.delta > t.general_max_drop)
        texts.append(_paired_text(p))
    for r in ev.general_ppl:
        lost = lost or r.ratio > t.general_max_ppl_ratio
        texts.append(f"{r.what} {r.start:.2f} -> {r.tuned:.2f} (x{r.ratio:.3f})")
    verdict = NOT_RUN if not texts else NO if lost else YES
    return _line("General ability kept", verdict, texts,
                 f"no on a general-exam drop of more than {t.general_max_drop:g} points with McNemar "
                 f"p < {t.alpha:g}, or a general perplexity ratio above {t.general_max_ppl_ratio:g}")


def independence_line(ev: Evidence, t: VerdictThresholds) -> str:
    leaked = sum(item.flagged for item in ev.leakage)
    failed = bool(ev.leakage) and leaked > t.max_leaked
    texts = []
    if ev.leakage:
        checked = [item.checked for item in ev.leakage]
        total = f" of {sum(checked)}" if None not in checked else ""
        texts.append(f"{leaked}{total} evaluation items overlap the training data")
    else:
        texts.append("overlap not checked (the eval stage had no train_data)")
    for taught, control in ev.control:
        failed = failed or (control.delta > 0 and control.p_value < t.alpha)
        texts.append(f"{_paired_text(taught)} vs {_paired_text(control)} "
                     f"(taught minus control {_points(taught.delta - control.delta)} points)")
    verdict = NO if failed else YES if ev.leakage else NOT_RUN
    return _line("Exam independent of training", verdict, texts,
                 f"at most {t.max_leaked} overlapping items; no gain on control questions with McNemar p < {t.alpha:g}")


def export_line(ev: Evidence, t: VerdictThresholds) -> str:
    failed = any(g.kld > t.export_max_kld or g.top1 < t.export_min_top1 for g in ev.gguf)
    texts = [f"{g.name} KLD {g.kld:.1e}, top-1 {100 * g.top1:.1f}%" for g in ev.gguf]
    verdict = NOT_RUN if not texts else NO if failed else YES
    return _line("Export faithful", verdict, texts,
                 f"each GGUF: mean KLD <= {t.export_max_kld:g} nats, top-1 >= {100 * t.export_min_top1:g}%")


def verdict_lines(ev: Evidence, t: VerdictThresholds) -> list[str]:
    return [knowledge_line(ev, t), general_line(ev, t), independence_line(ev, t), export_line(ev, t)]


# --- the evidence, from what the stages wrote -------------------------------------------------

def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == x


def paired(what: str, s: Any) -> Paired | None:
    """A compare.json group (n, acc_a, acc_b, p_value, delta_ci?) as Paired; None when incomplete."""
    if not isinstance(s, dict) or not all(_number(s.get(k)) for k in ("n", "acc_a", "acc_b", "p_value")):
        return None
    ci = s.get("delta_ci")
    ci = (ci[0], ci[1]) if isinstance(ci, list) and len(ci) == 2 and all(map(_number, ci)) else None
    return Paired(what, int(s["n"]), s["acc_a"], s["acc_b"], s["p_value"], ci)


def _ratio(what: str, start: Any, tuned: Any) -> Ratio | None:
    return Ratio(what, start, tuned) if _number(start) and _number(tuned) and start > 0 else None


def _modes(compare: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(compare, dict):
        return {}
    modes = compare.get("modes")
    return {m: v for m, v in modes.items() if isinstance(v, dict)} if isinstance(modes, dict) else {"letter": compare}


def _leakage(data: Any) -> Leakage | None:
    """leakage.json (subjectlm.data.overlap's OverlapReport.to_json): the flagged items and, when it says,
    how many were checked."""
    if not isinstance(data, dict) or not isinstance(data.get("flagged"), list):
        return None
    counts = data.get("counts") if isinstance(data.get("counts"), dict) else {}
    checked = next((counts[k] for k in ("items", "checked", "items_checked") if _number(counts.get(k))), None)
    return Leakage(int(checked) if checked is not None else None, len(data["flagged"]))


def _eval_evidence(stage: Stage, ev: Evidence, label: str) -> None:
    folder = stage.dir
    for mode, r in _modes(read_json(folder / "compare" / "compare.json")).items():
        if (p := paired(f"exam{label} {mode}", r.get("overall"))) is not None:
            ev.exam.append(p)
        control = r.get("control") if isinstance(r.get("control"), dict) else {}
        taught, ctrl = paired(f"taught{label} {mode}", control.get("taught")), \
            paired(f"control {mode}", control.get("control"))
        if taught and ctrl:
            ev.control.append((taught, ctrl))
    for path in sorted(folder.rglob("compare.json")):
        for name, s in paired_scores(read_json(path)).items():
            low, high = (s.get("ci") or [None, None])[:2]
            if name in QA_SCORES and all(map(_number, (s.get("mean_before"), s.get("mean_after"), low, high))):
                ev.qa.append(Interval(f"QA{label} {name}", s["mean_before"], s["mean_after"], low, high))
    tuned, base = read_json(folder / "ppl_model.json"), read_json(folder / "ppl_base.json")
    if isinstance(tuned, dict) and isinstance(base, dict):
        r = _ratio(f"held-out perplexity{label}", base.get("overall", {}).get("ppl"), tuned.get("overall", {}).get("ppl"))
        ev.ppl += [r] if r else []
    retention = read_json(folder / "retention.json")
    if isinstance(retention, dict):
        for exam in retention.get("exams") or []:
            for mode, s in (exam.get("modes") or {}).items():
                if (p := paired(f"{exam.get('name', '?')}{label} {mode}", s)) is not None:
                    ev.general.append(p)
        overall = (retention.get("ppl") or {}).get("overall") or {}
        r = _ratio(f"general perplexity{label}", overall.get("base"), overall.get("model"))
        ev.general_ppl += [r] if r else []
    leak = _leakage(read_json(folder / "leakage.json"))
    ev.leakage += [leak] if leak else []


def collect_evidence(stages: list[Stage]) -> tuple[Evidence, VerdictThresholds]:
    """The evidence every eval and export stage left, and the thresholds (the last eval stage's `verdict:`)."""
    ev = Evidence()
    thresholds = VerdictThresholds()
    evals = [s for s in stages if s.kind == "eval" and s.dir is not None]
    for stage in evals:
        _eval_evidence(stage, ev, f" ({stage.name})" if len(evals) > 1 else "")
        try:
            thresholds = thresholds_from(stage.config.get("verdict"), f"{stage.name}: verdict")
        except ValueError:
            pass  # the recipe check refused a bad mapping before the stage ran; an old state file keeps the defaults
    for stage in (s for s in stages if s.kind == "export" and s.dir is not None):
        rows = read_json(stage.dir / "verify.json")
        for row in rows if isinstance(rows, list) else []:
            if isinstance(row, dict) and _number(row.get("mean_kld")) and _number(row.get("top1")):
                ev.gguf.append(Gguf(Path(str(row.get("name", "?"))).name, row["mean_kld"], row["top1"]))
    return ev, thresholds


def verdict_section(stages: list[Stage]) -> tuple[Section, list[str]]:
    """The block that opens the report: the four verdict lines."""
    lines = verdict_lines(*collect_evidence(stages))
    return Section("Verdict", "verdict", [Text(line) for line in lines]), lines
