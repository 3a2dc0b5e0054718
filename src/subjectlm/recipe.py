"""`subjectlm run RECIPE.yaml`: run a recipe's stages in order, each feeding the next.

A recipe names a starting model, an output directory and a list of stages:

    model: default            # where the pipeline starts
    output_dir: runs/demo     # each stage writes to output_dir/<stage name>
    stages:
      - stage: pt             # one of STAGES below
        data: data/corpus.txt # any key of that stage's config dataclass
      - stage: sft
        ...

Paths are relative to the recipe file. Every stage module exposes a config
dataclass and `run(config) -> dict`; the dict may name a new full `model`
directory, an `adapter` directory and a one-line `summary`. What a stage takes
from the pipeline when the recipe does not say is the INPUTS table. A finished
stage (same config, outputs present) is skipped unless `force` is given.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable

from subjectlm.config import ConfigError, build_config, read_yaml, to_dict
from subjectlm.io import write_json
from subjectlm.models import DEFAULT_MODEL_ALIASES


def _pt():
    from subjectlm.train.pt import PTConfig, run
    return PTConfig, run


def _sft():
    from subjectlm.train.sft import SFTConfig, run
    return SFTConfig, run


def _dpo():
    from subjectlm.train.dpo import DPOConfig, run
    return DPOConfig, run


def _merge():
    from subjectlm.merge import MergeConfig, run
    return MergeConfig, run


def _eval():
    from subjectlm.eval.stage import EvalStageConfig, run
    return EvalStageConfig, run


def _export():
    from subjectlm.export.stage import ExportStageConfig, run
    return ExportStageConfig, run


def _arena():
    from subjectlm.arena.stage import ArenaStageConfig, run
    return ArenaStageConfig, run


# stage name -> loader of (config dataclass, run function); imported only when used.
STAGES: dict[str, Callable[[], tuple[type, Callable[[Any], dict]]]] = {
    "pt": _pt,
    "sft": _sft,
    "dpo": _dpo,
    "merge": _merge,
    "eval": _eval,
    "export": _export,
    "arena": _arena,
}

# config field -> pipeline state key, filled in when the recipe leaves the field out
# and the stage's config has such a field.
INPUTS: dict[str, dict[str, str]] = {
    "pt": {"model": "model"},
    "sft": {"model": "model", "peft_path": "adapter"},
    "dpo": {"model": "model", "peft_path": "adapter"},
    "merge": {"base": "model", "lora": "adapter_list"},
    "eval": {"model": "model", "base_model": "start_model"},
    "export": {"model": "model"},
    "arena": {"model": "model", "base_model": "start_model"},
}

RECIPE_KEYS = {"model", "output_dir", "stages", "description"}
# Keys whose values are paths, resolved against the recipe file's folder.
PATH_KEYS = {"data", "validation_file", "output_dir", "model", "base", "lora", "peft_path", "base_model",
             "prompts", "output", "gguf", "tokenizer", "ppl_data"}


@dataclasses.dataclass
class StageOutcome:
    name: str
    stage: str
    status: str  # done | skipped | not implemented | failed
    summary: str = ""
    seconds: float = 0.0


MODEL_KEYS = {"model", "base", "base_model"}


def _resolve_path(value: Any, base: Path, key: str = "") -> Any:
    """Relative paths are relative to the recipe file; model names such as `default` stay names."""
    if isinstance(value, list):
        return [_resolve_path(v, base, key) for v in value]
    if not isinstance(value, str) or not value or Path(value).is_absolute():
        return value
    if key in MODEL_KEYS and value in DEFAULT_MODEL_ALIASES:
        return value
    return str((base / value).resolve())


def load_recipe(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    recipe = read_yaml(path)
    unknown = set(recipe) - RECIPE_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown recipe key {sorted(unknown)[0]!r}; known: {', '.join(sorted(RECIPE_KEYS))}")
    stages = recipe.get("stages")
    if not isinstance(stages, list) or not stages:
        raise ConfigError(f"{path}: stages: must be a non-empty list")
    base = path.parent.resolve()
    names = set()
    for i, stage in enumerate(stages):
        where = f"{path}: stages[{i}]"
        if not isinstance(stage, dict) or "stage" not in stage:
            raise ConfigError(f"{where}: each stage needs a `stage:` key (one of {', '.join(STAGES)})")
        if stage["stage"] not in STAGES:
            raise ConfigError(f"{where}: stage: unknown stage {stage['stage']!r}; known: {', '.join(STAGES)}")
        name = stage.get("name", stage["stage"])
        if name in names:
            raise ConfigError(f"{where}: name: {name!r} is used twice; give each stage a distinct `name:`")
        names.add(name)
    recipe["_path"] = path
    recipe["_base"] = base
    recipe["model"] = _resolve_path(recipe.get("model", "default"), base, "model")
    recipe["output_dir"] = Path(_resolve_path(recipe.get("output_dir", "runs/" + path.stem), base, "output_dir"))
    return recipe


def _config_hash(values: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


def stage_values(stage: dict[str, Any], state: dict[str, Any], config_cls: type, recipe: dict[str, Any]) -> dict[str, Any]:
    """The stage's YAML keys (paths resolved) plus what it takes from the pipeline state."""
    values = {k: _resolve_path(v, recipe["_base"], k) if k in PATH_KEYS else v
              for k, v in stage.items() if k not in ("stage", "name")}
    fields = {f.name for f in dataclasses.fields(config_cls)}
    name = stage.get("name", stage["stage"])
    if "output_dir" in fields and "output_dir" not in values:
        values["output_dir"] = str(recipe["output_dir"] / name)
    for field, key in INPUTS.get(stage["stage"], {}).items():
        if field in fields and field not in values and state.get(key) not in (None, []):
            values[field] = state[key]
    return values


