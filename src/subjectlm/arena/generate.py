"""Every model answers every prompt; answers are cached per (model, prompt).

A model is given as `NAME=PATH[@key=value...]`: `hot=default@temperature=1.2` is the default
model sampled at temperature 1.2 under the name `hot`. The sampling settings of each name are
recorded in O/models.json. Answers go to O/answers/<NAME>.jsonl, one line per prompt, appended
batch by batch: a second run (more prompts, another model, or after a crash) generates only
what is missing. A name keeps its settings: asking for the same name with other settings is an
error unless `overwrite` is given, because its old answers would no longer match its record.

Generation goes through the backends (`open_backend`: transformers in left-padded batches, or a
GGUF on llama.cpp) over the model's chat template. Each prompt is sampled with its own seed,
drawn from (seed, prompt id): an answer depends on the model, its settings and the prompt only,
never on which prompts shared its batch, so a cached answer is exactly what a fresh run would give.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path
from typing import Any

from subjectlm.arena.config import GenerateConfig
from subjectlm.arena.records import (
    ANSWERS_DIR,
    MODELS_FILE,
    PROMPTS_FILE,
    append_jsonl,
    load_answers,
    load_models,
    load_prompts,
    read_jsonl,
)
from subjectlm.config import ConfigError, coerce
from subjectlm.io import write_json, write_text

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# Settings a model spec may set after `@`, with their types.
SPEC_KEYS: dict[str, type] = {"temperature": float, "top_p": float, "max_new_tokens": int, "seed": int}


@dataclasses.dataclass(frozen=True)
class ArenaModel:
    """One `NAME=PATH[@key=value...]` of `models`: a model under a name, with its sampling settings."""

    name: str
    path: str  # as given (`default` stays `default`)
    temperature: float
    top_p: float
    max_new_tokens: int
    seed: int

    def settings(self) -> dict[str, Any]:
        """What models.json records, and what must match for cached answers to be reused."""
        return {"path": self.path, "temperature": self.temperature, "top_p": self.top_p,
                "max_new_tokens": self.max_new_tokens, "seed": self.seed, "do_sample": self.temperature > 0}


def parse_model_spec(text: str, config: GenerateConfig) -> ArenaModel:
    """`NAME=PATH[@key=value...]` -> ArenaModel, settings not given taken from the config."""
    name, sep, rest = text.partition("=")
    if not sep or not rest:
        raise ConfigError(f"models: {text!r} is not NAME=PATH (e.g. base=default or tuned=runs/demo/sft)")
    if not NAME_RE.match(name):
        raise ConfigError(f"models: name {name!r} must be letters, digits, '.', '_' or '-' (it names a file)")
    path, *settings = rest.split("@")
    values: dict[str, Any] = {k: getattr(config, k) for k in SPEC_KEYS}
    for item in settings:
        key, sep, value = item.partition("=")
        if key not in SPEC_KEYS or not sep:
            raise ConfigError(f"models: {text!r}: unknown setting {item!r}; known: {', '.join(SPEC_KEYS)} (as key=value)")
        values[key] = coerce(value, SPEC_KEYS[key], f"models: {name}: {key}")
    if values["temperature"] < 0 or not 0 < values["top_p"] <= 1 or values["max_new_tokens"] < 1:
        raise ConfigError(f"models: {text!r}: temperature must be >= 0, top_p in (0, 1], max_new_tokens >= 1")
    return ArenaModel(name=name, path=path, **values)


def _prompt_sha(prompt: dict[str, Any]) -> str:
    return hashlib.sha256(prompt["prompt"].encode("utf-8")).hexdigest()[:16]


def merge_prompts(output_dir: Path, prompts_file: str | None) -> list[dict[str, Any]]:
    """The folder's prompts plus new ones from `prompts_file`; an id may not change its text."""
    known = read_jsonl(output_dir / PROMPTS_FILE)
    if prompts_file is None:
        if not known:
            raise ConfigError(f"prompts: {output_dir} has no prompts yet; give --prompts FILE")
        return known
    by_id = {p["id"]: p for p in known}
    added = False
    for prompt in load_prompts(prompts_file):
        old = by_id.get(prompt["id"])
        if old is None:
            known.append(prompt)
            by_id[prompt["id"]] = prompt
            added = True
        elif old["prompt"] != prompt["prompt"] or old.get("reference") != prompt.get("reference"):
            raise ConfigError(f"prompts: {prompts_file}: id {prompt['id']!r} has another text or reference in "
                              f"{output_dir / PROMPTS_FILE}; give it a new id or use a new output_dir")
    if added or not (output_dir / PROMPTS_FILE).is_file():
        import json
        write_text(output_dir / PROMPTS_FILE, "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in known))
    return known


def prompt_seed(seed: int, pid: str) -> int:
    return int(hashlib.sha256(f"{seed}|{pid}".encode("utf-8")).hexdigest()[:15], 16)


def generate_answers(spec: ArenaModel, prompts: list[dict[str, Any]], config: GenerateConfig) -> list[dict[str, Any]]:
    """Answer `prompts` with one model (an HF directory, `default` or a .gguf); answer records in prompt order."""
    from tqdm import tqdm

    from subjectlm.backends import GenParams, open_backend

    backend = open_backend(config.model_spec(model=spec.path))
    out_file = Path(config.output_dir) / ANSWERS_DIR / f"{spec.name}.jsonl"
    records = []
    bar = tqdm(total=len(prompts), desc=f"answers of {spec.name}", unit="prompt")
    try:
        for start in range(0, len(prompts), config.batch_size):
            batch = prompts[start:start + config.batch_size]
            # One seed per prompt: a sampled answer does not depend on its batch (backends/sampling.py).
            params = [GenParams(max_tokens=spec.max_new_tokens, temperature=spec.temperature, top_p=spec.top_p,
                                seed=prompt_seed(spec.seed, p["id"])) for p in batch]
            answers = backend.generate([[{"role": "user", "content": p["prompt"]}] for p in batch], params)
            for prompt, answer in zip(batch, answers):
                record = {"id": prompt["id"], "model": spec.name, "prompt_sha": _prompt_sha(prompt),
                          "answer": answer.text.strip(), "tokens": answer.completion_tokens,
                          "finished": answer.finish_reason == "stop"}
                append_jsonl(out_file, record)
                records.append(record)
            bar.update(len(batch))
    finally:
        bar.close()
        backend.close()
    return records


def run_generate(config: GenerateConfig) -> dict[str, Any]:
    """Fill O/answers for every model in `config.models`; returns counts per model."""
    output_dir = Path(config.output_dir)
    specs = [parse_model_spec(text, config) for text in config.models]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"models: a name is given twice in {names}")
    output_dir.mkdir(parents=True, exist_ok=True)
    prompts = merge_prompts(output_dir, config.prompts)
    recorded = load_models(output_dir)
    for spec in specs:
        old = recorded.get(spec.name)
        if old is not None and old != spec.settings() and not config.overwrite:
            raise ConfigError(f"models: {spec.name!r} already answered with {old}; give this model another name "
                              "or pass --overwrite to regenerate its answers")
    counts: dict[str, dict[str, int]] = {}
    for spec in specs:
        answers_file = output_dir / ANSWERS_DIR / f"{spec.name}.jsonl"
        if config.overwrite and answers_file.exists():
            answers_file.unlink()
        recorded[spec.name] = spec.settings()
        write_json(output_dir / MODELS_FILE, recorded)
        cached = load_answers(output_dir, spec.name)
        todo = [p for p in prompts if p["id"] not in cached or cached[p["id"]].get("prompt_sha") != _prompt_sha(p)]
        if todo:
            generate_answers(spec, todo, config)
        counts[spec.name] = {"generated": len(todo), "cached": len(prompts) - len(todo)}
    return {"prompts": len(prompts), "models": counts}
