"""A HF tokenizer as GGUF vocabulary: tokens, types, merges or scores, special ids, chat template.

Two tokenizer kinds are supported, the two llama.cpp has for our families:
- "gpt2": byte-level BPE (Llama 3, Qwen 2, SmolLM): tokens and merges as in tokenizer.json,
  plus `tokenizer.ggml.pre`, the name of the pre-tokenizer regexes llama.cpp should use.
- "llama": SentencePiece (Llama 2, Mistral, Gemma): tokens with scores, from tokenizer.model
  when present, else from a byte-fallback BPE tokenizer.json (score = -merge rank, which
  makes llama.cpp's highest-score-first merging follow the BPE merge order).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from subjectlm.backends.text import end_of_turn_token  # moved to the backends, which stop generation at it
from subjectlm.errors import UserError
from subjectlm.export.names import PRE_TOKENIZERS

# llama.cpp token types (gguf.TokenType values, repeated so this table reads without gguf).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


class VocabError(UserError, ValueError):
    pass


@dataclasses.dataclass
class Vocab:
    model: str                                  # "gpt2" | "llama"
    tokens: list[str]
    types: list[int]
    merges: list[str] = dataclasses.field(default_factory=list)
    scores: list[float] = dataclasses.field(default_factory=list)
    pre: str | None = None
    special: dict[str, int] = dataclasses.field(default_factory=dict)  # bos/eos/unk/pad/eot/eom -> id
    add_bos: bool = False
    add_eos: bool = False
    add_space_prefix: bool = False
    chat_template: str | None = None


def pre_tokenizer_steps(pre: dict[str, Any] | None) -> tuple:
    """tokenizer.json's pre_tokenizer as a tuple of comparable steps (see names.PRE_TOKENIZERS)."""
    if not pre:
        return ()
    if pre.get("type") == "Sequence":
        return tuple(step for p in pre["pretokenizers"] for step in pre_tokenizer_steps(p))
    kind = pre.get("type")
    if kind == "ByteLevel":
        return (("bytelevel", bool(pre.get("use_regex", True))),)
    if kind == "Digits":
        return (("digits", bool(pre.get("individual_digits", False))),)
    if kind == "Split":
        pattern = pre.get("pattern", {})
        return (("split", pattern.get("Regex", pattern.get("String"))),)
    return ((kind.lower() if kind else "unknown", None),)


def detect_pre(tokenizer_json: dict[str, Any]) -> str:
    steps = pre_tokenizer_steps(tokenizer_json.get("pre_tokenizer"))
    if steps in PRE_TOKENIZERS:
        return PRE_TOKENIZERS[steps]
    raise VocabError(
        f"unknown BPE pre-tokenizer {steps!r}: llama.cpp would split text differently from transformers. "
        f"Known: {', '.join(sorted(set(PRE_TOKENIZERS.values())))}; if you know which llama.cpp pre-tokenizer "
        "matches, pass it with --pre_tokenizer"
    )


def _added_types(tokenizer_json: dict[str, Any]) -> dict[int, int]:
    return {t["id"]: (CONTROL if t.get("special") else USER_DEFINED) for t in tokenizer_json.get("added_tokens", [])}


