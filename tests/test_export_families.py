"""GGUF export of the newer families (Qwen 3, Qwen 3 MoE, Gemma 3, Phi-3) and of Gemma 2 27B's shape:
tables, metadata, and llama.cpp computing what transformers computes on a tiny random model of each.

Each model is exported as f32 so the comparison measures the converter, not rounding: mean KL
<= 1e-6 and top-1 >= 99.9% over ~250 positions, as `export verify` reports them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

needs_llama_cpp = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                                     reason="llama-cpp-python is not installed (pip install 'subjectlm[gguf]')")


def _save(path: Path, model, tokenizer, seed: int) -> Path:
    import torch

    torch.manual_seed(seed)
    # Random init leaves norms at 1 (Gemma: 0) and weights tiny; perturb the norms so a missed norm
    # fix-up shows, and scale everything up so the logits are far from uniform (a wrong layout then
    # moves the KL divergence by orders of magnitude, not by 1e-7).
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
            elif p.dim() >= 2:
                p.mul_(4.0)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


def _tiny(path: Path, config, tokenizer, seed: int) -> Path:
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config).to(torch.float32)
    return _save(path, model, tokenizer, seed)


def _common(tok):
    return dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)


def qwen3_config(tok):
    from transformers import Qwen3Config

    # head_dim 32 with 4 heads of hidden 64: q is 128 wide, not hidden
    return Qwen3Config(**_common(tok), head_dim=32, tie_word_embeddings=False)


def qwen3_moe_config(tok):
    from transformers import Qwen3MoeConfig

    return Qwen3MoeConfig(**_common(tok), head_dim=32, moe_intermediate_size=32, num_experts=4,
                          num_experts_per_tok=2, norm_topk_prob=True, tie_word_embeddings=False)


def gemma3_config(tok):
    from transformers import Gemma3TextConfig

    # 3 layers: sliding, full, sliding (a pattern of 2), window 64 < the 256 compared tokens, and a
    # local rope base unlike the global one: a wrong pattern, window or base shows in the logits.
    common = {**_common(tok), "num_hidden_layers": 3}
    return Gemma3TextConfig(**common, head_dim=16, query_pre_attn_scalar=16, sliding_window=64,
                            layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                            rope_parameters={"full_attention": {"rope_type": "linear", "factor": 4.0,
                                                                "rope_theta": 1_000_000.0},
                                             "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0}},
                            final_logit_softcapping=30.0)


def gemma2_27b_config(tok, scalar: int | None = None, layers: int = 46):
    """Gemma 2 27B in miniature: 46 layers (llama.cpp knows the 27B by that count) and queries scaled by
    hidden/heads = 64/4 = 16, not by head_dim 32 (the 27B: 4608/32 = 144 against head_dim 128)."""
    from transformers import Gemma2Config

    # window 64 < the 256 compared tokens: every other layer's sliding window shows in the logits
    common = {**_common(tok), "num_hidden_layers": layers}
    return Gemma2Config(**common, head_dim=32, query_pre_attn_scalar=16 if scalar is None else scalar,
                        sliding_window=64, attn_logit_softcapping=50.0, final_logit_softcapping=30.0)


def gemma3_vlm_config(tok):
    """Gemma 3 with its vision tower (Gemma3ForConditionalGeneration): the GGUF is the text model."""
    from transformers import Gemma3Config

    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=28,
                  patch_size=14)
    n = len(tok)
    return Gemma3Config(text_config=gemma3_config(tok).to_dict(), vision_config=vision, mm_tokens_per_image=4,
                        image_token_index=n - 1, boi_token_index=n - 2, eoi_token_index=n - 3)


def phi3_config(tok, longrope: bool = False):
    from transformers import Phi3Config

    common = {**_common(tok), "max_position_embeddings": 4096}
    rope = {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5}
    if longrope:  # Phi-3.5's rope: per-frequency factors, short ones below original_max_position_embeddings
        rope = {"rope_type": "longrope", "rope_theta": 10000.0, "original_max_position_embeddings": 1024,
                "short_factor": [1.0 + 0.1 * i for i in range(8)], "long_factor": [2.0 + i for i in range(8)],
                "partial_rotary_factor": 1.0}
    return Phi3Config(**common, rope_parameters=rope, sliding_window=None, tie_word_embeddings=False)


CONFIGS = {"qwen3": qwen3_config, "qwen3_moe": qwen3_moe_config, "gemma3_text": gemma3_config,
           "gemma3": gemma3_vlm_config, "gemma2-27b": gemma2_27b_config, "phi3": phi3_config,
           "phi3-longrope": lambda tok: phi3_config(tok, longrope=True)}


@pytest.fixture(scope="module")
def family_dir(request, tmp_path_factory, smollm_tokenizer):
    name = request.param
    # Not named after the family: llama.cpp gives special tokens of models whose general.name says
    # "phi3" Phi-3's strip rules and looks up Phi-3's own tokens, which the SmolLM2 tokenizer lacks.
    return _tiny(tmp_path_factory.mktemp(f"tiny-{list(CONFIGS).index(name)}"), CONFIGS[name](smollm_tokenizer),
                 smollm_tokenizer, seed=len(name))


# ---- tables -------------------------------------------------------------------------------

@pytest.mark.parametrize("family, hf, expected", [
    ("qwen3", "model.layers.1.self_attn.q_norm.weight", [("blk.1.attn_q_norm.weight", None, None)]),
    ("gemma3_text", "model.layers.0.self_attn.k_norm.weight", [("blk.0.attn_k_norm.weight", None, None)]),
    ("gemma3_text", "model.layers.0.post_feedforward_layernorm.weight", [("blk.0.post_ffw_norm.weight", None, None)]),
    ("phi3", "model.layers.0.self_attn.qkv_proj.weight", [("blk.0.attn_qkv.weight", None, None)]),
    ("phi3", "model.layers.0.mlp.gate_up_proj.weight", [("blk.0.ffn_up.weight", None, None)]),
    ("qwen3_moe", "model.layers.1.mlp.gate.weight", [("blk.1.ffn_gate_inp.weight", None, None)]),
    ("qwen3_moe", "model.layers.1.mlp.experts.3.down_proj.weight", [("blk.1.ffn_down_exps.weight", 3, None)]),
    ("qwen3_moe", "model.layers.0.mlp.experts.gate_up_proj",
     [("blk.0.ffn_gate_exps.weight", None, 0), ("blk.0.ffn_up_exps.weight", None, 1)]),
])
def test_tensor_targets(family, hf, expected):
    from subjectlm.export.names import gguf_targets

    got = [(name, t.expert, t.half) for name, t in gguf_targets(hf, family, n_blocks=2, n_experts=4)]
    assert got == expected


def test_multimodal_gemma3_names_are_the_text_models():
    from subjectlm.export.names import text_model_name

    assert text_model_name("model.language_model.layers.0.mlp.up_proj.weight") == "model.layers.0.mlp.up_proj.weight"
    assert text_model_name("language_model.model.norm.weight") == "model.norm.weight"
    assert text_model_name("model.vision_tower.vision_model.embeddings.patch_embedding.weight") is None
    assert text_model_name("lm_head.weight") == "lm_head.weight"


def test_every_table_arch_is_one_llama_cpp_knows():
    """llama.cpp's own arch list, as the installed gguf package has it."""
    import gguf

    from subjectlm.export.names import FAMILIES

    known = set(gguf.MODEL_ARCH_NAMES.values())
    assert {f.arch for f in FAMILIES.values()} <= known


