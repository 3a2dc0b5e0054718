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
from typing import Any, Iterator

from subjectlm.errors import UserError
from subjectlm.export.names import FAMILIES, gguf_tensor_name
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


def _rope(config: dict[str, Any]) -> dict[str, Any]:
    """transformers 5 keeps rope settings in `rope_parameters`; older configs in rope_theta/rope_scaling."""
    params = dict(config.get("rope_parameters") or {})
    if "rope_theta" not in params and "rope_theta" in config:
        params["rope_theta"] = config["rope_theta"]
    scaling = config.get("rope_scaling") or {}
    for key, value in scaling.items():
        params.setdefault("rope_type" if key == "type" else key, value)
    params.setdefault("rope_type", "default")
    params.setdefault("rope_theta", 10000.0)
    return params


def _llama3_rope_factors(rope: dict[str, Any], head_dim: int):
    """Per-frequency divisors for Llama 3.1's rope scaling (llama.cpp reads them as `rope_freqs`)."""
    import numpy as np

    base, factor = rope["rope_theta"], rope["factor"]
    low, high = rope.get("low_freq_factor", 1.0), rope.get("high_freq_factor", 4.0)
    old_ctx = rope.get("original_max_position_embeddings", 8192)
    freqs = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < old_ctx / high:
            out.append(1.0)
        elif wavelen > old_ctx / low:
            out.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def _write_hparams(writer, config: dict[str, Any], family: str, n_vocab: int) -> list[tuple[str, Any]]:
    """Model key/values; returns extra tensors the hparams imply (Llama 3 rope factors)."""
    import gguf

    n_head = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // n_head
    writer.add_context_length(config.get("max_position_embeddings", 2048))
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(n_head)
    writer.add_head_count_kv(config.get("num_key_value_heads") or n_head)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(config.get("rms_norm_eps", 1e-6))
    writer.add_vocab_size(n_vocab)
    rope = _rope(config)
    writer.add_rope_freq_base(float(rope["rope_theta"]))
    extra = []
    kind = rope["rope_type"]
    if kind == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(rope["factor"]))
    elif kind == "yarn":
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(float(rope["factor"]))
        writer.add_rope_scaling_orig_ctx_len(int(rope["original_max_position_embeddings"]))
    elif kind == "llama3":
        extra.append(("rope_freqs.weight", _llama3_rope_factors(rope, head_dim)))
    elif kind != "default":
        raise ExportError(f"rope scaling {kind!r} is not supported by this exporter (default, linear, yarn, llama3)")
    if family == "gemma2":
        if config.get("query_pre_attn_scalar", head_dim) != head_dim:
            raise ExportError("gemma2 with query_pre_attn_scalar != head_dim is not supported")
        writer.add_attn_logit_softcapping(float(config.get("attn_logit_softcapping") or 50.0))
        writer.add_final_logit_softcapping(float(config.get("final_logit_softcapping") or 30.0))
        writer.add_sliding_window(int(config.get("sliding_window") or 4096))
    return extra


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


def _hf_tensors(model_dir: Path) -> Iterator[tuple[str, Any]]:
    """(name, float32 numpy array), one tensor at a time."""
    import torch
    from safetensors import safe_open

    for file in _safetensors_files(model_dir):
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():
                yield name, handle.get_tensor(name).to(torch.float32).numpy()


def _hf_tensor_shapes(model_dir: Path) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    shapes = {}
    for file in _safetensors_files(model_dir):
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():
                shapes[name] = tuple(handle.get_slice(name).get_shape())
    return shapes


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


def _plan(model_dir: Path, config: dict[str, Any], family: str) -> list[tuple[str, str, tuple[int, ...]]]:
    """(hf name, gguf name, shape) for every tensor to write, in file order; errors on unknown ones."""
    tied = config.get("tie_word_embeddings", False)
    n_blocks = config["num_hidden_layers"]
    plan = []
    unknown = []
    for hf_name, shape in _hf_tensor_shapes(model_dir).items():
        if tied and hf_name == "lm_head.weight":
            continue  # llama.cpp reuses token_embd when there is no output tensor
        try:
            name = gguf_tensor_name(hf_name, family, n_blocks)
        except KeyError:
            unknown.append(hf_name)
            continue
        if name is not None:
            plan.append((hf_name, name, shape))
    if unknown:
        raise ExportError(f"{len(unknown)} tensor(s) this exporter does not know for {family!r}, "
                          f"e.g. {unknown[0]!r}: is this a supported model?")
    return plan


def export_gguf(model_dir: str | Path, output: str | Path, outtype: str = "f16", overwrite: bool = False,
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
    config = json.loads((model_dir / "config.json").read_text())
    family = config.get("model_type")
    if family not in FAMILIES:
        raise ExportError(f"model_type {family!r} is not supported; supported: {', '.join(FAMILIES)}")
    spec = FAMILIES[family]
    plan = _plan(model_dir, config, family)
    n_vocab = dict((g, s) for _, g, s in plan)["token_embd.weight"][0]
    vocab = build_vocab(model_dir, n_vocab, pre=pre_tokenizer, trust_remote_code=trust_remote_code)

    with atomic_file(output, mode="wb") as handle:
        writer = gguf.GGUFWriter(path=None, arch=spec.arch)
        writer.add_name(config.get("_name_or_path") or model_dir.name)
        writer.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                              "bf16": gguf.LlamaFileType.MOSTLY_BF16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[outtype])
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        extra = _write_hparams(writer, config, family, n_vocab)
        _write_vocab(writer, vocab)
        types = {}
        for _, name, shape in plan:
            types[name] = _tensor_type(name, shape, outtype)
            nbytes = _nbytes(shape, types[name])
            writer.add_tensor_info(name, shape, np.dtype(np.float32), nbytes, raw_dtype=types[name])
        for name, array in extra:
            writer.add_tensor_info(name, array.shape, array.dtype, array.nbytes, raw_dtype=gguf.GGMLQuantizationType.F32)
        writer.fout = [handle]  # the writer writes into our atomic temp file
        writer.state = gguf.gguf_writer.WriterState.EMPTY
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        writer.write_padding(handle, handle.tell())
        wanted = {hf: name for hf, name, _ in plan}
        n_head, n_kv = config["num_attention_heads"], config.get("num_key_value_heads") or config["num_attention_heads"]
        bar = tqdm(total=len(plan), desc=f"export {outtype}", unit="tensor", disable=not progress)
        # Tensors come out of safetensors in the order _plan saw them, which is the order of the
        # tensor infos: the writer checks each one's size as it goes.
        for hf_name, array in _hf_tensors(model_dir):
            if hf_name not in wanted:
                continue
            name = wanted[hf_name]
            if spec.permute_qk and name.endswith("attn_q.weight"):
                array = permute_qk(array, n_head)
            elif spec.permute_qk and name.endswith("attn_k.weight"):
                array = permute_qk(array, n_kv)
            if spec.norm_plus_one and name.endswith("norm.weight"):
                array = array + 1.0
            writer.write_tensor_data(_cast(array, types[name]))
            bar.update(1)
        for name, array in extra:
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
