"""The model a training stage trains: tokenizer, base weights (optionally 4/8-bit), then LoRA.

LoRA is new (rank, alpha, target modules, `modules_to_save` trained in full beside it) or continued
from `--peft_path`; `--full_finetuning` returns the base model itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from subjectlm.config import ConfigError
from subjectlm.models import peft_without_renamed_attribute_warning, torch_dtype
from subjectlm.train.config import TrainConfig
from subjectlm.train.packing import register_varlen
from subjectlm.train.speed import fuse_lora


def load_tokenizer_for(config: TrainConfig) -> Any:
    from subjectlm.models import load_tokenizer

    return load_tokenizer(config.tokenizer or config.model, trust_remote_code=config.trust_remote_code)


def load_model_for_training(config: TrainConfig, tokenizer: Any, packed: bool) -> Any:
    """Base model, vocab resized to the tokenizer, then LoRA (new or continued) unless full fine-tuning."""
    from transformers import AutoModelForCausalLM, set_seed

    from subjectlm.models import resolve_model

    set_seed(config.seed)  # LoRA's random init happens here, before the Trainer seeds anything
    quantized = _quantization(config)  # its errors come before any weight is read
    attn = register_varlen() if packed else "sdpa"
    model = AutoModelForCausalLM.from_pretrained(
        str(resolve_model(config.model)), dtype=torch_dtype(config.torch_dtype), use_safetensors=True,
        trust_remote_code=config.trust_remote_code, attn_implementation=attn, **quantized)
    model.config.use_cache = False  # a cache during training would also disable packed-sequence masks
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
        if not config.full_finetuning and not config.modules_to_save:
            print(f"note: the embeddings grew to {len(tokenizer)} tokens; add --modules_to_save embed_tokens,lm_head "
                  "to train the new rows", flush=True)
    if config.full_finetuning:
        return model
    model = _with_lora(config, model)
    if config.fused_lora:
        fuse_lora(model)  # train/speed.py
    return model


def _quantization(config: TrainConfig) -> dict[str, Any]:
    """from_pretrained's extra arguments for QLoRA (`--load_in_kbits 4|8`); none at 16."""
    if config.load_in_kbits not in (4, 8):
        return {}
    if not torch.cuda.is_available():
        raise ConfigError(f"load_in_kbits: {config.load_in_kbits}-bit QLoRA needs a CUDA GPU (bitsandbytes); "
                          "on CPU leave it at 16")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ConfigError("load_in_kbits: needs bitsandbytes: pip install bitsandbytes") from None
    from transformers import BitsAndBytesConfig

    compute = torch.bfloat16 if config.bf16 else torch.float16 if config.fp16 else torch.float32
    return {"quantization_config": BitsAndBytesConfig(
        load_in_4bit=config.load_in_kbits == 4, load_in_8bit=config.load_in_kbits == 8,
        bnb_4bit_compute_dtype=compute, bnb_4bit_quant_type=config.quant_type,
        bnb_4bit_use_double_quant=config.double_quant)}


def _with_lora(config: TrainConfig, model: Any) -> Any:
    """A new LoRA on `lora_trainable` (plus `modules_to_save` in full), or the `peft_path` adapter, trainable."""
    from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training

    if config.load_in_kbits in (4, 8):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing)
    if config.gradient_checkpointing:
        model.enable_input_require_grads()
    if config.peft_path:
        if not (Path(config.peft_path) / "adapter_config.json").is_file():
            raise ConfigError(f"peft_path: {config.peft_path} has no adapter_config.json")
        with peft_without_renamed_attribute_warning():
            return PeftModel.from_pretrained(model, config.peft_path, is_trainable=True)
    targets = config.lora_trainable
    lora = LoraConfig(
        r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules="all-linear" if targets == ["all-linear"] else targets,
        modules_to_save=config.modules_to_save or None, task_type="CAUSAL_LM")
    try:
        with peft_without_renamed_attribute_warning():
            return get_peft_model(model, lora)
    except ValueError as exc:
        raise ConfigError(f"lora_trainable: {exc}") from None