@pytest.mark.parametrize("change, message", [
    ({"norm_topk_prob": False}, "renormalizes"),
    ({"mlp_only_layers": [0]}, "every layer"),
])
def test_qwen3_moe_routing_llama_cpp_cannot_run_is_refused(change, message, smollm_tokenizer, tmp_path):
    from subjectlm.export.gguf import ExportError, export_gguf

    config = qwen3_moe_config(smollm_tokenizer)
    for key, value in change.items():
        setattr(config, key, value)
    model_dir = _tiny(tmp_path / "m", config, smollm_tokenizer, seed=0)
    with pytest.raises(ExportError, match=message):
        export_gguf(model_dir, tmp_path / "x.gguf", "f32", progress=False)


@pytest.mark.parametrize("layers, scalar, expected", [
    (26, 16, 32),  # Gemma 2 2B's layer count: llama.cpp scales by head_dim (32)
    (46, 32, 16),  # the 27B's: llama.cpp scales by hidden/heads (16), whatever head_dim is
])
def test_gemma2_query_scale_llama_cpp_would_not_use_is_refused(layers, scalar, expected, smollm_tokenizer, tmp_path):
    from subjectlm.export.gguf import ExportError, export_gguf

    model_dir = _tiny(tmp_path / "m", gemma2_27b_config(smollm_tokenizer, scalar, layers), smollm_tokenizer, seed=0)
    with pytest.raises(ExportError, match=rf"query_pre_attn_scalar {scalar} .* 1/sqrt\({expected}\)"):
        export_gguf(model_dir, tmp_path / "x.gguf", "f32", progress=False)
    assert not (tmp_path / "x.gguf").exists()


# ---- metadata -------------------------------------------------------------------------------

