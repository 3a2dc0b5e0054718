"""`subjectlm sft`: instruction tuning with LoRA; the loss covers assistant tokens only.

Read top to bottom: config, load and tokenize (cached), model + LoRA, train, save.
"""

from __future__ import annotations

from typing import Any

from subjectlm.config import ConfigError
from subjectlm.train.config import SFTConfig
from subjectlm.train.run import StageData, run_training


def load_examples(config: SFTConfig, paths: list[str], tokenizer: Any, what: str) -> tuple[list[dict], str]:
    """Tokenized rows for `paths`, from the cache when the files, tokenizer and options are unchanged."""
    from subjectlm.data import files_fingerprint, load_sft
    from subjectlm.train.tokenize import cache_dir, cache_key, load_rows, save_rows, tokenize_sft

    key = cache_key(files_fingerprint(paths), tokenizer, kind="sft", template=config.template,
                    system_prompt=config.system_prompt, max_seq_length=config.max_seq_length,
                    skip_invalid=config.skip_invalid)
    path = cache_dir(config.data_cache_dir) / f"sft-{key}.safetensors"
    cached = load_rows(path)
    if cached is not None:
        rows, meta = cached
        return rows, meta["summary"] + " (cached)"
    loaded = load_sft(paths, skip_invalid=config.skip_invalid)
    rows, stats = tokenize_sft(loaded.items, tokenizer, config.template, config.max_seq_length, config.system_prompt,
                               num_proc=config.preprocessing_num_workers)
    if not rows:
        raise ConfigError(f"max_seq_length: no {what} example fits in {config.max_seq_length} tokens ({stats.summary()})")
    summary = f"{what}: {loaded.summary()}; {stats.summary()}"
    save_rows(path, rows, {"summary": summary})
    return rows, summary


def run(config: SFTConfig, callbacks: list[Any] = ()) -> dict[str, Any]:
    def load_data(tokenizer: Any) -> StageData:
        train, summary = load_examples(config, config.data, tokenizer, "train")
        evaluation, validation = (load_examples(config, config.validation_file, tokenizer, "validation")
                                  if config.validation_file else (None, ""))
        return StageData(train, evaluation, summary, validation)

    return run_training(config, "sft", load_data, packed=config.packing, callbacks=callbacks)
