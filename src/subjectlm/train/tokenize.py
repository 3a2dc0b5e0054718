"""Records -> token ids and labels: sft conversations with answer-only labels, pt blocks with EOS between documents.

Tokenized data is cached on disk as safetensors keyed by the data files' content hash, the
tokenizer (vocab, special tokens, chat template) and every option that changes the result, so
a changed tokenizer or block size never reuses stale ids (the seed keyed on file names only).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Iterator

from subjectlm.train.templates import Message, render

IGNORE = -100


@dataclasses.dataclass
class SFTStats:
    examples: int = 0
    truncated: int = 0          # shortened (history or prompt cut first) but still trained
    dropped: int = 0            # nothing left to train after truncation
    dropped_sources: list[str] = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        text = f"{self.examples} examples, {self.truncated} truncated, {self.dropped} dropped (no answer token fits)"
        if self.dropped_sources:
            text += ": " + ", ".join(self.dropped_sources[:5]) + (" ..." if self.dropped > 5 else "")
        return text


def tokenize_segments(segments: list[tuple[str, bool]], tokenizer: Any) -> tuple[list[int], list[bool]]:
    """Tokenize the whole text at once (as inference will) and mark tokens that start inside a trained span."""
    text = "".join(s for s, _ in segments)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    spans, pos = [], 0
    for s, trained in segments:
        if trained:
            spans.append((pos, pos + len(s)))
        pos += len(s)
    mask, k = [], 0
    for start, end in enc["offset_mapping"]:
        while k < len(spans) and spans[k][1] <= start:
            k += 1
        mask.append(k < len(spans) and spans[k][0] <= start < spans[k][1] and end > start)
    return list(enc["input_ids"]), mask


def _drop_oldest_exchange(messages: list[Message]) -> list[Message] | None:
    """Remove the first user..assistant exchange after any system message; None when one answer is left."""
    head = [m for m in messages[:1] if m["role"] == "system"]
    rest = messages[len(head):]
    answers = [i for i, m in enumerate(rest) if m["role"] == "assistant"]
    if len(answers) < 2:
        return None
    return head + rest[answers[0] + 1:]


def _shorten_last_prompt(messages: list[Message], excess: int, tokenizer: Any) -> list[Message] | None:
    """Cut `excess` tokens (a few more for safety) from the end of the last user message."""
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=None)
    if last_user is None:
        return None
    ids = tokenizer(messages[last_user]["content"], add_special_tokens=False)["input_ids"]
    if not ids:
        return None
    keep = max(0, len(ids) - excess - 4)
    out = [dict(m) for m in messages]
    out[last_user]["content"] = tokenizer.decode(ids[:keep])
    return out


def tokenize_conversation(messages: list[Message], tokenizer: Any, template: str, max_seq_length: int,
                          system_prompt: str = "") -> tuple[list[int], list[int], str]:
    """(input_ids, labels, status) with status ok | truncated | dropped.

    Too long: drop the oldest exchanges first, then shorten the last prompt, and only then cut the
    answer's end; an example with no trained token left is dropped.
    """
    status = "ok"
    for _ in range(64):
        ids, mask = tokenize_segments(render(messages, template, tokenizer, system_prompt), tokenizer)
        if len(ids) <= max_seq_length:
            break
        status = "truncated"
        shorter = _drop_oldest_exchange(messages)
        if shorter is None:
            shorter = _shorten_last_prompt(messages, len(ids) - max_seq_length, tokenizer)
            if shorter is None or shorter == messages:
                ids, mask = ids[:max_seq_length], mask[:max_seq_length]
                break
        messages = shorter
    labels = [t if m else IGNORE for t, m in zip(ids, mask)]
    # Position 0 is never predicted, so an example needs a trained token after it.
    if not any(label != IGNORE for label in labels[1:]):
        return [], [], "dropped"
    return ids, labels, status


# ---- worker processes (--preprocessing_num_workers): forked, so the tokenizer is shared, not pickled

_WORK: dict[str, Any] = {}


def _conversation_in_worker(messages: list[Message]) -> tuple[list[int], list[int], str]:
    return tokenize_conversation(messages, _WORK["tokenizer"], *_WORK["args"])


def _batch_in_worker(docs: list[str]) -> list[list[int]]:
    return _WORK["tokenizer"](docs, add_special_tokens=False)["input_ids"]


def _mapped(fn: Any, items: list[Any], tokenizer: Any, args: tuple, num_proc: int) -> Iterator[Any]:
    """fn over items in order, in `num_proc` forked processes (one: here; no fork on this OS: here too)."""
    import multiprocessing

    _WORK.update(tokenizer=tokenizer, args=args)
    try:
        if num_proc <= 1 or len(items) < 2 or "fork" not in multiprocessing.get_all_start_methods():
            yield from map(fn, items)
            return
        with multiprocessing.get_context("fork").Pool(num_proc) as pool:
            yield from pool.imap(fn, items, chunksize=max(1, len(items) // (8 * num_proc)))
    finally:
        _WORK.clear()


def tokenize_sft(conversations: Iterable[Any], tokenizer: Any, template: str, max_seq_length: int,
                 system_prompt: str = "", progress: bool = True,
                 num_proc: int = 1) -> tuple[list[dict[str, list[int]]], SFTStats]:
    from tqdm.auto import tqdm

    stats = SFTStats()
    rows = []
    conversations = list(conversations)
    results = _mapped(_conversation_in_worker, [c.messages for c in conversations], tokenizer,
                      (template, max_seq_length, system_prompt), num_proc)
    for conv, (ids, labels, status) in tqdm(zip(conversations, results), total=len(conversations),
                                            desc="tokenizing", unit="ex", disable=not progress):
        if status == "dropped":
            stats.dropped += 1
            stats.dropped_sources.append(str(getattr(conv, "source", "?")))
            continue
        stats.examples += 1
        stats.truncated += status == "truncated"
        rows.append({"input_ids": ids, "labels": labels})
    return rows, stats


# ---- pt: documents -> blocks


def iter_blocks(documents: Iterable[str], tokenizer: Any, block_size: int, batch: int = 256,
                num_proc: int = 1) -> Iterator[list[int]]:
    """EOS after every document, concatenate, emit full `block_size` blocks (the tail is dropped).
    With `num_proc` > 1 the documents (a list, not a stream) are tokenized in that many processes."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no EOS token to separate documents")
    if num_proc > 1:
        docs = list(documents)
        batches = _mapped(_batch_in_worker, [docs[i:i + batch] for i in range(0, len(docs), batch)],
                          tokenizer, (), num_proc)
    else:
        batches = (tokenizer(chunk, add_special_tokens=False)["input_ids"] for chunk in _chunks(documents, batch))
    buffer: list[int] = []
    for tokenized in batches:
        for ids in tokenized:
            buffer.extend(ids)
            buffer.append(eos)
        n = len(buffer) // block_size
        for i in range(n):
            yield buffer[i * block_size:(i + 1) * block_size]
        buffer = buffer[n * block_size:]


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# ---- cache


