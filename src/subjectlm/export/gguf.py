"""HF model directory -> one GGUF file that llama.cpp loads, on the `gguf` package's writer.

Read top to bottom: hyperparameters from config.json, vocabulary from the tokenizer
(vocab.py), then tensors streamed one at a time from the safetensors files (renamed by
names.py, rearranged where llama.cpp's layout differs, cast to the out type). The writer
is driven in its own order: header, key/values, tensor infos, then each tensor's data, so
a 7B model never sits in memory twice. The file is written beside its final name and
renamed into place only when complete.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from subjectlm.errors import UserError
from subjectlm.export.hparams import HParamsError, find, write_hparams
from subjectlm.export.names import FAMILIES, gguf_targets, text_model_name
from subjectlm.export.vocab import Vocab, build_vocab

OUTTYPES = ("f32", "f16", "bf16", "q8_0")


class ExportError(UserError, ValueError):
    pass


@dataclasses.dataclass
class ExportResult:
    path: Path
    arch: str
    outtype: str
    n_tensors: int
    n_vocab: int
    eot: str | None
    size_bytes: int


def _write_vocab(writer, vocab: Vocab) -> None:
    writer.add_tokenizer_model(vocab.model)
    if vocab.pre:
        writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.types)
    if vocab.merges:
        writer.add_token_merges(vocab.merges)
    if vocab.scores:
        writer.add_token_scores(vocab.scores)
    setters = {"bos": writer.add_bos_token_id, "eos": writer.add_eos_token_id, "unk": writer.add_unk_token_id,
               "pad": writer.add_pad_token_id, "eot": writer.add_eot_token_id, "eom": writer.add_eom_token_id}
    for key, token_id in vocab.special.items():
        setters[key](token_id)
    writer.add_add_bos_token(vocab.add_bos)
    writer.add_add_eos_token(vocab.add_eos)
    if vocab.model == "llama":
        writer.add_add_space_prefix(vocab.add_space_prefix)
    if vocab.chat_template:
        writer.add_chat_template(vocab.chat_template)


def _safetensors_files(model_dir: Path) -> list[Path]:
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise ExportError(f"{model_dir}: no *.safetensors weights (pickle .bin files are not loaded, for safety)")
    return files


def _hf_tensor_shapes(model_dir: Path) -> dict[str, tuple[tuple[int, ...], Path]]:
    """Every tensor name -> (shape, file), in file order."""
    from safetensors import safe_open

    shapes = {}
    for file in _safetensors_files(model_dir):
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():
                shapes[name] = (tuple(handle.get_slice(name).get_shape()), file)
    return shapes


@dataclasses.dataclass
class Planned:
    """One GGUF tensor and the HF tensor(s) it is made of (several: experts stacked in order)."""
    name: str
    sources: list[str]
    shape: tuple[int, ...]
    half: int | None = None     # take this half of the rows of the (single) source


def permute_qk(weight, n_head: int):
    """HF rotates the two halves of each head; llama.cpp's llama rope rotates adjacent pairs.
    Interleave each head's rows so that row pairs (i, i + d/2) become (2i, 2i + 1)."""
    rows = weight.shape[0]
    return (weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def _tensor_type(name: str, shape: tuple[int, ...], outtype: str):
    import gguf

    q = gguf.GGMLQuantizationType
    if len(shape) == 1 or outtype == "f32" or name == "rope_freqs.weight":
        return q.F32  # norms and biases stay exact: tiny, and llama.cpp expects f32 there
    if name.endswith("ffn_gate_inp.weight"):
        return q.F32  # the MoE router: small, and picks experts (llama.cpp's quantizer keeps it f32 too)
    if outtype == "q8_0":
        return q.Q8_0 if shape[-1] % 32 == 0 else q.F16
    return {"f16": q.F16, "bf16": q.BF16}[outtype]


def _cast(array, qtype):
    import gguf
    import numpy as np

    q = gguf.GGMLQuantizationType
    if qtype == q.F32:
        return np.ascontiguousarray(array, dtype=np.float32)
    if qtype == q.F16:
        return np.ascontiguousarray(array, dtype=np.float16)
    return gguf.quants.quantize(np.ascontiguousarray(array, dtype=np.float32), qtype)


# The tokens llama.cpp's Phi-3 tokenizer rule looks up (src/llama-vocab.cpp); it throws without them.
_PHI3_RULE_TOKENS = ("<s>", "</s>", "<unk>", "<|endoftext|>")


def general_name(name: str, arch: str, vocab: Vocab) -> str:
    """`general.name`. llama.cpp gives a Phi-3 vocabulary Phi-3's whitespace rules (special tokens
    absorb the whitespace after them, as in transformers) only when this name says "phi3" or "phi-3",
    so a Phi-3 fine-tune saved as `runs/merged` would otherwise tokenize its chat prompts differently."""
    lowered = name.lower()
    if arch == "phi3" and "phi3" not in lowered and "phi-3" not in lowered and \
            set(_PHI3_RULE_TOKENS) <= set(vocab.tokens):
        return f"{name} (phi3)"
    return name


def model_config(model_dir: Path) -> dict[str, Any]:
    """config.json as a dict; for a multimodal Gemma 3, its text model's config (with defaults filled
    in by transformers, since save_pretrained leaves default values out of nested configs)."""
    config = json.loads((model_dir / "config.json").read_text())
    if config.get("model_type") == "gemma3":
        from transformers import AutoConfig

        text = AutoConfig.from_pretrained(str(model_dir)).get_text_config().to_dict()
        text.setdefault("tie_word_embeddings", config.get("tie_word_embeddings", True))
        return {**text, "model_type": "gemma3"}
    return config


def _plan(model_dir: Path, config: dict[str, Any], family: str) -> list[Planned]:
    """Every GGUF tensor to write, in the order its first source appears; errors on unknown tensors
    and on experts with pieces missing."""
    tied = config.get("tie_word_embeddings", False)
    n_blocks = config["num_hidden_layers"]
    n_experts = find(config, "num_experts", "num_local_experts", default=0)
    shapes = _hf_tensor_shapes(model_dir)
    planned: dict[str, Planned] = {}
    experts: dict[str, dict[int, tuple[str, tuple[int, ...]]]] = {}
    unknown = []
    for hf_name, (shape, _) in shapes.items():
        name = text_model_name(hf_name) if family == "gemma3" else hf_name
        if name is None or (tied and name == "lm_head.weight"):
            continue  # vision tensors; a tied head (llama.cpp reuses token_embd when there is no output)
        try:
            targets = gguf_targets(name, family, n_blocks, n_experts)
        except KeyError:
            unknown.append(hf_name)
            continue
        for gguf_name, target in targets:
            if target.expert is not None:
                experts.setdefault(gguf_name, {})[target.expert] = (hf_name, shape)
                planned.setdefault(gguf_name, Planned(gguf_name, [], ()))
            elif target.half is not None:
                planned[gguf_name] = Planned(gguf_name, [hf_name], (*shape[:-2], shape[-2] // 2, shape[-1]),
                                             half=target.half)
            else:
                planned[gguf_name] = Planned(gguf_name, [hf_name], shape)
    if unknown:
        raise ExportError(f"{len(unknown)} tensor(s) this exporter does not know for {family!r}, "
                          f"e.g. {unknown[0]!r}: is this a supported model?")
    for gguf_name, parts in experts.items():
        if sorted(parts) != list(range(n_experts)):
            raise ExportError(f"{gguf_name}: found experts {sorted(parts)} of {n_experts}")
        first_shape = parts[0][1]
        planned[gguf_name].sources = [parts[i][0] for i in range(n_experts)]
        planned[gguf_name].shape = (n_experts, *first_shape)
    return list(planned.values())


class _TensorReader:
    """Reads HF tensors by name from their safetensors files as float32 numpy, one at a time."""

    def __init__(self, model_dir: Path):
        import contextlib

        from safetensors import safe_open

        self._stack = contextlib.ExitStack()
        self._files = {name: file for name, (_, file) in _hf_tensor_shapes(model_dir).items()}
        self._handles = {file: self._stack.enter_context(safe_open(str(file), framework="pt"))
                         for file in sorted(set(self._files.values()))}

    def get(self, name: str):
        import torch

        return self._handles[self._files[name]].get_tensor(name).to(torch.float32).numpy()

    def planned(self, item: Planned):
        import numpy as np

        if len(item.sources) > 1:
            return np.stack([self.get(name) for name in item.sources])
        array = self.get(item.sources[0])
        if item.half is not None:
            rows = array.shape[-2] // 2
            array = array[..., item.half * rows:(item.half + 1) * rows, :]
        return array

    def close(self):
        self._stack.close()


def export_gguf(model_dir: str | Path, output: str | Path, outtype: str = "f16", *, overwrite: bool = False,
                pre_tokenizer: str | None = None, trust_remote_code: bool = False,
                progress: bool = True) -> ExportResult:
    """Convert a local HF model directory to `output` (.gguf)."""
    import gguf
    import numpy as np
    from tqdm import tqdm

    from subjectlm.io import atomic_file, check_output_dir

    model_dir, output = Path(model_dir), Path(output)
    if outtype not in OUTTYPES:
        raise ExportError(f"outtype: {outtype!r} is not one of {', '.join(OUTTYPES)} "
                          "(other types: export f16, then --quantize)")
    check_output_dir(output, overwrite)
    config = model_config(model_dir)
    family = config.get("model_type")
    if family not in FAMILIES:
        raise ExportError(f"model_type {family!r} is not supported; supported: {', '.join(FAMILIES)} "
                          "(`export gguf --converter auto` hands other families to llama.cpp's own converter)")
    spec = FAMILIES[family]
    # The key/values are collected in memory first: a config llama.cpp cannot run stops here.
    writer = gguf.GGUFWriter(path=None, arch=spec.arch)
    writer.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                          "bf16": gguf.LlamaFileType.MOSTLY_BF16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[outtype])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    try:
        extra = write_hparams(writer, config, family)
    except HParamsError as exc:
        raise ExportError(str(exc)) from exc
    plan = _plan(model_dir, config, family)
    n_vocab = next(p.shape[0] for p in plan if p.name == "token_embd.weight")
    writer.add_vocab_size(n_vocab)
    vocab = build_vocab(model_dir, n_vocab, pre=pre_tokenizer, trust_remote_code=trust_remote_code)
    writer.add_name(general_name(config.get("_name_or_path") or model_dir.name, spec.arch, vocab))

    with atomic_file(output, mode="wb") as handle:
        _write_vocab(writer, vocab)
        types = {}
        for item in plan:
            types[item.name] = _tensor_type(item.name, item.shape, outtype)
            nbytes = _nbytes(item.shape, types[item.name])
            writer.add_tensor_info(item.name, item.shape, np.dtype(np.float32), nbytes, raw_dtype=types[item.name])
        for name, array in extra:
            writer.add_tensor_info(name, array.shape, array.dtype, array.nbytes, raw_dtype=gguf.GGMLQuantizationType.F32)
        writer.fout = [handle]  # the writer writes into our atomic temp file
        writer.state = gguf.gguf_writer.WriterState.EMPTY
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        writer.write_padding(handle, handle.tell())
        n_head, n_kv = config["num_attention_heads"], config.get("num_key_value_heads") or config["num_attention_heads"]
        bar = tqdm(total=len(plan), desc=f"export {outtype}", unit="tensor", disable=not progress)
        reader = _TensorReader(model_dir)
        try:
            # In the order of the tensor infos: the writer checks each one's size as it goes.
            for item in plan:
                array, name = reader.planned(item), item.name
                if spec.permute_qk and name.endswith("attn_q.weight"):
                    array = permute_qk(array, n_head)
                elif spec.permute_qk and name.endswith("attn_k.weight"):
                    array = permute_qk(array, n_kv)
                if spec.norm_plus_one and name.endswith("norm.weight"):
                    array = array + 1.0
                writer.write_tensor_data(_cast(array, types[name]))
                bar.update(1)
        finally:
            reader.close()
        for _, array in extra:
            writer.write_tensor_data(array)
        bar.close()
        handle.flush()
        writer.fout = None
    eot_id = vocab.special.get("eot")
    return ExportResult(output, spec.arch, outtype, len(plan) + len(extra), n_vocab,
                        vocab.tokens[eot_id] if eot_id is not None else None, output.stat().st_size)


def _nbytes(shape: tuple[int, ...], qtype) -> int:
    import gguf

    block, type_size = gguf.GGML_QUANT_SIZES[qtype]
    n = math.prod(shape)
    return n // block * type_size
