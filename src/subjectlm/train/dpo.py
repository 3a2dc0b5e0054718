"""`subjectlm dpo`: preference alignment with LoRA on TRL's DPOTrainer.

The reference model costs no second copy: for a fresh LoRA it is the base with the adapter
disabled (TRL's PEFT path); when continuing an SFT adapter (`--peft_path`) the reference must be
base + that adapter, so its log-probabilities are computed once before training
(`precompute_ref_log_probs`) and the same adapter is then trained further. Prompts are rendered
with our templates (as in sft) and handed to TRL as plain strings, so TRL adds no template of its own.
"""

from __future__ import annotations

from typing import Any

from subjectlm.train.config import DPOConfig
from subjectlm.train.run import StageData, run_training
from subjectlm.train.templates import render, render_prompt


def to_strings(pair: Any, tokenizer: Any, template: str, system_prompt: str) -> dict[str, str]:
    """A PreferencePair as prompt / chosen / rejected text; each answer ends with the end-of-turn token."""
    prompt = render_prompt(pair.prompt, template, tokenizer, system_prompt)

    def answer(text: str) -> str:
        segments = render([*pair.prompt, {"role": "assistant", "content": text}], template, tokenizer, system_prompt)
        return [s for s, trained in segments if trained][-1]

    return {"prompt": prompt, "chosen": answer(pair.chosen), "rejected": answer(pair.rejected)}


def load_pairs(config: DPOConfig, paths: list[str], tokenizer: Any) -> tuple[list[dict[str, str]], str]:
    from subjectlm.data import load_dpo

    loaded = load_dpo(paths, skip_invalid=config.skip_invalid)
    rows = [to_strings(p, tokenizer, config.template, config.system_prompt) for p in loaded.items]
    return rows, loaded.summary()


def load_train(config: DPOConfig, tokenizer: Any) -> tuple[list[dict[str, str]], str, list[dict] | None]:
    """(rows, summary, drawn): every pair once, or each weighted source's pairs drawn by its weight."""
    from subjectlm.data.mix import describe, is_weighted, mix, sources

    if not is_weighted(config.data):
        rows, summary = load_pairs(config, config.data, tokenizer)
        return rows, summary, None
    found = sources(config.data)
    loaded = [load_pairs(config, [s.path], tokenizer) for s in found]
    rows, drawn = mix([r for r, _ in loaded], [s.weight for s in found], config.seed, [s.path for s in found])
    summary = "; ".join([*(f"{s.path}: {text}" for s, (_, text) in zip(found, loaded)), describe(drawn, "examples")])
    return rows, summary, [d.to_json() for d in drawn]


def run(config: DPOConfig, callbacks: list[Any] = ()) -> dict[str, Any]:
    def load_data(tokenizer: Any) -> StageData:
        from datasets import Dataset

        train, summary, drawn = load_train(config, tokenizer)
        evaluation = None
        if config.validation_file:
            rows, eval_summary = load_pairs(config, config.validation_file, tokenizer)
            evaluation = Dataset.from_list(rows)
            summary += f"; validation: {eval_summary}"
        return StageData(Dataset.from_list(train), evaluation, summary, drawn=drawn)

    return run_training(config, "dpo", load_data, make_trainer=lambda model, tokenizer, data: dpo_trainer(
        config, model, tokenizer, data.train, data.evaluation), callbacks=callbacks)


def dpo_trainer(config: DPOConfig, model: Any, tokenizer: Any, train: Any, evaluation: Any | None) -> Any:
    """TRL's DPOTrainer on our arguments, counting trained (completion) tokens for the progress bar."""
    from trl import DPOConfig as TRLDPOConfig, DPOTrainer

    from subjectlm.train.trainer import training_arguments

    class CountingDPOTrainer(DPOTrainer):
        trained_tokens = 0

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if model.training and "completion_mask" in inputs:
                self.trained_tokens += int(inputs["completion_mask"].sum())
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)

    args = training_arguments(config, has_eval=evaluation is not None, group_by_length=False, cls=TRLDPOConfig,
                              beta=config.beta, loss_type=[config.loss_type], max_length=config.max_length,
                              precompute_ref_log_probs=bool(config.peft_path) or config.full_finetuning)
    return CountingDPOTrainer(model=model, args=args, train_dataset=train, eval_dataset=evaluation,
                              processing_class=tokenizer)
