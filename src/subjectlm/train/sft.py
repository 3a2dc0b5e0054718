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


def load_train(config: SFTConfig, tokenizer: Any) -> tuple[list[dict], str, list[dict] | None]:
    """(rows, summary, drawn): all examples once, or with weighted sources each source's examples drawn
    by its weight (data/mix.py); `drawn` says what each source gave."""
    from subjectlm.data.mix import describe, is_weighted, mix, sources

    if not is_weighted(config.data):
        rows, summary = load_examples(config, config.data, tokenizer, "train")
        return rows, summary, None
    found = sources(config.data)
    loaded = [load_examples(config, [s.path], tokenizer, "train") for s in found]
    rows, drawn = mix([r for r, _ in loaded], [s.weight for s in found], config.seed, [s.path for s in found])
    summary = "; ".join([*(f"{s.path}: {text}" for s, (_, text) in zip(found, loaded)), describe(drawn, "examples")])
    return rows, summary, [d.to_json() for d in drawn]


def run(config: SFTConfig, callbacks: list[Any] = ()) -> dict[str, Any]:
    def load_data(tokenizer: Any) -> StageData:
        train, summary, drawn = load_train(config, tokenizer)
        evaluation, validation = (load_examples(config, config.validation_file, tokenizer, "validation")
                                  if config.validation_file else (None, ""))
        return StageData(train, evaluation, summary, validation, drawn=drawn)

    return run_training(config, "sft", load_data, packed=config.packing, callbacks=callbacks)
