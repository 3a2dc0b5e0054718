"""The reference judge: the answer closer to the prompt's reference wins. No model, deterministic.

For a prompt with a `reference` (and optionally `key_facts`), both answers are scored with the
closed-book QA's text scores (scoring/text.py): key-fact recall (when the prompt lists key facts), then
token-F1 against the reference. The first score that differs by more than `margin` decides;
when none does the battle is a tie, or `both-bad` when both answers score zero on everything
(the ratings count both-bad as a tie). Prompts without a reference cannot be judged this way:
their pairs are skipped, counted and reported, never guessed.

The verdict does not depend on which answer is shown first, so each pair is judged once (sides
drawn as for a person); the scores go into the battle record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from subjectlm.arena.config import JudgeConfig
from subjectlm.arena.records import BATTLES_FILE, append_jsonl, battle_record, pending_pairs
from subjectlm.scoring.text import key_fact_recall, token_f1

JUDGE_NAME = "reference"


def reference_scores(answer: str, reference: str, key_facts: Sequence[str] = ()) -> dict[str, float]:
    """The scores the judge compares, in the order it compares them."""
    scores = {"key_fact_recall": key_fact_recall(answer, key_facts)} if key_facts else {}
    scores["f1"] = token_f1(answer, reference)
    return scores


def reference_verdict(answer_a: str, answer_b: str, reference: str, key_facts: Sequence[str] = (),
                      margin: float = 0.05) -> tuple[str, dict[str, Any]]:
    """(winner, details): A or B when a score differs by more than `margin`, else tie / both-bad."""
    a = reference_scores(answer_a, reference, key_facts)
    b = reference_scores(answer_b, reference, key_facts)
    details: dict[str, Any] = {"scores": {"A": {k: round(v, 4) for k, v in a.items()},
                                          "B": {k: round(v, 4) for k, v in b.items()}}, "margin": margin}
    for key in a:
        if abs(a[key] - b[key]) > margin:
            return ("A" if a[key] > b[key] else "B"), {**details, "decided_by": key}
    if all(v == 0 for v in (*a.values(), *b.values())):
        return "both-bad", {**details, "decided_by": None}
    return "tie", {**details, "decided_by": None}


def run_reference_judge(config: JudgeConfig) -> dict[str, Any]:
    """Judge every pending pair of answers to a prompt with a reference; append one battle each.

    Returns {"judged", "skipped_prompts", "skipped_pairs"}: prompts without a reference and their pairs."""
    output_dir = Path(config.output_dir)
    jobs = pending_pairs(output_dir, JUDGE_NAME, both_orders=False, models=config.models, seed=config.seed)
    without = [j for j in jobs if not j["prompt"].get("reference")]
    jobs = [j for j in jobs if j["prompt"].get("reference")]
    if config.limit:
        jobs = jobs[: config.limit]
    for job in jobs:
        prompt = job["prompt"]
        winner, extra = reference_verdict(job["answer_a"], job["answer_b"], prompt["reference"],
                                          prompt.get("key_facts") or (), config.margin)
        append_jsonl(output_dir / BATTLES_FILE, battle_record(job, winner, JUDGE_NAME, mode="reference", **extra))
    return {"judged": len(jobs), "skipped_prompts": len({j["prompt"]["id"] for j in without}),
            "skipped_pairs": len(without)}
