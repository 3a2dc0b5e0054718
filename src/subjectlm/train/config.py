"""Training configs shared by pt, sft (and dpo): one dataclass of common fields, one subclass per stage.

Flag names follow Chinese-LLaMA-Alpaca's run_clm_*_with_peft.py scripts where they had one
(aliases such as --model_name_or_path, --dataset_dir), so their shell scripts keep working.
"""

from __future__ import annotations

from dataclasses import dataclass

from subjectlm.config import ARTIFACT, MODEL, OUTPUT, TEXT_DATA, TRAINING_DATA, ConfigError, option
from subjectlm.data.mix import is_weighted, parse_sources
from subjectlm.models import DTYPE_CHOICES
from subjectlm.train.templates import TEMPLATES

DTYPES = DTYPE_CHOICES  # the one dtype table lives in subjectlm.models
CHECKPOINT_MODES = ("full", "selective")  # see train/checkpointing.py
STRATEGIES = ("steps", "epoch", "no")  # the Trainer's logging/save/eval strategies
SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
              "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "warmup_stable_decay")


@dataclass
class TrainConfig:
    # --- what to train
    model: str = option("default", help="base model: a local HF directory or `default`",
                        aliases=("--model_name_or_path",), path=MODEL)
    data: list[str | dict] = option([], help="training files or folders (.txt .json .jsonl .parquet); "
                                    "PATH@W (YAML: {path: PATH, weight: W}) draws the share W of the training "
                                    "examples from that source: see `weighted sources` below",
                                    aliases=("--dataset_dir", "--train_file"), path=TRAINING_DATA)
    validation_file: list[str] = option([], help="validation files (evaluated every eval_steps)", path=TEXT_DATA)
    output_dir: str = option("", help="where the adapter, tokenizer, metrics and checkpoints go", path=OUTPUT)
    tokenizer: str = option("", help="tokenizer directory if not the model's (embeddings are resized if it grew)",
                            aliases=("--tokenizer_name_or_path",), path=ARTIFACT)
    skip_invalid: bool = option(False, help="skip bad records (counted and reported) instead of stopping",
                                aliases=("--skip-invalid",))
    # --- LoRA / full
    lora_rank: int = option(8, help="LoRA rank r")
    lora_alpha: float = option(32.0, help="LoRA alpha (scale = alpha / r)")
    lora_dropout: float = option(0.05, help="dropout on the LoRA input")
    fused_lora: bool = option(True, help="each LoRA projection as one fused op (train/speed.py): same math, less time; false: peft's own forward")
    lora_trainable: list[str] = option(["all-linear"], help="modules that get LoRA: names (q_proj,v_proj,...) or all-linear",
                                       aliases=("--trainable",))
    modules_to_save: list[str] = option([], help="modules trained in full and saved with the adapter, e.g. embed_tokens,lm_head")
    full_finetuning: bool = option(False, help="train all weights, no LoRA (saves a full model)")
    load_in_kbits: int = option(16, help="4 or 8: QLoRA base weights through bitsandbytes (GPU only); 16: off")
    quant_type: str = option("nf4", help="4-bit data type of --load_in_kbits 4", choices=("nf4", "fp4"))
    double_quant: bool = option(True, help="with --load_in_kbits 4: quantize the quantization constants too")
    peft_path: str = option("", help="an existing LoRA adapter to continue training (its rank and modules are kept)",
                            path=ARTIFACT)
    trust_remote_code: bool = option(False, help="allow model code from the model directory")
    # --- optimisation
    learning_rate: float = option(1e-4, help="peak learning rate")
    lr_scheduler_type: str = option("cosine", help="learning-rate schedule: " + ", ".join(SCHEDULERS))
    warmup_ratio: float = option(0.03, help="fraction of the steps spent warming up (ignored if warmup_steps > 0)")
    warmup_steps: int = option(0, help="warm-up steps")
    weight_decay: float = option(0.0, help="AdamW weight decay")
    max_grad_norm: float = option(1.0, help="gradient clipping norm")
    num_train_epochs: float = option(1.0, help="epochs over the data (ignored if max_steps > 0)")
    max_steps: int = option(-1, help="optimizer steps; > 0 overrides num_train_epochs")
    per_device_train_batch_size: int = option(4, help="examples (pt: blocks) per device per micro-step")
    per_device_eval_batch_size: int = option(4, help="examples per device per evaluation step")
    gradient_accumulation_steps: int = option(1, help="micro-steps per optimizer step")
    seed: int = option(42, help="random seed (data order, LoRA init, dropout)")
    # --- precision and memory
    bf16: bool = option(False, help="bfloat16 mixed precision")
    fp16: bool = option(False, help="float16 mixed precision (GPU)")
    torch_dtype: str = option("float32", help="dtype the base weights are loaded in", choices=DTYPES)
    gradient_checkpointing: bool = option(False, help="recompute activations in backward: less memory, slower")
    gradient_checkpointing_mode: str = option(
        "selective", help="with --gradient_checkpointing: 'full' keeps only layer inputs (least memory, ~1.5x "
        "the time of none); 'selective' also keeps matmul and attention outputs and recomputes the rest")
    # --- bookkeeping
    logging_steps: int = option(10, help="log the loss every N steps")
    save_steps: int = option(200, help="checkpoint every N steps (for --resume)")
    eval_steps: int = option(200, help="evaluate every N steps when there is validation data")
    save_total_limit: int = option(3, help="checkpoints kept")
    overwrite: bool = option(False, help="replace an existing output_dir (its checkpoints and metrics go too)",
                             aliases=("--overwrite_output_dir",))
    resume: bool = option(False, help="continue from the last checkpoint in output_dir",
                          aliases=("--resume_from_checkpoint",))
    report_to: list[str] = option(["tensorboard"], help="trackers besides metrics.jsonl (tensorboard, none)")
    ddp_timeout: int = option(3600, help="seconds a distributed process waits for the others")
    # --- the Trainer's own names, as run_pt.sh / run_sft.sh pass them (HF TrainingArguments meaning)
    logging_strategy: str = option("steps", help="when to log the loss (every logging_steps, per epoch, never)",
                                   choices=STRATEGIES)
    logging_first_step: bool = option(True, help="also log the loss of step 1")
    save_strategy: str = option("steps", help="when to write a checkpoint (every save_steps, per epoch, never: "
                                "then --resume has nothing to continue)", choices=STRATEGIES)
    eval_strategy: str = option("steps", help="when to evaluate on the validation data (every eval_steps, per "
                                "epoch, or only once at the end: no)", choices=STRATEGIES,
                                aliases=("--evaluation_strategy",))
    do_eval: bool | None = option(None, help="evaluate on the validation data (default: whenever there is some; "
                                  "false: never, even with --validation_file)")
    ddp_find_unused_parameters: bool = option(False, help="let DDP look for parameters without gradients each "
                                              "step (slower; only for models that skip some)")
    data_cache_dir: str = option("", help="where the tokenized data is cached (default: $SUBJECTLM_HOME/cache/tokenized)")
    preprocessing_num_workers: int = option(1, help="processes that tokenize the data", min=1)
    # --- accepted for the old scripts; they change nothing here, and say so (see `notes`)
    do_train: bool | None = option(None, help="accepted from run_pt.sh/run_sft.sh: this command always trains")
    low_cpu_mem_usage: bool | None = option(None, help="accepted from run_pt.sh/run_sft.sh: weights always load "
                                            "without a second full copy in memory")

    def __post_init__(self) -> None:
        if not self.output_dir:
            raise ConfigError("output_dir: required (where the adapter and checkpoints are written)")
        if not self.data:
            raise ConfigError("data: give at least one training file or folder")
        self.data = parse_sources(self.data)  # plain paths stay strings; `data[i].weight: ...` errors
        if self.lora_rank < 1 and not self.full_finetuning:
            raise ConfigError(f"lora_rank: must be >= 1, got {self.lora_rank}")
        if not 0 <= self.lora_dropout < 1:
            raise ConfigError(f"lora_dropout: must be in [0, 1), got {self.lora_dropout}")
        if self.gradient_checkpointing_mode not in CHECKPOINT_MODES:
            raise ConfigError(f"gradient_checkpointing_mode: must be one of {', '.join(CHECKPOINT_MODES)}, "
                              f"got {self.gradient_checkpointing_mode!r}")
        if self.load_in_kbits not in (4, 8, 16):
            raise ConfigError(f"load_in_kbits: must be 4, 8 or 16, got {self.load_in_kbits}")
        if self.load_in_kbits != 16 and self.full_finetuning:
            raise ConfigError("load_in_kbits: quantized base weights cannot be fully fine-tuned; drop --full_finetuning")
        if self.full_finetuning and self.peft_path:
            raise ConfigError("peft_path: continuing an adapter needs LoRA; drop --full_finetuning")
        if self.torch_dtype not in DTYPES:
            raise ConfigError(f"torch_dtype: must be one of {', '.join(DTYPES)}, got {self.torch_dtype!r}")
        if self.lr_scheduler_type not in SCHEDULERS:
            raise ConfigError(f"lr_scheduler_type: must be one of {', '.join(SCHEDULERS)}, got {self.lr_scheduler_type!r}")
        if self.bf16 and self.fp16:
            raise ConfigError("fp16: choose one of bf16 and fp16")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio: must be in [0, 1), got {self.warmup_ratio}")
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
                     "logging_steps", "save_steps", "eval_steps", "save_total_limit"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.max_steps <= 0 and self.num_train_epochs <= 0:
            raise ConfigError("num_train_epochs: must be > 0 unless max_steps is given")
        if self.overwrite and self.resume:
            raise ConfigError("resume: cannot be combined with --overwrite (which discards the checkpoints)")
        if self.do_train is False:
            raise ConfigError("do_train: `subjectlm pt|sft|dpo` always trains; to only evaluate a model use "
                              "`subjectlm eval ppl` or `subjectlm eval exam`")
        if self.do_eval and not self.has_validation():
            raise ConfigError("do_eval: there is no validation data; give --validation_file"
                              + (" or --validation_split_percentage" if hasattr(self, "block_size") else ""))

    def has_validation(self) -> bool:
        return bool(self.validation_file)

    def notes(self) -> list[str]:
        """One line per flag that was given but changes nothing here (none is ignored silently)."""
        lines = []
        if self.do_train:
            lines.append("note: --do_train changes nothing here: this command always trains")
        if self.low_cpu_mem_usage is not None:
            lines.append("note: --low_cpu_mem_usage changes nothing here: transformers loads the weights without "
                         "a second full copy in memory anyway")
        return lines


