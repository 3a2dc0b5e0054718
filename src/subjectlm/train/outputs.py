"""What a training run writes into output_dir, and the one atomic step that makes it final.

Layout (the adapter sits at the top so that `merge` and `chat` take the dir itself):

    adapter_model.safetensors, adapter_config.json   LoRA (or model.safetensors + config.json when full)
    tokenizer files                                  the tokenizer the data was tokenized with
    train_config.json                                the resolved config (+ data_drawn: per weighted source)
    train_summary.json                               data summary, steps, trained tokens, final loss, runtime
    metrics.jsonl                                    one JSON object per logged step (train and eval)
    loss.png                                         train and eval loss over steps
    runs/                                            TensorBoard event files
    checkpoints/checkpoint-N/                        resumable state (optimizer, scheduler, RNG, data position)

During training only the records (metrics.jsonl, runs/, checkpoints/) exist. The final files are
written into a hidden temporary sibling (io.atomic_dir) that also gets hard links of the records, and
that directory then takes output_dir's place in one atomic exchange: a kill at any moment leaves either
the unfinished run (resumable, no model files) or the finished one, never a half-written model. The
next start clears what a killed save left beside it (io.remove_stale_temps), as every other stage's.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

from subjectlm.config import to_dict
from subjectlm.io import atomic_dir, prepare_output, read_jsonl, remove_stale_temps, write_json, write_text
from subjectlm.train.config import TrainConfig

CHECKPOINTS = "checkpoints"
METRICS = "metrics.jsonl"


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


# ---- before training: the output-dir policy


def prepare_output_dir(config: TrainConfig) -> str | None:
    """Refuse an existing output unless --overwrite or --resume; return the checkpoint to resume from."""
    out = Path(config.output_dir)
    if is_main_process():
        remove_stale_temps(out)  # a killed final save's staged dir; it finishes a half-done replacement
    exists = prepare_output(out, config.overwrite, config.resume)
    if exists and config.overwrite and is_main_process():
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
    rows = [row for row in read_metrics(path) if row["step"] <= step]
    write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


# ---- metrics.jsonl


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The logged rows (io.read_jsonl: file:line errors, a torn last line dropped); none if not written yet."""
    return read_jsonl(path, missing_ok=True)


def final_loss(config: TrainConfig) -> float | None:
    losses = [r["loss"] for r in read_metrics(Path(config.output_dir) / METRICS) if "loss" in r]
    return losses[-1] if losses else None


def fmt_loss(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.4f}"


def plot_loss(metrics_path: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
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


# ---- after training: the final save


def save_final(trainer: Any, config: TrainConfig, info: dict[str, Any], metrics: dict[str, Any],
               config_extra: dict[str, Any] | None = None) -> None:
    """Model, tokenizer, resolved config (plus `config_extra`: the examples drawn per weighted source),
    summary and loss plot, made final in one atomic step (main process)."""
    out = Path(config.output_dir).absolute()
    with atomic_dir(out, overwrite=True) as staged:
        trainer.save_model(str(staged))  # adapter (safetensors) + adapter_config.json, tokenizer
        (staged / "training_args.bin").unlink(missing_ok=True)  # pickle; train_config.json says it all
        write_json(staged / "train_config.json", {**to_dict(config), **(config_extra or {})})
        losses = [r["loss"] for r in read_metrics(out / METRICS) if "loss" in r]
        write_json(staged / "train_summary.json", {
            **info, **metrics, "final_loss": losses[-1] if losses else None,
            "steps": trainer.state.global_step, "trained_tokens": trainer.trained_tokens})
        plot_loss(out / METRICS, staged / "loss.png")
        link_records(out, staged)


def link_records(out: Path, staged: Path) -> None:
    """Hard links (copies where the filesystem has none) of everything in `out` the final save does not
    replace: metrics.jsonl, runs/, checkpoints/ cost no second copy and stay resumable."""
    for item in out.iterdir():
        target = staged / item.name
        if target.exists():
            continue
        if item.is_dir() and not item.is_symlink():
            shutil.copytree(item, target, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(item, target)


def _link_or_copy(src: str | Path, dst: str | Path) -> None:
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)