def _fields(path):
    import gguf

    reader = gguf.GGUFReader(str(path))
    skip = ("tokenizer.ggml.merges", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type")
    return ({k: v.contents() for k, v in reader.fields.items() if k not in skip},
            {t.name: tuple(int(x) for x in t.shape) for t in reader.tensors},
            {t.name: t.tensor_type.name for t in reader.tensors})


@pytest.mark.parametrize("family_dir", ["qwen3_moe"], indirect=True)
def test_qwen3_moe_metadata_and_stacked_experts(family_dir, tmp_path):
    from subjectlm.export.gguf import export_gguf

    f, shapes, types = _fields(export_gguf(family_dir, tmp_path / "m.gguf", "q8_0", progress=False).path)
    assert f["general.architecture"] == "qwen3moe"
    assert types["blk.1.ffn_gate_inp.weight"] == "F32" and types["blk.1.ffn_up_exps.weight"] == "Q8_0"
    assert (f["qwen3moe.expert_count"], f["qwen3moe.expert_used_count"]) == (4, 2)
    assert f["qwen3moe.expert_feed_forward_length"] == 32
    assert f["qwen3moe.attention.key_length"] == 32 and f["qwen3moe.embedding_length"] == 64
    # GGUF shapes are ggml's ne (innermost first): {n_embd, n_ff_exp, n_expert}, {n_ff_exp, n_embd, n_expert}
    assert shapes["blk.1.ffn_gate_exps.weight"] == (64, 32, 4)
    assert shapes["blk.1.ffn_up_exps.weight"] == (64, 32, 4)
    assert shapes["blk.1.ffn_down_exps.weight"] == (32, 64, 4)
    assert shapes["blk.1.ffn_gate_inp.weight"] == (64, 4)
    assert shapes["blk.0.attn_q_norm.weight"] == (32,)


@pytest.mark.parametrize("family_dir", ["gemma3_text"], indirect=True)
def test_gemma3_metadata_has_the_pattern_and_both_rope_bases(family_dir, tmp_path):
    from subjectlm.export.gguf import export_gguf

    f, _, _ = _fields(export_gguf(family_dir, tmp_path / "m.gguf", "f32", progress=False).path)
    assert f["general.architecture"] == "gemma3"
    assert f["gemma3.attention.sliding_window"] == 64
    assert f["gemma3.attention.sliding_window_pattern"] == [True, False, True]
    assert f["gemma3.rope.freq_base"] == 1_000_000.0 and f["gemma3.rope.freq_base_swa"] == 10_000.0
    assert f["gemma3.rope.scaling.factor"] == 4.0
    assert f["gemma3.final_logit_softcapping"] == 30.0


@pytest.mark.parametrize("family_dir", ["gemma2-27b"], indirect=True)
def test_gemma2_27b_metadata_is_what_llama_cpp_reads_as_a_27b(family_dir, tmp_path):
    from subjectlm.export.gguf import export_gguf

    f, shapes, _ = _fields(export_gguf(family_dir, tmp_path / "m.gguf", "f32", progress=False).path)
    assert f["general.architecture"] == "gemma2"
    assert f["gemma2.block_count"] == 46  # how llama.cpp tells the 27B (and its query scale) apart
    assert (f["gemma2.embedding_length"], f["gemma2.attention.head_count"], f["gemma2.attention.key_length"]) == (
        64, 4, 32)
    assert f["gemma2.attention.sliding_window"] == 64
    assert shapes["blk.45.attn_q.weight"] == (64, 128)  # q is heads * head_dim wide, not hidden


def test_moe_experts_saved_fused_are_split_like_per_expert_ones(smollm_tokenizer, tmp_path):
    """transformers 5 holds experts as one fused [n_expert, 2 * ff, hidden] gate_up tensor; a checkpoint
    saved that way exports to the same GGUF, byte for byte, as the per-expert checkpoint save_pretrained
    writes."""
    import torch
    from safetensors.torch import load_file, save_file

    from subjectlm.export.gguf import export_gguf

    # Both directories are called "model", so the GGUFs' general.name agrees too.
    per_expert = _tiny(tmp_path / "a" / "model", qwen3_moe_config(smollm_tokenizer), smollm_tokenizer, seed=9)
    tensors = load_file(per_expert / "model.safetensors")
    fused = {}
    for name, value in tensors.items():
        if ".mlp.experts." not in name:
            fused[name] = value
        elif name.endswith("experts.0.gate_proj.weight"):
            prefix = name.removesuffix("0.gate_proj.weight")
            stack = {w: torch.stack([tensors[f"{prefix}{x}.{w}.weight"] for x in range(4)]) for w in
                     ("gate_proj", "up_proj", "down_proj")}
            fused[prefix + "gate_up_proj"] = torch.cat([stack["gate_proj"], stack["up_proj"]], dim=1)
            fused[prefix + "down_proj"] = stack["down_proj"]
    other = tmp_path / "b" / "model"
    other.mkdir(parents=True)
    for file in per_expert.iterdir():
        if file.name != "model.safetensors":
            (other / file.name).write_bytes(file.read_bytes())
    save_file(fused, other / "model.safetensors", metadata={"format": "pt"})
    a = export_gguf(per_expert, tmp_path / "a.gguf", "f32", progress=False).path
    b = export_gguf(other, tmp_path / "b.gguf", "f32", progress=False).path
    assert a.read_bytes() == b.read_bytes()


# ---- llama.cpp agrees -------------------------------------------------------------------------

@needs_llama_cpp
@pytest.mark.parametrize("family_dir", list(CONFIGS), indirect=True)
def test_f32_export_verifies(family_dir, tmp_path):
    from subjectlm.export.gguf import export_gguf
    from subjectlm.export.verify import verify

    path = export_gguf(family_dir, tmp_path / "m.gguf", "f32", progress=False).path
    (row,) = verify(family_dir, [path], max_tokens=256)
    assert row.n_tokens >= 200
    assert row.tokens_match, "llama.cpp tokenizes the sample differently from transformers"
    assert row.top1 >= 0.999, row
    assert row.mean_kld <= 1e-6, row