def tokenizer_fingerprint(tokenizer: Any) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    body = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    extra = json.dumps([getattr(tokenizer, "chat_template", None), tokenizer.special_tokens_map, len(tokenizer)],
                       sort_keys=True, default=str)
    return hashlib.sha256((body + extra).encode()).hexdigest()[:16]


def cache_key(files_hash: str, tokenizer: Any, **options: Any) -> str:
    text = json.dumps({"files": files_hash, "tokenizer": tokenizer_fingerprint(tokenizer), **options},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def cache_dir(override: str = "") -> Path:
    """Where tokenized data is cached: `override` (the --data_cache_dir of the old scripts) or our home."""
    from subjectlm.models import subjectlm_home

    return Path(override).expanduser() if override else subjectlm_home() / "cache" / "tokenized"


def save_rows(path: Path, rows: list[dict[str, list[int]]], meta: dict[str, Any]) -> None:
    """Rows of variable length as flat int32 arrays plus offsets, in safetensors (no pickle)."""
    import torch
    from safetensors.torch import save_file

    from subjectlm.io import atomic_file

    lengths = torch.tensor([len(r["input_ids"]) for r in rows], dtype=torch.int64)
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])
    tensors = {"offsets": offsets}
    for key in rows[0] if rows else ("input_ids",):
        tensors[key] = torch.tensor([t for r in rows for t in r[key]], dtype=torch.int32)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, "wb") as handle:
        handle.close()
        save_file(tensors, handle.name, metadata={"meta": json.dumps(meta)})


def load_rows(path: Path) -> tuple[list[dict[str, list[int]]], dict[str, Any]] | None:
    from safetensors import safe_open

    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["meta"])
        offsets = f.get_tensor("offsets").tolist()
        columns = {k: f.get_tensor(k).tolist() for k in f.keys() if k != "offsets"}
    rows = [{k: v[a:b] for k, v in columns.items()} for a, b in zip(offsets[:-1], offsets[1:])]
    return rows, meta
