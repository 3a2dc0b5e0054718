"""Merge LoRA adapters into a base model's safetensors weights, shard by shard, in little memory.

    config.py   MergeConfig: which base, which adapters (in order), where, in which dtype
    errors.py   MergeError, the merge's user-facing error (a UserError)
    plan.py     read the base layout and the adapters; every check, before writing
    pickles.py  trusted .bin (pickle) weights -> safetensors once, only with --allow_pickle
    adapter.py  a peft adapter directory -> per-tensor operations (lazy: headers only)
    apply.py    write each output shard, one tensor at a time
    tensors.py  minimal safetensors reader/writer over numpy (no torch in the merge path)
    write.py    run(MergeConfig): plan, write atomically, side files, optional --verify
    verify.py   compare logits of the merged model with base + adapters in peft
"""

from subjectlm.merge.config import MergeConfig


def run(config: MergeConfig, progress: bool = True) -> dict:
    """Merge `config.lora` into `config.base`; returns {"model": output_dir, "summary": ...}."""
    # Imported here so that `subjectlm --help` does not pay for numpy.
    from subjectlm.merge.write import run as run_merge

    return run_merge(config, progress=progress)


__all__ = ["MergeConfig", "run"]
