"""`subjectlm merge`: the merged model computes what base + adapters compute in peft.

Adapters are made with peft on the tiny models (LoRA B initialised randomly, not to
zero, and modules_to_save copies perturbed) so every merge really changes the logits.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from subjectlm.merge import MergeConfig, run
from subjectlm.merge.errors import MergeError

TOL = 1e-5  # fp32 logits, merged vs peft


# ---------------------------------------------------------------- helpers


def make_adapter(base: Path, out: Path, seed: int = 0, resize: int | None = None, perturb_saved: bool = True,
                 merged_first: list[Path] = (), **lora) -> Path:
    """Save a peft LoRA adapter for `base` (optionally on top of already-merged adapters)."""
    import torch
    from peft import LoraConfig, get_peft_model

    model = peft_reference(base, list(merged_first), live=False) if merged_first else _load(base)
    if resize:
        model.resize_token_embeddings(resize)
    lora.setdefault("r", 4)
    lora.setdefault("lora_alpha", 8)
    lora.setdefault("target_modules", ["q_proj", "v_proj"])
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peft_model = get_peft_model(model, LoraConfig(init_lora_weights=False, **lora))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "modules_to_save" in name and perturb_saved:
                param.add_(0.05 * torch.randn_like(param))
            elif name.endswith("bias") and param.requires_grad:  # lora_B biases, and all biases with bias="all"
                param.copy_(0.1 * torch.randn_like(param))
    peft_model.save_pretrained(out)
    return out


def _load(path: Path):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()


def peft_reference(base: Path, adapters: list[Path], live: bool = True, resize: int | None = None):
    """Base + adapters in peft: all merged by peft but the last, which stays live (if `live`)."""
    from peft import PeftModel

    model = _load(base)
    if resize:
        model.resize_token_embeddings(resize)
    for i, adapter in enumerate(adapters):
        model = PeftModel.from_pretrained(model, str(adapter))
        if i < len(adapters) - 1 or not live:
            model = model.merge_and_unload()
    return model.eval()


def logits(model, vocab: int | None = None):
    import torch

    vocab = vocab or model.get_input_embeddings().weight.shape[0]
    ids = torch.randint(0, vocab, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model(input_ids=ids).logits


def assert_matches_peft(merged: Path, base: Path, adapters: list[Path], resize: int | None = None) -> float:
    got = logits(_load(merged))
    want = logits(peft_reference(base, adapters, resize=resize))
    plain = logits(_load(base)) if not resize else None
    diff = (got - want).abs().max().item()
    assert diff <= TOL, f"merged vs peft: max abs logit diff {diff}"
    if plain is not None:  # the adapters really changed something
        assert (want - plain).abs().max().item() > 1e-3
    return diff


def merge(base: Path, adapters: list[Path], out: Path, **kw) -> dict:
    return run(MergeConfig(base=str(base), lora=[str(a) for a in adapters], output_dir=str(out), **kw), progress=False)


def stored(path: Path) -> dict:
    """tensor name -> (dtype, shape) of a merged model directory."""
    from subjectlm.merge.tensors import read_header

    out = {}
    for file in sorted(path.glob("*.safetensors")):
        tensors, _ = read_header(file)
        out.update({n: (t.dtype, t.shape) for n, t in tensors.items()})
    return out


@pytest.fixture
def small_blocks(monkeypatch):
    """Stream changed tensors in blocks of a few rows, so that block edges are exercised."""
    from subjectlm.merge import apply

    monkeypatch.setattr(apply, "BLOCK_BYTES", 3000)


@pytest.fixture(scope="module")
def sharded_untied(tmp_path_factory, tiny_llama_untied_dir) -> Path:
    """The untied tiny Llama saved in several shards."""
    path = tmp_path_factory.mktemp("sharded")
    _load(tiny_llama_untied_dir).save_pretrained(path, max_shard_size="1MB")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (path / name).write_bytes((tiny_llama_untied_dir / name).read_bytes())
    assert (path / "model.safetensors.index.json").exists()
    return path


# ---------------------------------------------------------------- correctness vs peft


def test_single_file_tied_base(tmp_path, tiny_llama_dir):
    adapter = make_adapter(tiny_llama_dir, tmp_path / "a", target_modules="all-linear")
    result = merge(tiny_llama_dir, [adapter], tmp_path / "m")
    assert result["model"] == str(tmp_path / "m") and "1 adapter" in result["summary"]
    assert_matches_peft(tmp_path / "m", tiny_llama_dir, [adapter])
    out = tmp_path / "m"
    assert json.loads((out / "config.json").read_text())["tie_word_embeddings"] is True
    assert "lm_head.weight" not in stored(out) and not (out / "model.safetensors.index.json").exists()
    for name in ("generation_config.json", "tokenizer.json", "tokenizer_config.json", "subjectlm_merge.json"):
        assert (out / name).exists(), name


def test_sharded_base_with_modules_to_save(tmp_path, sharded_untied):
    adapter = make_adapter(sharded_untied, tmp_path / "a", target_modules="all-linear", r=8, lora_alpha=16,
                           modules_to_save=["embed_tokens", "lm_head"])
    merge(sharded_untied, [adapter], tmp_path / "m")
    assert_matches_peft(tmp_path / "m", sharded_untied, [adapter])
    index = json.loads((tmp_path / "m" / "model.safetensors.index.json").read_text())
    base_index = json.loads((sharded_untied / "model.safetensors.index.json").read_text())
    assert index["weight_map"] == base_index["weight_map"]  # same layout, shard by shard
    assert index["metadata"]["total_size"] == sum(
        (tmp_path / "m" / f).stat().st_size for f in set(index["weight_map"].values())) - sum(
        8 + int.from_bytes((tmp_path / "m" / f).read_bytes()[:8], "little") for f in set(index["weight_map"].values()))


def test_weights_equal_peft_merge_and_unload(tmp_path, sharded_untied, small_blocks):
    import torch
    from safetensors.torch import load_file

    adapter = make_adapter(sharded_untied, tmp_path / "a", target_modules="all-linear", use_rslora=True,
                           modules_to_save=["lm_head"])
    merge(sharded_untied, [adapter], tmp_path / "m")
    want = peft_reference(sharded_untied, [adapter], live=False).state_dict()
    got = {}
    for file in (tmp_path / "m").glob("*.safetensors"):
        got.update(load_file(file))
    assert set(got) == set(want)
    worst = max((got[k] - want[k]).abs().max().item() for k in got)
    assert worst <= 1e-6
    assert not torch.equal(got["model.layers.0.self_attn.q_proj.weight"],
                           _load(sharded_untied).state_dict()["model.layers.0.self_attn.q_proj.weight"])


def test_two_loras_in_sequence_with_biases_and_patterns(tmp_path, tiny_qwen2_dir):
    first = make_adapter(tiny_qwen2_dir, tmp_path / "a1", seed=1, target_modules=["q_proj", "k_proj", "v_proj"],
                         lora_bias=True, rank_pattern={"k_proj": 2}, alpha_pattern={"layers.1.self_attn.v_proj": 3})
    second = make_adapter(tiny_qwen2_dir, tmp_path / "a2", seed=2, merged_first=[first], use_rslora=True,
                          target_modules=["o_proj", "gate_proj", "q_proj"], modules_to_save=["lm_head"], bias="all")
    # The second adapter ships its own tokenizer: the merged model takes it.
    (second / "tokenizer_config.json").write_text('{"marker": "from-adapter"}')
    merge(tiny_qwen2_dir, [first, second], tmp_path / "m")
    assert "from-adapter" in (tmp_path / "m" / "tokenizer_config.json").read_text()
    (second / "tokenizer_config.json").unlink()
    assert_matches_peft(tmp_path / "m", tiny_qwen2_dir, [first, second])
    # The order matters: the second adapter's lm_head copy replaces the base one.
    provenance = json.loads((tmp_path / "m" / "subjectlm_merge.json").read_text())
    assert [Path(a["path"]).name for a in provenance["adapters"]] == ["a1", "a2"]


def test_rslora_and_lora_on_embedding(tmp_path, tiny_llama_untied_dir, small_blocks):
    adapter = make_adapter(tiny_llama_untied_dir, tmp_path / "a", use_rslora=True, r=16, lora_alpha=4,
                           target_modules=["embed_tokens", "down_proj"])
    merge(tiny_llama_untied_dir, [adapter], tmp_path / "m")
    assert_matches_peft(tmp_path / "m", tiny_llama_untied_dir, [adapter])


def test_fan_in_fan_out_gpt2(tmp_path, small_blocks):
    from transformers import AutoModelForCausalLM, GPT2Config

    base = tmp_path / "gpt2"
    config = GPT2Config(vocab_size=300, n_positions=64, n_embd=32, n_layer=2, n_head=2)
    AutoModelForCausalLM.from_config(config).save_pretrained(base)
    adapter = make_adapter(base, tmp_path / "a", target_modules=["c_attn", "c_proj"], fan_in_fan_out=True)
    assert json.loads((adapter / "adapter_config.json").read_text())["fan_in_fan_out"] is True
    merge(base, [adapter], tmp_path / "m")
    assert_matches_peft(tmp_path / "m", base, [adapter])


# ---------------------------------------------------------------- tied embeddings and vocabulary


@pytest.mark.parametrize("saved, tying, stays_tied", [
    (["embed_tokens"], False, False),            # lm_head keeps the original embedding in peft
    (["lm_head"], False, False),                 # the input embedding keeps the original
    (["embed_tokens", "lm_head"], False, False),  # two copies trained apart
    (["embed_tokens", "lm_head"], True, True),   # ensure_weight_tying: one shared copy
])
def test_tied_embeddings(tmp_path, tiny_llama_dir, saved, tying, stays_tied):
    adapter = make_adapter(tiny_llama_dir, tmp_path / "a", modules_to_save=saved, ensure_weight_tying=tying)
    result = merge(tiny_llama_dir, [adapter], tmp_path / "m")
    assert_matches_peft(tmp_path / "m", tiny_llama_dir, [adapter])
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["tie_word_embeddings"] is stays_tied
    assert ("lm_head.weight" in stored(tmp_path / "m")) is not stays_tied
    assert ("untied" in result["summary"]) is not stays_tied


def test_resized_vocabulary(tmp_path, tiny_llama_untied_dir):
    vocab = json.loads((tiny_llama_untied_dir / "config.json").read_text())["vocab_size"] + 8
    adapter = make_adapter(tiny_llama_untied_dir, tmp_path / "a", resize=vocab, modules_to_save=["embed_tokens", "lm_head"])
    merge(tiny_llama_untied_dir, [adapter], tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["vocab_size"] == vocab
    assert stored(tmp_path / "m")["lm_head.weight"] == ("F32", (vocab, 64))
    assert_matches_peft(tmp_path / "m", tiny_llama_untied_dir, [adapter], resize=vocab)


def test_resized_vocabulary_tied(tmp_path, tiny_llama_dir):
    vocab = json.loads((tiny_llama_dir / "config.json").read_text())["vocab_size"] + 8
    adapter = make_adapter(tiny_llama_dir, tmp_path / "a", resize=vocab, modules_to_save=["embed_tokens", "lm_head"],
                           ensure_weight_tying=True)
    merge(tiny_llama_dir, [adapter], tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["vocab_size"] == vocab and config["tie_word_embeddings"] is True
    assert_matches_peft(tmp_path / "m", tiny_llama_dir, [adapter], resize=vocab)


def test_resized_embedding_without_lm_head_is_a_vocab_error(tmp_path, tiny_llama_untied_dir):
    vocab = json.loads((tiny_llama_untied_dir / "config.json").read_text())["vocab_size"] + 8
    adapter = make_adapter(tiny_llama_untied_dir, tmp_path / "a", resize=vocab, modules_to_save=["embed_tokens"])
    # peft also saves the resized lm_head here; without it the vocabulary cannot be reconstructed.
    bad = _rewrite_adapter(adapter, tmp_path / "bad", drop="lm_head")
    with pytest.raises(MergeError, match="vocabulary mismatch"):
        merge(tiny_llama_untied_dir, [bad], tmp_path / "m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "bad"]


# ---------------------------------------------------------------- dtypes


def test_bf16_base_keeps_bf16_and_rounds_like_torch(tmp_path, tiny_llama_untied_dir):
    import torch
    from safetensors.torch import load_file

    base = tmp_path / "bf16"
    _load(tiny_llama_untied_dir).to(torch.bfloat16).save_pretrained(base)
    adapter = make_adapter(tiny_llama_untied_dir, tmp_path / "a", modules_to_save=["lm_head"])  # fp32 adapter
    merge(base, [adapter], tmp_path / "m")
    assert {dtype for dtype, _ in stored(tmp_path / "m").values()} == {"BF16"}
    # Exactly: fp32 base weight + fp32 delta, rounded once to bf16 the way torch rounds.
    want = peft_reference(base, [adapter], live=False)  # reference in fp32 on the bf16 weights
    got = load_file(tmp_path / "m" / "model.safetensors")
    for name, tensor in want.state_dict().items():
        assert torch.equal(got[name], tensor.to(torch.bfloat16)), name


def test_dtype_option_converts_and_sets_config(tmp_path, tiny_llama_dir):
    adapter = make_adapter(tiny_llama_dir, tmp_path / "a")
    merge(tiny_llama_dir, [adapter], tmp_path / "m", dtype="fp16")
    assert {dtype for dtype, _ in stored(tmp_path / "m").values()} == {"F16"}
    assert json.loads((tmp_path / "m" / "config.json").read_text())["dtype"] == "float16"


def test_bf16_encoding_matches_torch():
    import numpy as np
    import torch

    from subjectlm.merge.tensors import decode_float32, encode

    values = torch.cat([torch.randn(10000) * 10 ** torch.randint(-30, 30, (10000,)).float(),
                        torch.tensor([0.0, -0.0, float("inf"), -float("inf"), 1 + 2 ** -8, 1 + 3 * 2 ** -8, 3.4e38])])
    ours = encode(values.numpy(), "BF16")
    theirs = values.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    assert np.array_equal(ours, theirs)
    assert np.isnan(decode_float32(encode(np.array([np.nan], np.float32), "BF16").tobytes(), "BF16", (1,))).all()


# ---------------------------------------------------------------- safety


def test_interrupted_merge_leaves_nothing(tmp_path, sharded_untied, monkeypatch):
    from subjectlm.merge import apply

    adapter = make_adapter(sharded_untied, tmp_path / "a", target_modules="all-linear")
    real, calls = apply.write_shard, []

    def crash_after_first(plan, shard, out_dir):
        calls.append(shard)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(plan, shard, out_dir)

    monkeypatch.setattr(apply, "write_shard", crash_after_first)
    with pytest.raises(KeyboardInterrupt):
        merge(sharded_untied, [adapter], tmp_path / "m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]  # no output, no temp or scratch dirs


def test_existing_output_refused_unless_overwrite(tmp_path, tiny_llama_dir):
    from subjectlm.io import OutputExistsError

    adapter = make_adapter(tiny_llama_dir, tmp_path / "a")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "keep.txt").write_text("x")
    with pytest.raises(OutputExistsError):
        merge(tiny_llama_dir, [adapter], tmp_path / "m")
    merge(tiny_llama_dir, [adapter], tmp_path / "m", overwrite=True)
    assert not (tmp_path / "m" / "keep.txt").exists() and (tmp_path / "m" / "model.safetensors").exists()


def test_pickle_base_and_adapter_refused_unless_allowed(tmp_path, tiny_llama_untied_dir):
    import torch
    from safetensors.torch import load_file

    base = tmp_path / "pickled"  # transformers 5 no longer writes pickles: make one as older versions did
    base.mkdir()
    torch.save(load_file(tiny_llama_untied_dir / "model.safetensors"), base / "pytorch_model.bin")
    (base / "config.json").write_text((tiny_llama_untied_dir / "config.json").read_text())
    adapter = make_adapter(tiny_llama_untied_dir, tmp_path / "a", modules_to_save=["lm_head"])
    with pytest.raises(MergeError, match="pickle"):
        merge(base, [adapter], tmp_path / "m")
    pickled_adapter = tmp_path / "a_bin"
    pickled_adapter.mkdir()
    torch.save(load_file(adapter / "adapter_model.safetensors"), pickled_adapter / "adapter_model.bin")
    (pickled_adapter / "adapter_config.json").write_text((adapter / "adapter_config.json").read_text())
    with pytest.raises(MergeError, match="pickle"):
        merge(tiny_llama_untied_dir, [pickled_adapter], tmp_path / "m")
    assert not (tmp_path / "m").exists()
    merge(base, [pickled_adapter], tmp_path / "m", allow_pickle=True)
    assert (tmp_path / "m" / "model.safetensors").exists() and not list((tmp_path / "m").glob("*.bin"))
    assert_matches_peft(tmp_path / "m", tiny_llama_untied_dir, [adapter])


# ---------------------------------------------------------------- mismatches: clear errors, nothing written


def _rewrite_adapter(src: Path, dst: Path, rename: dict[str, str] | None = None, config: dict | None = None,
                     drop: str = "") -> Path:
    from safetensors.torch import load_file, save_file

    dst.mkdir()
    tensors = load_file(src / "adapter_model.safetensors")
    tensors = {k: v for k, v in tensors.items() if not drop or drop not in k}
    for old, new in (rename or {}).items():
        tensors = {k.replace(old, new): v for k, v in tensors.items()}
    save_file(tensors, dst / "adapter_model.safetensors")
    cfg = json.loads((src / "adapter_config.json").read_text())
    (dst / "adapter_config.json").write_text(json.dumps({**cfg, **(config or {})}))
    return dst


def test_hidden_size_mismatch(tmp_path, tiny_llama_dir):
    from transformers import AutoModelForCausalLM, LlamaConfig

    other = tmp_path / "other"
    AutoModelForCausalLM.from_config(LlamaConfig(vocab_size=500, hidden_size=32, intermediate_size=64,
                                                 num_hidden_layers=2, num_attention_heads=4,
                                                 num_key_value_heads=2)).save_pretrained(other)
    adapter = make_adapter(tiny_llama_dir, tmp_path / "a")
    with pytest.raises(MergeError, match="hidden size mismatch"):
        merge(other, [adapter], tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_missing_target_module(tmp_path, tiny_llama_dir):
    adapter = make_adapter(tiny_llama_dir, tmp_path / "a")
    bad = _rewrite_adapter(adapter, tmp_path / "bad", rename={"layers.1.": "layers.7."})
    with pytest.raises(MergeError, match=r"model.layers.7.self_attn.\w_proj.*does not have"):
        merge(tiny_llama_dir, [bad], tmp_path / "m")
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("change, message", [
    ({"use_dora": True}, "use_dora"),
    ({"peft_type": "IA3"}, "not LoRA"),
    ({"init_lora_weights": "pissa"}, "changed the base weights"),
    ({"r": 8}, "rank 4 in the weights but r=8"),
])
def test_unsupported_adapter_options(tmp_path, tiny_llama_dir, change, message):
    adapter = make_adapter(tiny_llama_dir, tmp_path / "a")
    bad = _rewrite_adapter(adapter, tmp_path / "bad", config=change)
    with pytest.raises(MergeError, match=message):
        merge(tiny_llama_dir, [bad], tmp_path / "m")
    assert not (tmp_path / "m").exists()


# ---------------------------------------------------------------- verify, CLI, memory path


def test_verify_reports_and_fails_over_tolerance(tmp_path, tiny_llama_dir, monkeypatch):
    adapter = make_adapter(tiny_llama_dir, tmp_path / "a", modules_to_save=["embed_tokens"])
    result = merge(tiny_llama_dir, [adapter], tmp_path / "m", verify=True)
    report = json.loads((tmp_path / "m" / "subjectlm_merge.json").read_text())["verify"]
    assert report["max_abs_diff"] <= 1e-5 and report["top1_agreement"] == 1.0
    assert "verified" in result["summary"]

    from subjectlm.merge import adapter as adapter_module

    real = adapter_module.scale_for
    monkeypatch.setattr(adapter_module, "scale_for", lambda config, module: (real(config, module)[0], 1.3 * real(config, module)[1]))
    with pytest.raises(MergeError, match="verification failed"):
        merge(tiny_llama_dir, [adapter], tmp_path / "bad", verify=True)
    assert not (tmp_path / "bad").exists()


def test_cli_merges_several_loras_in_order(tmp_path, tiny_llama_untied_dir, capsys):
    from subjectlm.cli import main

    first = make_adapter(tiny_llama_untied_dir, tmp_path / "a1", seed=3)
    second = make_adapter(tiny_llama_untied_dir, tmp_path / "a2", seed=4, merged_first=[first],
                          target_modules=["k_proj"])
    code = main(["merge", "--base_model", str(tiny_llama_untied_dir), "--lora", str(first), "--lora", str(second),
                 "--output_dir", str(tmp_path / "m")])
    assert code == 0
    assert str(tmp_path / "m") in capsys.readouterr().out
    assert_matches_peft(tmp_path / "m", tiny_llama_untied_dir, [first, second])
    # A user error is one line on stderr and exit code 2, not a traceback.
    capsys.readouterr()
    assert main(["merge", "--base", str(tiny_llama_untied_dir), "--lora", str(tmp_path / "nope"),
                 "--output_dir", str(tmp_path / "m2")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "not a LoRA adapter directory" in err and "Traceback" not in err


def test_cli_help_lists_flags():
    out = subprocess.run([sys.executable, "-m", "subjectlm", "merge", "--help"], capture_output=True, text=True, check=True).stdout
    for flag in ("--base", "--base_model", "--lora", "--lora_model", "--output_dir", "--dtype", "--verify",
                 "--overwrite", "--allow_pickle"):
        assert flag in out


def test_merge_path_imports_neither_torch_nor_transformers(tmp_path, tiny_llama_dir):
    adapter = make_adapter(tiny_llama_dir, tmp_path / "a")
    code = ("import sys; from subjectlm.merge import MergeConfig, run; "
            f"run(MergeConfig(base={str(tiny_llama_dir)!r}, lora=[{str(adapter)!r}], output_dir={str(tmp_path / 'm')!r}), progress=False); "
            "bad = [m for m in ('torch', 'transformers', 'peft', 'safetensors') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert_matches_peft(tmp_path / "m", tiny_llama_dir, [adapter])


def test_recipe_merge_stage(tmp_path, tiny_llama_untied_dir):
    from subjectlm.recipe import run_recipe

    adapter = make_adapter(tiny_llama_untied_dir, tmp_path / "a", modules_to_save=["lm_head"])
    path = tmp_path / "r.yaml"
    path.write_text(f"model: {tiny_llama_untied_dir}\noutput_dir: out\nstages:\n  - {{stage: merge, lora: [{adapter}]}}\n")
    (outcome,) = run_recipe(path, log=lambda *_: None)
    assert outcome.status == "done" and "1 adapter" in outcome.summary
    assert_matches_peft(tmp_path / "out" / "merge", tiny_llama_untied_dir, [adapter])


def test_merge_with_verify_shows_the_user_no_future_warning(tmp_path, tiny_llama_dir, capsys):
    """transformers 5 warns whenever peft reads `is_gradient_checkpointing`; a merge must not pass that on."""
    from subjectlm.cli import main

    adapter = make_adapter(tiny_llama_dir, tmp_path / "a")  # peft warns here too: not the merge's output
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["merge", "--base", str(tiny_llama_dir), "--lora", str(adapter), "--output_dir",
                     str(tmp_path / "m"), "--verify"]) == 0
    assert "verified" in capsys.readouterr().out
    future = [f"{w.filename}:{w.lineno}: {w.message}" for w in caught if issubclass(w.category, FutureWarning)]
    assert not future
