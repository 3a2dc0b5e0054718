"""What pt, sft and dpo share: the model with its LoRA, the Trainer, the progress bar and the outputs.

Output directory layout (the adapter sits at the top so that `merge` and `chat` take the dir itself):

    adapter_model.safetensors, adapter_config.json   LoRA (or model.safetensors + config.json when full)
    tokenizer files                                  the tokenizer the data was tokenized with
    train_config.json                                the resolved config
    metrics.jsonl                                    one JSON object per logged step (train and eval)
    loss.png                                         train and eval loss over steps
    runs/                                            TensorBoard event files
    checkpoints/checkpoint-N/                        resumable state (optimizer, scheduler, RNG, data position)
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import Trainer, TrainerCallback, TrainingArguments

from subjectlm.config import ConfigError, to_dict
from subjectlm.io import append_jsonl, prepare_output, read_jsonl, write_json
from subjectlm.models import torch_dtype
from subjectlm.train.checkpointing import checkpoint_kwargs
from subjectlm.train.config import TrainConfig
from subjectlm.train.loss import chunked_cross_entropy, frozen_linear_head, hidden_instead_of_logits
from subjectlm.train.packing import PackedCollator, PaddedCollator, register_varlen
from subjectlm.train.tokenize import IGNORE

CHECKPOINTS = "checkpoints"
METRICS = "metrics.jsonl"


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


# ---- output directory


def prepare_output_dir(config: TrainConfig) -> str | None:
    """Refuse an existing output unless overwriting or resuming; return the checkpoint to resume from."""
    out = Path(config.output_dir)
    exists = prepare_output(out, config.overwrite_output_dir, config.resume, flag="--overwrite_output_dir")
    if exists and config.overwrite_output_dir and is_main_process():
        shutil.rmtree(out)
    checkpoint = last_checkpoint(out) if config.resume else None
    for line in config.notes() if is_main_process() else ():
        print(line, flush=True)
    if is_main_process():
        out.mkdir(parents=True, exist_ok=True)
        step = int(checkpoint.rsplit("-", 1)[1]) if checkpoint else 0
        _truncate_metrics(out / METRICS, step)
    return checkpoint


def last_checkpoint(out: Path) -> str | None:
    """The newest complete checkpoint (trainer_state.json is written last, so a kill mid-save is skipped)."""
    root = out / CHECKPOINTS
    if not root.is_dir():
        return None
    done = [p for p in root.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    return str(max(done, key=lambda p: int(p.name.split("-")[1]))) if done else None


def _truncate_metrics(path: Path, step: int) -> None:
    """Lines logged after the checkpoint we resume from are logged again by the resumed run."""
    if not path.exists():
        return
    rows = [row for row in read_jsonl(path) if row["step"] <= step]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


# ---- model


def load_tokenizer_for(config: TrainConfig) -> Any:
    from subjectlm.models import load_tokenizer

    return load_tokenizer(config.tokenizer or config.model, trust_remote_code=config.trust_remote_code)


def load_model_for_training(config: TrainConfig, tokenizer: Any, packed: bool) -> Any:
    """Base model (optionally 4/8-bit), vocab resized to the tokenizer, then LoRA (new or continued)."""
    from transformers import AutoModelForCausalLM, set_seed

    from subjectlm.models import resolve_model

    set_seed(config.seed)  # LoRA's random init happens here, before the Trainer seeds anything

    kwargs: dict[str, Any] = {}
    if config.load_in_kbits in (4, 8):
        if not torch.cuda.is_available():
            raise ConfigError(f"load_in_kbits: {config.load_in_kbits}-bit QLoRA needs a CUDA GPU (bitsandbytes); "
                              "on CPU leave it at 16")
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise ConfigError("load_in_kbits: needs bitsandbytes: pip install bitsandbytes") from None
        from transformers import BitsAndBytesConfig

        compute = torch.bfloat16 if config.bf16 else torch.float16 if config.fp16 else torch.float32
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=config.load_in_kbits == 4, load_in_8bit=config.load_in_kbits == 8,
            bnb_4bit_compute_dtype=compute, bnb_4bit_quant_type=config.quant_type,
            bnb_4bit_use_double_quant=config.double_quant)
    path = resolve_model(config.model)
    attn = register_varlen() if packed else "sdpa"
    model = AutoModelForCausalLM.from_pretrained(
        str(path), dtype=torch_dtype(config.torch_dtype), use_safetensors=True,
        trust_remote_code=config.trust_remote_code, attn_implementation=attn, **kwargs)
    model.config.use_cache = False  # a cache during training would also disable packed-sequence masks
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
        if not config.full_finetuning and not config.modules_to_save:
            print(f"note: the embeddings grew to {len(tokenizer)} tokens; add --modules_to_save embed_tokens,lm_head "
                  "to train the new rows", flush=True)
    if config.full_finetuning:
        return model
    from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training

    if config.load_in_kbits in (4, 8):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing)
    if config.gradient_checkpointing:
        model.enable_input_require_grads()
    if config.peft_path:
        if not (Path(config.peft_path) / "adapter_config.json").is_file():
            raise ConfigError(f"peft_path: {config.peft_path} has no adapter_config.json")
        return PeftModel.from_pretrained(model, config.peft_path, is_trainable=True)
    targets = config.lora_trainable
    lora = LoraConfig(
        r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules="all-linear" if targets == ["all-linear"] else targets,
        modules_to_save=config.modules_to_save or None, task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, lora)
    except ValueError as exc:
        raise ConfigError(f"lora_trainable: {exc}") from None


# ---- trainer


class LabelOnlyTrainer(Trainer):
    """Loss over label positions only: the model computes logits just where a label is (`logits_to_keep`),
    in chunks when the head is frozen (train/loss.py),
    summed and divided by the label count of the whole accumulated (and, distributed, global) batch, so
    gradient accumulation and DDP give the same loss as one big batch."""

    loss_is_scaled_for_ga = None

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = True
        self.trained_tokens = 0

    def _chunkable(self, model):
        """The causal LM if its loss can be chunked: a frozen plain head whose weight is whole here
        (FSDP and DeepSpeed shard or gather parameters around the forward, so not under them)."""
        if getattr(self, "is_fsdp_enabled", False) or getattr(self, "is_deepspeed_enabled", False):
            return None
        return frozen_linear_head(self.accelerator.unwrap_model(model) if hasattr(self, "accelerator") else model)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        shift = inputs.pop("shift_labels")
        inputs.pop("labels", None)
        keep = (shift != IGNORE).any(0).nonzero().squeeze(1)
        targets = shift[:, keep]
        causal_lm = self._chunkable(model)
        if causal_lm is not None:  # the head applied chunk by chunk: never all label logits at once
            with hidden_instead_of_logits(causal_lm) as head:
                hidden = model(**inputs, logits_to_keep=keep, use_cache=False).logits
            loss = chunked_cross_entropy(hidden.flatten(0, 1), head, targets.flatten())
        else:
            out = model(**inputs, logits_to_keep=keep, use_cache=False)
            loss = F.cross_entropy(out.logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE,
                                   reduction="sum")
        count = int((targets != IGNORE).sum())
        if model.training:
            self.trained_tokens += count
        loss = loss / (num_items_in_batch if num_items_in_batch is not None else max(count, 1))
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # DDP averages gradients over processes
        return (loss, {"loss": loss}) if return_outputs else loss


class MetricsCallback(TrainerCallback):
    """Every log (train and eval) as one JSON line: `{"step": N, "loss": ...}`."""

    def __init__(self, path: Path):
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            append_jsonl(self.path, {"step": state.global_step, **logs})


class ProgressBar(TrainerCallback):
    """tqdm over optimizer steps with the last loss and trained (label) tokens per second; tqdm gives the ETA."""

    def __init__(self, trainer: Trainer):
        self.trainer = trainer
        self.bar = None

    def on_train_begin(self, args, state, control, **kwargs):
        from tqdm.auto import tqdm

        if state.is_world_process_zero:
            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="training", unit="step")
            self.start, self.tokens0 = time.time(), self.trainer.trained_tokens
            self.loss = float("nan")

    def _postfix(self, refresh: bool) -> None:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rate = (self.trainer.trained_tokens - self.tokens0) * world / max(time.time() - self.start, 1e-9)
        self.bar.set_postfix(loss=f"{self.loss:.4f}", tok_s=f"{rate:.0f}", refresh=refresh)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is not None and logs and "loss" in logs:
            self.loss = logs["loss"]
            self._postfix(refresh=True)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self._postfix(refresh=False)
            self.bar.update(state.global_step - self.bar.n)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()


def training_arguments(config: TrainConfig, has_eval: bool, group_by_length: bool,
                       cls: type = TrainingArguments, **extra: Any) -> TrainingArguments:
    """The Trainer's arguments from our config; `cls` may be a subclass such as TRL's DPOConfig."""
    out = Path(config.output_dir)
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(out / "runs")
    report = [r for r in config.report_to if r != "none"]
    if config.preprocessing_num_workers > 1 and "dataset_num_proc" in {f.name for f in dataclasses.fields(cls)}:
        extra.setdefault("dataset_num_proc", config.preprocessing_num_workers)  # TRL tokenizes dpo's pairs
    return cls(
        output_dir=str(out / CHECKPOINTS),
        per_device_train_batch_size=config.per_device_train_batch_size,
        per_device_eval_batch_size=config.per_device_eval_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate, lr_scheduler_type=config.lr_scheduler_type,
        warmup_steps=config.warmup_steps if config.warmup_steps > 0 else config.warmup_ratio,
        weight_decay=config.weight_decay, max_grad_norm=config.max_grad_norm,
        num_train_epochs=config.num_train_epochs, max_steps=config.max_steps, seed=config.seed,
        bf16=config.bf16, fp16=config.fp16, use_cpu=not torch.cuda.is_available(),
        activation_checkpointing=config.gradient_checkpointing,
        activation_checkpointing_kwargs=(checkpoint_kwargs(config.gradient_checkpointing_mode)
                                         if config.gradient_checkpointing else None),
        logging_strategy=config.logging_strategy, logging_steps=config.logging_steps,
        logging_first_step=config.logging_first_step,
        save_strategy=config.save_strategy, save_steps=config.save_steps, save_total_limit=config.save_total_limit,
        eval_strategy=config.eval_strategy if has_eval and config.do_eval is not False else "no",
        eval_steps=config.eval_steps,
        report_to=report or "none", disable_tqdm=True, remove_unused_columns=False,
        label_names=["labels"], prediction_loss_only=True, ddp_timeout=config.ddp_timeout,
        ddp_find_unused_parameters=config.ddp_find_unused_parameters,
        train_sampling_strategy="group_by_length" if group_by_length else "random",
        **extra,
    )


def build_trainer(config: TrainConfig, model: Any, tokenizer: Any, train: Any, eval_: Any | None,
                  packed: bool, callbacks: list[Any] = ()) -> LabelOnlyTrainer:
    args = training_arguments(config, has_eval=eval_ is not None,
                              group_by_length=not packed and not isinstance(train, torch.utils.data.IterableDataset))
    collator = PackedCollator() if packed else PaddedCollator(tokenizer.pad_token_id)
    trainer = LabelOnlyTrainer(model=model, args=args, train_dataset=train, eval_dataset=eval_,
                               data_collator=collator, processing_class=tokenizer)
    return add_callbacks(trainer, config, callbacks)


def add_callbacks(trainer: Trainer, config: TrainConfig, callbacks: list[Any] = ()) -> Any:
    """Our progress bar and metrics.jsonl instead of the Trainer's printer and bar."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for cb in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cb)
    if not hasattr(trainer, "trained_tokens"):
        trainer.trained_tokens = 0
    trainer.add_callback(MetricsCallback(Path(config.output_dir) / METRICS))
    trainer.add_callback(ProgressBar(trainer))
    for cb in callbacks:
        trainer.add_callback(cb)
    return trainer