def run_recipe(path: str | Path, force: bool = False, only: list[str] | None = None,
               log: Callable[[str], None] = print) -> list[StageOutcome]:
    recipe = load_recipe(path)
    out_dir: Path = recipe["output_dir"]
    out_dir.mkdir(parents=True, exist_ok=True)
    state_file = out_dir / "pipeline_state.json"
    done: dict[str, Any] = json.loads(state_file.read_text()) if state_file.exists() else {}
    state: dict[str, Any] = {"model": recipe["model"], "start_model": recipe["model"], "adapter": None, "adapter_list": []}
    outcomes = []
    for stage in recipe["stages"]:
        name = stage.get("name", stage["stage"])
        if only and name not in only:
            continue
        try:
            config_cls, run = STAGES[stage["stage"]]()
        except ModuleNotFoundError as exc:
            if not exc.name or not exc.name.startswith("subjectlm"):
                raise
            log(f"[{name}] not implemented yet: skipped")
            outcomes.append(StageOutcome(name, stage["stage"], "not implemented", "not implemented yet"))
            continue
        values = stage_values(stage, state, config_cls, recipe)
        digest = _config_hash(values)
        previous = done.get(name)
        if previous and previous.get("hash") == digest and not force and _outputs_exist(previous.get("result", {})):
            result = previous["result"]
            log(f"[{name}] already done: {result.get('summary', '')} (use --force to re-run)")
            outcomes.append(StageOutcome(name, stage["stage"], "skipped", result.get("summary", "")))
        else:
            config = build_config(config_cls, values, source=f"{recipe['_path']}: stage {name!r}")
            log(f"[{name}] running {stage['stage']} ...")
            start = time.time()
            result = {k: (str(v) if isinstance(v, Path) else v) for k, v in (run(config) or {}).items()}
            seconds = time.time() - start
            done[name] = {"hash": digest, "result": result, "config": to_dict(config), "seconds": round(seconds, 1)}
            write_json(state_file, done)
            log(f"[{name}] done in {seconds:.0f}s: {result.get('summary', '')}")
            outcomes.append(StageOutcome(name, stage["stage"], "done", result.get("summary", ""), seconds))
        if result.get("model"):
            state.update(model=result["model"], adapter=None, adapter_list=[])
        if result.get("adapter"):
            state.update(adapter=result["adapter"], adapter_list=[result["adapter"]])
    from subjectlm.report import write_report  # one validation page over every stage's outputs

    log(f"report: {write_report(out_dir)}")
    return outcomes


def _outputs_exist(result: dict[str, Any]) -> bool:
    return all(Path(result[k]).exists() for k in ("model", "adapter") if result.get(k))
