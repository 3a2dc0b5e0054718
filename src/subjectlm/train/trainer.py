"""The Trainer: our label-only loss, the arguments from our config, and the callbacks every stage gets
(metrics.jsonl and a tqdm bar with trained tokens per second, instead of the Trainer's printer and bar)."""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import Trainer, TrainerCallback, TrainingArguments

from subjectlm.io import append_jsonl
from subjectlm.train.checkpointing import checkpoint_kwargs
from subjectlm.train.config import TrainConfig
from subjectlm.train.loss import chunked_cross_entropy, frozen_linear_head, hidden_instead_of_logits
from subjectlm.train.outputs import CHECKPOINTS, METRICS
from subjectlm.train.packing import PackedCollator, PaddedCollator
from subjectlm.train.tokenize import IGNORE


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
                  packed: bool) -> LabelOnlyTrainer:
    """pt's and sft's Trainer: packed (sft) or padded, length-grouped batches (map-style data only)."""
    args = training_arguments(config, has_eval=eval_ is not None,
                              group_by_length=not packed and not isinstance(train, torch.utils.data.IterableDataset))
    collator = PackedCollator() if packed else PaddedCollator(tokenizer.pad_token_id)
    return LabelOnlyTrainer(model=model, args=args, train_dataset=train, eval_dataset=eval_,
                            data_collator=collator, processing_class=tokenizer)


# ---- callbacks


def add_callbacks(trainer: Trainer, config: TrainConfig, callbacks: list[Any] = ()) -> Trainer:
    """Our progress bar and metrics.jsonl instead of the Trainer's printer and bar, then the caller's."""
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
        loss = "-" if math.isnan(self.loss) else f"{self.loss:.4f}"  # none logged yet: a dash, not "nan"
        self.bar.set_postfix(loss=loss, tok_s=f"{rate:.0f}", refresh=refresh)

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
