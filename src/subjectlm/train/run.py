"""The run every training stage shares, top to bottom: output dir, tokenizer, data, model, Trainer,
train (resuming if asked), evaluate, final save. A stage brings only its data and, for dpo, its Trainer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from subjectlm.models import peft_without_renamed_attribute_warning
from subjectlm.train.config import TrainConfig
from subjectlm.train.model import load_model_for_training, load_tokenizer_for
from subjectlm.train.outputs import final_loss, fmt_loss, is_main_process, prepare_output_dir, save_final
from subjectlm.train.trainer import add_callbacks, build_trainer


@dataclass
class StageData:
    train: Any  # rows, a datasets.Dataset or an IterableDataset
    evaluation: Any | None
    summary: str  # what was loaded (counts, skips, cache): printed and kept in train_summary.json
    validation: str = ""  # the validation data's own summary, when it is not part of `summary`
    drawn: list[dict] | None = None  # weighted sources: what each gave (data/mix.py Drawn.to_json), else None


# (model, tokenizer, data) -> a transformers Trainer; the default is pt's and sft's label-only Trainer
MakeTrainer = Callable[[Any, Any, StageData], Any]


def run_training(config: TrainConfig, stage: str, load_data: Callable[[Any], StageData],
                 make_trainer: MakeTrainer | None = None, packed: bool = False,
                 callbacks: list[Any] = ()) -> dict[str, Any]:
    """Train `stage` (pt, sft, dpo); returns {"adapter" or "model": output_dir, "summary": one line}."""
    checkpoint = prepare_output_dir(config)
    tokenizer = load_tokenizer_for(config)
    data = load_data(tokenizer)
    if is_main_process():
        print("; ".join(part for part in (data.summary, data.validation) if part), flush=True)
    # peft and trl read transformers' renamed `is_gradient_checkpointing` when they wrap the model, build the
    # DPO trainer and at every step: a FutureWarning the user can do nothing about
    with peft_without_renamed_attribute_warning():
        model = load_model_for_training(config, tokenizer, packed=packed)
        if make_trainer is None:
            trainer = build_trainer(config, model, tokenizer, data.train, data.evaluation, packed=packed)
        else:
            trainer = make_trainer(model, tokenizer, data)
        add_callbacks(trainer, config, callbacks)
        metrics = dict(trainer.train(resume_from_checkpoint=checkpoint).metrics)
    if trainer.eval_dataset is not None and config.do_eval is not False:
        metrics.update(trainer.evaluate())
    if trainer.is_world_process_zero():
        info = {"data": data.summary, **({"validation": data.validation} if data.validation else {}),
                **({"data_drawn": data.drawn} if data.drawn is not None else {})}
        save_final(trainer, config, info, metrics, {"data_drawn": data.drawn} if data.drawn is not None else {})
    trainer.accelerator.wait_for_everyone()

    kind = "model" if config.full_finetuning else "adapter"
    steps = trainer.state.global_step
    return {kind: str(Path(config.output_dir)),
            "summary": f"{stage} {steps} steps, final loss {fmt_loss(final_loss(config))}; {data.summary}"}