@dataclass
class PTConfig(TrainConfig):
    block_size: int = option(512, help="tokens per training block")
    streaming: bool = option(False, help="read the corpus lazily (larger than memory); needs --max_steps")
    validation_split_percentage: float = option(0.0, help="percent of blocks held out for evaluation (without --validation_file)")
    txt_mode: str = option("auto", help="how .txt files split into documents: auto (paragraphs if blank lines separate text), line, paragraph")
    template: str = option("tokenizer", help="chat template that renders instruction records (alpaca, sharegpt, "
                           "messages) in the data as text: tokenizer (its own), " + ", ".join(list(TEMPLATES)[1:]))
    system_prompt: str = option("", help="system message for instruction records without one")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.block_size < 2:
            raise ConfigError(f"block_size: must be >= 2, got {self.block_size}")
        if self.streaming and self.max_steps <= 0:
            raise ConfigError("max_steps: --streaming reads the corpus lazily, so its length is unknown: give --max_steps")
        if not 0 <= self.validation_split_percentage < 100:
            raise ConfigError(f"validation_split_percentage: must be in [0, 100), got {self.validation_split_percentage}")
        if self.txt_mode not in ("auto", "line", "paragraph"):
            raise ConfigError(f"txt_mode: must be auto, line or paragraph, got {self.txt_mode!r}")
        if self.template not in TEMPLATES:
            raise ConfigError(f"template: unknown template {self.template!r}; known: {', '.join(TEMPLATES)}")
        if self.streaming and is_weighted(self.data):
            raise ConfigError("data: weighted sources are drawn from blocks held in memory; drop --streaming "
                              "or the weights")

    def has_validation(self) -> bool:
        return bool(self.validation_file) or self.validation_split_percentage > 0

    def notes(self) -> list[str]:
        lines = super().notes()
        if self.streaming and self.preprocessing_num_workers > 1:
            lines.append("note: --preprocessing_num_workers changes nothing with --streaming: blocks are made "
                         "on the fly, in the data loader's process")
        return lines


