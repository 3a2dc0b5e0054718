"""`subjectlm pt`: continued pre-training with LoRA on raw documents.

Every document gets an EOS token, documents are concatenated and cut into `block_size` blocks
(the seed concatenated without a separator, so the model learnt to run documents together).
"""

from __future__ import annotations

import random
from typing import Any, Iterable, Iterator

import torch

from subjectlm.config import ConfigError
from subjectlm.data.mix import describe, is_weighted, mix, sources
from subjectlm.train.config import PTConfig
from subjectlm.train.run import StageData, run_training


def load_blocks(config: PTConfig, paths: list[str], tokenizer: Any) -> tuple[list[list[int]], str]:
    from subjectlm.data import files_fingerprint, load_pt
    from subjectlm.train.tokenize import cache_dir, cache_key, iter_blocks, load_rows, save_rows

    key = cache_key(files_fingerprint(paths), tokenizer, kind="pt", block_size=config.block_size,
                    txt_mode=config.txt_mode, skip_invalid=config.skip_invalid, template=config.template,
                    system_prompt=config.system_prompt)
    path = cache_dir(config.data_cache_dir) / f"pt-{key}.safetensors"
    cached = load_rows(path)
    if cached is not None:
        rows, meta = cached
        return [r["input_ids"] for r in rows], meta["summary"] + " (cached)"
    loaded = load_pt(paths, skip_invalid=config.skip_invalid, txt_mode=config.txt_mode)
    docs = list(as_text(loaded.items, config, tokenizer))
    blocks = list(iter_blocks(docs, tokenizer, config.block_size, num_proc=config.preprocessing_num_workers))
    if not blocks:
        raise ConfigError(f"block_size: the corpus ({loaded.summary()}) is shorter than one block of {config.block_size} tokens")
    rendered = sum(not isinstance(item, str) for item in loaded.items)
    summary = loaded.summary() + (f" ({rendered} instruction records rendered through the chat template)"
                                  if rendered else "")
    summary += f" -> {len(blocks)} blocks of {config.block_size} tokens"
    save_rows(path, [{"input_ids": b} for b in blocks], {"summary": summary})
    return blocks, summary


def as_text(items: Iterable[Any], config: PTConfig, tokenizer: Any) -> Iterator[str]:
    """Documents as text: an instruction record (a Conversation) as its conversation rendered by the
    chat template, so QA can be mixed into continued pre-training."""
    from subjectlm.train.templates import conversation_text

    for item in items:
        yield item if isinstance(item, str) else conversation_text(item.messages, config.template, tokenizer,
                                                                    config.system_prompt)


class StreamedBlocks(torch.utils.data.IterableDataset):
    """Blocks made on the fly from the files, looping over the corpus until max_steps stops training."""

    def __init__(self, config: PTConfig, tokenizer: Any):
        self.config, self.tokenizer = config, tokenizer

    def __iter__(self) -> Iterator[dict[str, list[int]]]:
        from subjectlm.data import iter_pt_documents
        from subjectlm.train.tokenize import iter_blocks

        while True:
            docs = as_text(iter_pt_documents(self.config.data, txt_mode=self.config.txt_mode,
                                             skip_invalid=self.config.skip_invalid), self.config, self.tokenizer)
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
    """Training blocks (streamed, or cached on disk; drawn per source when sources are weighted) and
    validation blocks from --validation_file or a seeded --validation_split_percentage of the training
    blocks (of each source's own blocks, when weighted, so no block is in both)."""
    evaluation, drawn = None, None
    if config.streaming:
        train, summary = StreamedBlocks(config, tokenizer), f"streaming {', '.join(config.data)}"
    elif is_weighted(config.data):
        train, evaluation, summary, drawn = _weighted_blocks(config, tokenizer)
    else:
        blocks, summary = load_blocks(config, config.data, tokenizer)
        if config.validation_split_percentage > 0 and not config.validation_file:
            blocks, held_out = _hold_out(blocks, config)
            evaluation = _rows(held_out)
            summary += f" ({len(blocks)} train, {len(held_out)} validation)"
        train = _rows(blocks)
    if config.validation_file:
        eval_blocks, eval_summary = load_blocks(config, config.validation_file, tokenizer)
        evaluation = _rows(eval_blocks)
        summary += f"; validation: {eval_summary}"
    return StageData(train, evaluation, summary, drawn=drawn)


def _hold_out(blocks: list[list[int]], config: PTConfig) -> tuple[list[list[int]], list[list[int]]]:
    """(train, validation): a seeded --validation_split_percentage of the blocks, both kept in file order."""
    order = list(range(len(blocks)))
    random.Random(config.seed).shuffle(order)
    n_eval = max(1, int(len(blocks) * config.validation_split_percentage / 100))
    if n_eval >= len(blocks):
        raise ConfigError("validation_split_percentage: leaves no training block; lower it or add data")
    return [blocks[i] for i in sorted(order[n_eval:])], [blocks[i] for i in sorted(order[:n_eval])]


def _weighted_blocks(config: PTConfig, tokenizer: Any) -> tuple[list[dict], list[dict] | None, str, list[dict]]:
    """Each source blocked on its own, held out from (when splitting), then drawn by its weight."""
    split = config.validation_split_percentage > 0 and not config.validation_file
    groups, held_out, parts = [], [], []
    for source in sources(config.data):
        blocks, summary = load_blocks(config, [source.path], tokenizer)
        if split:
            blocks, held = _hold_out(blocks, config)
            held_out += held
            summary += f" ({len(blocks)} train, {len(held)} validation)"
        groups.append(blocks)
        parts.append(f"{source.path}: {summary}")
    rows, drawn = mix(groups, [s.weight for s in sources(config.data)], config.seed,
                      [s.path for s in sources(config.data)])
    summary = "; ".join([*parts, describe(drawn, "blocks")])
    return _rows(rows), _rows(held_out) if split else None, summary, [d.to_json() for d in drawn]