def _bpe_vocab(tokenizer_json: dict[str, Any], pre: str | None) -> Vocab:
    model = tokenizer_json["model"]
    by_id = {i: tok for tok, i in model["vocab"].items()}
    added = _added_types(tokenizer_json)
    for t in tokenizer_json.get("added_tokens", []):
        by_id[t["id"]] = t["content"]
    size = max(by_id) + 1
    tokens, types = [], []
    for i in range(size):
        if i in by_id:
            tokens.append(by_id[i])
            types.append(added.get(i, NORMAL))
        else:
            tokens.append(f"[PAD{i}]")
            types.append(UNUSED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return Vocab(model="gpt2", tokens=tokens, types=types, merges=merges, pre=pre or detect_pre(tokenizer_json))


def _spm_vocab_from_model(path: Path) -> Vocab:
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_file=str(path))
    tokens, scores, types = [], [], []
    for i in range(sp.vocab_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        types.append(UNKNOWN if sp.is_unknown(i) else CONTROL if sp.is_control(i) else
                     UNUSED if sp.is_unused(i) else BYTE if sp.is_byte(i) else NORMAL)
    return Vocab(model="llama", tokens=tokens, types=types, scores=scores)


def _spm_vocab_from_json(tokenizer_json: dict[str, Any]) -> Vocab:
    model = tokenizer_json["model"]
    by_id = {i: tok for tok, i in model["vocab"].items()}
    for t in tokenizer_json.get("added_tokens", []):
        by_id[t["id"]] = t["content"]
    rank = {}
    for r, m in enumerate(model.get("merges", [])):
        left, right = m.split(" ", 1) if isinstance(m, str) else m
        rank.setdefault(left + right, r)
    added = _added_types(tokenizer_json)
    tokens, scores, types = [], [], []
    for i in range(max(by_id) + 1):
        tok = by_id.get(i, f"[PAD{i}]")
        tokens.append(tok)
        scores.append(-float(rank.get(tok, 0)))
        if i not in by_id:
            types.append(UNUSED)
        elif tok == model.get("unk_token"):
            types.append(UNKNOWN)
        elif len(tok) == 6 and tok.startswith("<0x") and tok.endswith(">"):
            types.append(BYTE)
        else:
            types.append(added.get(i, NORMAL))
    return Vocab(model="llama", tokens=tokens, types=types, scores=scores)


def build_vocab(model_dir: Path, n_vocab: int, pre: str | None = None, trust_remote_code: bool = False) -> Vocab:
    """Read the tokenizer in `model_dir` as a GGUF vocabulary padded to the embedding's `n_vocab` rows."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)
    # The tokenizer as transformers actually runs it: a tokenizer class may replace what
    # tokenizer.json says (transformers 5's Qwen2Tokenizer installs Qwen's own pre-tokenizer).
    backend = getattr(tokenizer, "backend_tokenizer", None)
    tj_path = model_dir / "tokenizer.json"
    if backend is not None:
        tj = json.loads(backend.to_str())
    else:
        tj = json.loads(tj_path.read_text(encoding="utf-8")) if tj_path.is_file() else None
    if (model_dir / "tokenizer.model").is_file():
        vocab = _spm_vocab_from_model(model_dir / "tokenizer.model")
    elif tj and tj["model"].get("type") == "BPE" and tj["model"].get("byte_fallback"):
        vocab = _spm_vocab_from_json(tj)
    elif tj and tj["model"].get("type") == "BPE":
        vocab = _bpe_vocab(tj, pre)
    else:
        raise VocabError(f"{model_dir}: need tokenizer.json (BPE) or tokenizer.model (SentencePiece)")
    if vocab.model == "llama":
        # Llama 2 / Mistral prepend "▁" to the text (SentencePiece's dummy prefix), written either as a
        # Prepend normalizer or as a Metaspace pre-tokenizer; Gemma does not.
        norm = (tj or {}).get("normalizer") or {}
        pre = (tj or {}).get("pre_tokenizer") or {}
        steps = norm.get("normalizers", [norm]) + pre.get("pretokenizers", [pre])
        vocab.add_space_prefix = (tj is None) or any(
            (s.get("type") == "Prepend" and s.get("prepend") == "\u2581")
            or (s.get("type") == "Metaspace" and s.get("prepend_scheme", "always") in ("always", "first"))
            for s in steps)
    # The embedding decides the vocabulary size; the tokenizer may be shorter (padding rows).
    if len(vocab.tokens) > n_vocab:
        raise VocabError(f"the tokenizer has {len(vocab.tokens)} tokens but the model's embedding has only "
                         f"{n_vocab} rows; the tokenizer does not belong to this model")
    for i in range(len(vocab.tokens), n_vocab):
        vocab.tokens.append(f"[PAD{i}]")
        vocab.types.append(UNUSED)
        if vocab.scores:
            vocab.scores.append(-1e6)

    ids = {"bos": tokenizer.bos_token_id, "eos": tokenizer.eos_token_id, "unk": tokenizer.unk_token_id,
           "pad": tokenizer.pad_token_id}
    eot = end_of_turn_token(tokenizer)
    if eot is not None:
        ids["eot"] = tokenizer.convert_tokens_to_ids(eot)
    if "<|eom_id|>" in tokenizer.get_vocab():  # Llama 3.1 tool calls end with this
        ids["eom"] = tokenizer.convert_tokens_to_ids("<|eom_id|>")
    vocab.special = {k: int(v) for k, v in ids.items() if v is not None}
    probe = tokenizer("a", add_special_tokens=True)["input_ids"]
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    vocab.add_bos = tokenizer.bos_token_id is not None and probe[:1] == [tokenizer.bos_token_id] and bare[:1] != probe[:1]
    vocab.add_eos = tokenizer.eos_token_id is not None and probe[-1:] == [tokenizer.eos_token_id] and bare[-1:] != probe[-1:]
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):  # named templates: llama.cpp reads the default one
        template = template.get("default") or next(iter(template.values()), None)
    vocab.chat_template = template
    return vocab