@dataclass
class SFTConfig(TrainConfig):
    max_seq_length: int = option(1024, help="tokens per example; longer ones lose history, then prompt, then answer end",
                                 aliases=("--model_max_length",))
    template: str = option("tokenizer", help="chat template: tokenizer (its own), " + ", ".join(list(TEMPLATES)[1:]))
    system_prompt: str = option("", help="system message for records without one")
    packing: bool = option(True, help="lay each micro-batch end to end without padding, attention kept per example; "
                                      "off: padded, length-grouped batches")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_seq_length < 8:
            raise ConfigError(f"max_seq_length: must be >= 8, got {self.max_seq_length}")
        if self.template not in TEMPLATES:
            raise ConfigError(f"template: unknown template {self.template!r}; known: {', '.join(TEMPLATES)}")


DPO_LOSSES = ("sigmoid", "ipo", "hinge", "robust", "exo_pair", "nca_pair", "bco_pair", "sppo_hard", "aot",
              "apo_zero", "apo_down", "sigmoid_norm")


@dataclass
class DPOConfig(TrainConfig):
    beta: float = option(0.1, help="strength of the pull towards the reference model (DPO's beta)")
    loss_type: str = option("sigmoid", help="preference loss: " + ", ".join(DPO_LOSSES))
    max_length: int = option(1024, help="tokens of prompt + answer; longer pairs are cut at the end")
    template: str = option("tokenizer", help="chat template: tokenizer (its own), " + ", ".join(list(TEMPLATES)[1:]))
    system_prompt: str = option("", help="system message for records without one")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta <= 0:
            raise ConfigError(f"beta: must be > 0, got {self.beta}")
        if self.loss_type not in DPO_LOSSES:
            raise ConfigError(f"loss_type: must be one of {', '.join(DPO_LOSSES)}, got {self.loss_type!r}")
        if self.max_length < 8:
            raise ConfigError(f"max_length: must be >= 8, got {self.max_length}")
        if self.template not in TEMPLATES:
            raise ConfigError(f"template: unknown template {self.template!r}; known: {', '.join(TEMPLATES)}")

    def notes(self) -> list[str]:
        lines = super().notes()
        if self.data_cache_dir:
            lines.append("note: --data_cache_dir changes nothing for dpo: TRL tokenizes the pairs in memory, "
                         "nothing is cached")
        return lines
