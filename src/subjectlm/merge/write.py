"""`run(MergeConfig)`: plan (all checks), then write the merged model atomically.

The merge path imports numpy only (no torch, transformers or peft): startup and
memory are part of what this stage promises. --verify and --allow_pickle import
torch when asked for.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from subjectlm.io import atomic_dir, check_output_dir
from subjectlm.merge.adapter import Adapter, read_adapter, weights_file
from subjectlm.merge.apply import write_weights
from subjectlm.merge.config import MergeConfig
from subjectlm.merge.errors import MergeError
from subjectlm.merge.plan import MergePlan, build_plan, find_pickles, read_base
from subjectlm.merge.tensors import TORCH_NAMES
from subjectlm.models import dtype_name

# Files that make up a tokenizer (taken from the last adapter that has them, else from the base).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "tokenizer.model", "vocab.json", "merges.txt", "vocab.txt", "spiece.model",
                   "chat_template.jinja", "chat_template.json")
# Other small files of the base worth keeping beside the weights.
BASE_FILES = ("generation_config.json",)


def _adapter_dir(path: str) -> Path:
    folder = Path(path).expanduser()
    if not (folder / "adapter_config.json").is_file():
        raise MergeError(f"{folder}: not a LoRA adapter directory (no adapter_config.json)")
    return folder


def _load_adapters(paths: list[Path], allow_pickle: bool, scratch: Path) -> list[Adapter]:
    adapters = []
    for i, folder in enumerate(paths):
        weights = weights_file(folder, allow_pickle)
        if weights.suffix == ".bin":
            from subjectlm.merge.pickles import convert_bin

            target = scratch / f"adapter-{i}.safetensors"
            convert_bin(weights, target)
            weights = target
        adapters.append(read_adapter(folder, weights))
    return adapters


def plan_merge(config: MergeConfig, scratch: Path) -> tuple[MergePlan, list[Adapter]]:
    """Every check, no output written (pickles, if allowed, are converted into `scratch`)."""
    from subjectlm.models import resolve_model

    base_dir = resolve_model(config.base)
    if base_dir.suffix == ".gguf":
        raise MergeError(f"{base_dir}: a GGUF file cannot be a merge base; give the safetensors model directory")
    adapter_dirs = [_adapter_dir(p) for p in config.lora]
    pickles = find_pickles(base_dir)
    weights_dir = None
    if pickles:
        if not config.allow_pickle:
            raise MergeError(f"{base_dir}: the base weights are pickles ({pickles[0].name}), which can run code "
                             "when loaded; refused. Convert them to safetensors or pass --allow_pickle if you trust them")
        from subjectlm.merge.pickles import convert_base

        weights_dir = scratch / "base"
        weights_dir.mkdir()
        convert_base(pickles, weights_dir)
    base = read_base(base_dir, weights_dir)
    adapters = _load_adapters(adapter_dirs, config.allow_pickle, scratch)
    safetensors_code = {torch_name: code for code, torch_name in TORCH_NAMES.items()}
    dtype = None if config.dtype == "auto" else safetensors_code[dtype_name(config.dtype)]
    return build_plan(base, adapters, dtype), adapters


def tensor_lines(plan: MergePlan) -> list[str]:
    """--verbose: one line per output tensor, shard by shard: what the merge does to it."""
    lines = []
    for shard in plan.base.shards:
        for t in plan.shard_tensors(shard):
            what = "; ".join(
                f"{op.kind} from {op.adapter}" + (f" (scale {op.scale:g}{', transposed' if op.transpose else ''})"
                                                  if op.kind != "replace" else "")
                for op in t.ops) or "copied"
            lines.append(f"{shard}: {t.name} {list(t.shape)}: {what}")
    return lines


def _copy_side_files(plan: MergePlan, adapters: list[Adapter], out: Path) -> None:
    (out / "config.json").write_text(json.dumps(plan.config, indent=2, ensure_ascii=False) + "\n")
    for name in BASE_FILES:
        if (plan.base.path / name).is_file():
            shutil.copy2(plan.base.path / name, out / name)
    tokenizer_dir = next((a.tokenizer_dir for a in reversed(adapters) if a.tokenizer_dir), plan.base.path)
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).is_file():
            shutil.copy2(tokenizer_dir / name, out / name)
    for code in plan.base.path.glob("*.py"):  # remote-code models need their modelling files
        shutil.copy2(code, out / code.name)


def _provenance(config: MergeConfig, plan: MergePlan, adapters: list[Adapter]) -> dict:
    return {
        "base": str(plan.base.path),
        "adapters": [{"path": str(a.path), "r": a.config.get("r"), "lora_alpha": a.config.get("lora_alpha"),
                      "use_rslora": bool(a.config.get("use_rslora")), "tensors_changed": len(a.ops)} for a in adapters],
        "dtype": config.dtype,
        "notes": plan.notes,
    }


def run(config: MergeConfig, progress: bool = True) -> dict:
    output = check_output_dir(config.output_dir, config.overwrite)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{output.name}.scratch-", dir=output.parent) as scratch:
        plan, adapters = plan_merge(config, Path(scratch))
        if config.verbose:
            for line in tensor_lines(plan):
                print(line, flush=True)
        from tqdm import tqdm

        bar = tqdm(total=len(plan.base.shards), unit="shard", desc="merging", disable=not progress)
        report = None
        with atomic_dir(output, overwrite=config.overwrite) as tmp:
            write_weights(plan, tmp, on_shard=lambda shard: bar.update(1))
            bar.close()
            _copy_side_files(plan, adapters, tmp)
            info = _provenance(config, plan, adapters)
            if config.verify:
                from subjectlm.merge.verify import verify_merge

                report = verify_merge(plan.base.path, adapters, tmp, config.verify_tolerance)
                info["verify"] = report
            (tmp / "subjectlm_merge.json").write_text(json.dumps(info, indent=2) + "\n")
    changed = sum(1 for t in plan.tensors.values() if t.ops)
    summary = (f"merged {len(adapters)} adapter(s) into {plan.base.path.name}: {changed} tensors changed, "
               f"{len(plan.base.shards)} shard(s)")
    if plan.notes:
        summary += "; " + "; ".join(plan.notes)
    if report:
        summary += f"; verified: max abs logit diff {report['max_abs_diff']:.2e}, top-1 agreement {report['top1_agreement']:.3f}"
    return {"model": str(output), "summary": summary}
