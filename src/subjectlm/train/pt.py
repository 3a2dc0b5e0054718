"""`subjectlm pt`: continued pre-training with LoRA on raw documents.

Every document gets an EOS token, documents are concatenated and cut into `block_size` blocks
(the seed concatenated without a separator, so the model learnt to run documents together).
"""

from __future__ import annotations

import random
from typing import Any, Iterator

import torch

from subjectlm.config import ConfigError
from subjectlm.train.config import PTConfig
from subjectlm.train.run import StageData, run_training


def load_blocks(config: PTConfig, paths: list[str], tokenizer: Any) -> tuple[list[list[int]], str]:
    from subjectlm.data import files_fingerprint, load_pt
    from subjectlm.train.tokenize import cache_dir, cache_key, iter_blocks, load_rows, save_rows

    key = cache_key(files_fingerprint(paths), tokenizer, kind="pt", block_size=config.block_size,
                    txt_mode=config.txt_mode, skip_invalid=config.skip_invalid)
    path = cache_dir(config.data_cache_dir) / f"pt-{key}.safetensors"
    cached = load_rows(path)
    if cached is not None:
        rows, meta = cached
        return [r["input_ids"] for r in rows], meta["summary"] + " (cached)"
    loaded = load_pt(paths, skip_invalid=config.skip_invalid, txt_mode=config.txt_mode)
    blocks = list(iter_blocks(loaded.items, tokenizer, config.block_size, num_proc=config.preprocessing_num_workers))
    if not blocks:
        raise ConfigError(f"block_size: the corpus ({loaded.summary()}) is shorter than one block of {config.block_size} tokens")
    summary = f"{loaded.summary()} -> {len(blocks)} blocks of {config.block_size} tokens"
    save_rows(path, [{"input_ids": b} for b in blocks], {"summary": summary})
    return blocks, summary


class StreamedBlocks(torch.utils.data.IterableDataset):
    """Blocks made on the fly from the files, looping over the corpus until max_steps stops training."""

    def __init__(self, config: PTConfig, tokenizer: Any):
        self.config, self.tokenizer = config, tokenizer

    def __iter__(self) -> Iterator[dict[str, list[int]]]:
        from subjectlm.data import iter_pt_documents
        from subjectlm.train.tokenize import iter_blocks

        while True:
            docs = iter_pt_documents(self.config.data, txt_mode=self.config.txt_mode,
                                     skip_invalid=self.config.skip_invalid)
            empty = True
            for block in iter_blocks(docs, self.tokenizer, self.config.block_size):
                empty = False
                yield {"input_ids": block, "labels": block}
            if empty:
                raise ConfigError(f"block_size: the corpus is shorter than one block of {self.config.block_size} tokens")


def _rows(blocks: list[list[int]]) -> list[dict[str, list[int]]]:
    return [{"input_ids": b, "labels": b} for b in blocks]


def run(config: PTConfig, callbacks: list[Any] = ()) -> dict[str, Any]:
    return run_training(config, "pt", lambda tokenizer: load_data(config, tokenizer), callbacks=callbacks)


def load_data(config: PTConfig, tokenizer: Any) -> StageData:
    """Training blocks (streamed, or cached on disk) and validation blocks from --validation_file or a
    seeded --validation_split_percentage of the training blocks."""
    evaluation = None
    if config.streaming:
        train, summary = StreamedBlocks(config, tokenizer), f"streaming {', '.join(config.data)}"
    else:
        blocks, summary = load_blocks(config, config.data, tokenizer)
        if config.validation_split_percentage > 0 and not config.validation_file:
            order = list(range(len(blocks)))
            random.Random(config.seed).shuffle(order)
            n_eval = max(1, int(len(blocks) * config.validation_split_percentage / 100))
            if n_eval >= len(blocks):
                raise ConfigError("validation_split_percentage: leaves no training block; lower it or add data")
            evaluation = _rows([blocks[i] for i in sorted(order[:n_eval])])
            blocks = [blocks[i] for i in sorted(order[n_eval:])]
            summary += f" ({len(blocks)} train, {n_eval} validation)"
        train = _rows(blocks)
    if config.validation_file:
        eval_blocks, eval_summary = load_blocks(config, config.validation_file, tokenizer)
        evaluation = _rows(eval_blocks)
        summary += f"; validation: {eval_summary}"
    return StageData(train, evaluation, summary)