# ---- finishing


def plot_loss(metrics_path: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_jsonl(metrics_path, missing_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, label in (("loss", "train"), ("eval_loss", "eval")):
        points = [(r["step"], r[key]) for r in rows if key in r]
        if points:
            ax.plot(*zip(*points), marker="." if len(points) < 50 else None, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def train_and_save(trainer: Trainer, config: TrainConfig, checkpoint: str | None,
                   info: dict[str, Any]) -> dict[str, Any]:
    """Train (resuming if asked), then write the adapter, tokenizer, config and plots into output_dir."""
    out = Path(config.output_dir)
    result = trainer.train(resume_from_checkpoint=checkpoint)
    metrics = dict(result.metrics)
    if trainer.eval_dataset is not None and config.do_eval is not False:
        metrics.update(trainer.evaluate())
    if trainer.is_world_process_zero():
        staging = out / ".final.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        trainer.save_model(str(staging))  # adapter (safetensors) + adapter_config.json, tokenizer
        for item in staging.iterdir():
            os.replace(item, out / item.name)
        staging.rmdir()
        (out / "training_args.bin").unlink(missing_ok=True)  # pickle; the resolved config below says it all
        write_json(out / "train_config.json", to_dict(config))
        losses = [r.get("loss") for r in _read_metrics(out / METRICS) if "loss" in r]
        summary = {**info, **metrics, "final_loss": losses[-1] if losses else None,
                   "steps": trainer.state.global_step, "trained_tokens": trainer.trained_tokens}
        write_json(out / "train_summary.json", summary)
        plot_loss(out / METRICS, out / "loss.png")
    trainer.accelerator.wait_for_everyone()
    return metrics


def _read_metrics(path: Path) -> list[dict[str, Any]]:
    return read_jsonl(path, missing_ok=True)


def final_loss(config: TrainConfig) -> float | None:
    losses = [r["loss"] for r in _read_metrics(Path(config.output_dir) / METRICS) if "loss" in r]
    return losses[-1] if losses else None


def fmt_loss(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.4f}"
