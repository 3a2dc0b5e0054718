"""The merge stage's config: which base, which adapters (in order), where, in which dtype."""

from __future__ import annotations

from dataclasses import dataclass

from subjectlm.config import ARTIFACT, MODEL, OUTPUT, ConfigError, check_options, option
from subjectlm.merge.errors import MergeError
from subjectlm.models import DTYPE_CHOICES

# `pth` is accepted as a name so that the old script's command gets a reason, not "invalid choice".
OUTPUT_TYPES = ("huggingface", "pth")


@dataclass
class MergeConfig:
    base: str = option("", help="base model: a local HF model directory or `default`", aliases=("--base_model",),
                       path=MODEL)
    lora: list[str] = option([], help="LoRA adapter directories, merged one after another in this order",
                             aliases=("--lora_model",), path=ARTIFACT)
    output_dir: str = option("", help="directory for the merged model (written atomically)", path=OUTPUT)
    dtype: str = option("auto", help="dtype of the merged weights (auto: keep the base's)", choices=DTYPE_CHOICES)
    verify: bool = option(False, help="after merging, compare logits of the merged model with base+adapters in peft")
    verify_tolerance: float | None = option(
        None, help="largest max-abs logit difference --verify accepts (default: 1e-3 fp32, 5e-2 fp16, 0.25 bf16)")
    overwrite: bool = option(False, help="replace an existing output_dir")
    allow_pickle: bool = option(False, help="accept .bin (pickle) base or adapter weights; pickles can run code")
    output_type: str = option("huggingface", choices=OUTPUT_TYPES,
                              help="huggingface: safetensors shards + config.json, what every tool here reads "
                                   "(pth, the old script's Meta checkpoint format, is not written)")
    verbose: bool = option(False, help="print one line per tensor: copied, or which adapter changes it and how")

    def __post_init__(self) -> None:
        check_options(self)
        if not self.base:
            raise ConfigError("base: the base model is required (a model directory or `default`)")
        if isinstance(self.lora, str):
            self.lora = [self.lora]
        if not self.lora:
            raise ConfigError("lora: give at least one adapter directory")
        if not self.output_dir:
            raise ConfigError("output_dir: required")
        if self.verify_tolerance is not None and self.verify_tolerance <= 0:
            raise ConfigError("verify_tolerance: must be positive")
        if self.output_type == "pth":
            raise MergeError("output_type: pth (the legacy Meta consolidated.*.pth layout) is not written: it is a "
                             "pickle format (loading it can run code), and llama.cpp's converter, transformers, vLLM "
                             "and `subjectlm export gguf` all read the huggingface safetensors output; drop "
                             "--output_type or use --output_type huggingface")
