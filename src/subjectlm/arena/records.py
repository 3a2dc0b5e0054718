"""The arena folder's files: prompts, model specs, answers and battles, all JSON lines or JSON.

    O/prompts.jsonl          the prompts every model answers ({id, prompt, category, reference})
    O/models.json            name -> {path, sampling settings} of each model that answered
    O/answers/<name>.jsonl   one line per prompt answered by that model
    O/battles.jsonl          one line per judgement, appended as judging goes on

battles.jsonl is append-only: a judge that stops half way loses nothing, and the next run
skips what is already judged. A battle record:
    {"prompt_id", "category", "model_a", "model_b", "winner": A|B|tie|both-bad, "judge", ...}
"""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Any, Iterable

from subjectlm.arena.prompts import WINNERS
from subjectlm.data.errors import DataError, Problem
from subjectlm.io import append_jsonl, read_jsonl as read_rows  # noqa: F401  (append_jsonl: the arena's writers import it from here)

PROMPTS_FILE = "prompts.jsonl"
MODELS_FILE = "models.json"
BATTLES_FILE = "battles.jsonl"
ANSWERS_DIR = "answers"


def prompt_id(text: str) -> str:
    """The id of a prompt that has none: stable across files and line orders."""
    return "p-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """An arena file's rows; a file not written yet reads as empty (torn last line: see io.read_jsonl)."""
    return read_rows(path, missing_ok=True)


def load_prompts(path: str | Path) -> list[dict[str, Any]]:
    """Prompts from JSON lines: `prompt` required; `id`, `category`, `reference`, `key_facts` optional."""
    path = Path(path)
    if not path.is_file():
        raise DataError([Problem(str(path), None, "file", "prompts file does not exist")])
    problems: list[Problem] = []
    prompts: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(Problem(str(path), n, "record", f"not valid JSON: {exc.msg}"))
            continue
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
            problems.append(Problem(str(path), n, "prompt", "missing or empty (a non-empty string is required)"))
            continue
        pid = str(row.get("id") or prompt_id(row["prompt"]))
        if pid in seen:
            problems.append(Problem(str(path), n, "id", f"{pid!r} is also used on line {seen[pid]}"))
            continue
        facts = row.get("key_facts")
        if facts is not None and (not isinstance(facts, list) or not all(isinstance(f, str) and f.strip() for f in facts)):
            problems.append(Problem(str(path), n, "key_facts", "must be a list of non-empty strings"))
            continue
        seen[pid] = n
        reference = row.get("reference")
        prompts.append({"id": pid, "prompt": row["prompt"], "category": str(row.get("category") or "all"),
                        "reference": reference if isinstance(reference, str) and reference.strip() else None})
        if facts:  # optional: what the reference judge checks first (arena/judge_reference.py)
            prompts[-1]["key_facts"] = [f.strip() for f in facts]
    if problems:
        raise DataError(problems)
    if not prompts:
        raise DataError([Problem(str(path), None, "file", "no prompts")])
    return prompts


def load_battles(output_dir: Path) -> list[dict[str, Any]]:
    battles = read_jsonl(Path(output_dir) / BATTLES_FILE)
    for i, b in enumerate(battles, 1):
        if b.get("winner") not in WINNERS or not b.get("model_a") or not b.get("model_b"):
            raise DataError([Problem(str(Path(output_dir) / BATTLES_FILE), i, "winner",
                                     f"not a battle record: {json.dumps(b)[:120]}")])
    return battles


def load_models(output_dir: Path) -> dict[str, dict[str, Any]]:
    path = Path(output_dir) / MODELS_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def load_answers(output_dir: Path, name: str) -> dict[str, dict[str, Any]]:
    """prompt id -> answer record of one model."""
    return {row["id"]: row for row in read_jsonl(Path(output_dir) / ANSWERS_DIR / f"{name}.jsonl")}


def pairings(models: Iterable[str]) -> list[tuple[str, str]]:
    """Every unordered pair of distinct models, in a fixed order (sorted names)."""
    return list(itertools.combinations(sorted(set(models)), 2))


def pending_pairs(output_dir: Path, judge: str, both_orders: bool, models: Iterable[str] = (),
                  seed: int = 0) -> list[dict[str, Any]]:
    """The (prompt, model A, model B) jobs `judge` has not judged yet, for every pair of models
    that both answered the prompt.

    both_orders (a judge model): each pair twice, A/B swapped, to cancel position bias.
    Otherwise (a person): each pair once, on sides drawn from (seed, prompt, pair), so a reload
    shows the same sides, and in an order shuffled by `seed`, so one prompt's pairs are spread out.
    """
    import random

    from subjectlm.config import ConfigError

    output_dir = Path(output_dir)
    if not (output_dir / MODELS_FILE).is_file():
        raise ConfigError(f"output_dir: {output_dir} has no answers: run `subjectlm eval arena generate` first")
    prompts = read_jsonl(output_dir / PROMPTS_FILE)
    names = [m for m in load_models(output_dir) if not models or m in set(models)]
    if len(names) < 2:
        raise ConfigError(f"models: judging needs two models with answers; {output_dir} has {names or 'none'}")
    answers = {m: load_answers(output_dir, m) for m in names}
    done = {(b.get("prompt_id"), b["model_a"], b["model_b"]) for b in load_battles(output_dir) if b.get("judge") == judge}
    jobs = []
    for prompt in prompts:
        pid = prompt["id"]
        for m1, m2 in pairings(m for m in names if pid in answers[m]):
            if both_orders:
                orders = [(m1, m2), (m2, m1)]
            elif (pid, m1, m2) in done or (pid, m2, m1) in done:
                continue
            else:
                orders = [(m1, m2) if random.Random(f"{seed}|{pid}|{m1}|{m2}").random() < 0.5 else (m2, m1)]
            for a, b in orders:
                if (pid, a, b) in done:
                    continue
                jobs.append({"prompt": prompt, "model_a": a, "model_b": b,
                             "answer_a": answers[a][pid]["answer"], "answer_b": answers[b][pid]["answer"]})
    if not both_orders:
        random.Random(seed).shuffle(jobs)
    return jobs


def battle_record(job: dict[str, Any], winner: str, judge: str, **extra: Any) -> dict[str, Any]:
    """One line of battles.jsonl."""
    import time

    if winner not in WINNERS:
        raise ValueError(f"winner {winner!r} is not one of {WINNERS}")
    return {"prompt_id": job["prompt"]["id"], "category": job["prompt"].get("category") or "all",
            "model_a": job["model_a"], "model_b": job["model_b"], "winner": winner, "judge": judge,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **extra}
