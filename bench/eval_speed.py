"""Benchmark: `subjectlm eval exam` vs lm-evaluation-harness on C-Eval val, 5-shot, default model, CPU.

Baseline: lm-eval==0.4.13 (`pip install lm-eval==0.4.13`; also in the `dev` extra),
model type "hf", with one local task YAML per subject written here: the official
C-Eval prompt (header with 考试, shots = the first N dev rows in file order,
`target_delimiter: ""` so the letter follows 答案： with no space), reading the
same local CSVs (converted to all-string JSON lines so that numeric-looking
options are not re-typed by pandas).

Each side runs in its own child process, so its peak RSS is its own
(ru_maxrss); time is measured inside the child from before model load to the
last answer (imports excluded). The bench also checks that lm-eval's contexts are
byte-identical to our prompts.

    .venv/bin/python bench/eval_speed.py                 # 10 subjects, 266 questions
    .venv/bin/python bench/eval_speed.py --all           # all 52 subjects (lm-eval: over an hour here)
    .venv/bin/python bench/eval_speed.py --limit 5       # first 5 questions per subject (quick look)
    .venv/bin/python bench/eval_speed.py --rounds 2      # subjects in 2 rounds, the sides taking turns first

With `--rounds N` the subjects are dealt into N groups and both sides run each group, the side that
goes first alternating (ours, lm-eval; lm-eval, ours; ...). The totals are the sums over the rounds
(each round pays its own model load, on both sides), and each round's own ratio is printed, which shows
how much the machine's speed moved between turns; with one round (the default) a drift between the
two turns moves the ratio unseen.

Last letter line: eval_speedup_vs_lmeval=X.XX agreement=Y.YYY accuracy=Z.ZZZ rss_ratio_vs_lmeval=R.RR
(agreement: share of questions where both predict the same letter; accuracy: ours).

Cloze line (`--scoring cloze|both`, the default both): ours with `--scoring cloze` against
lm-eval's multiple_choice scoring of the same questions with the option texts as the choices
(a second local task YAML per subject: `doc_to_text` the question and 答案：, `doc_to_choice`
the four option texts, `target_delimiter: ""`, shots followed by their correct option's text),
metrics acc, acc_norm and acc_bytes. It checks contexts and continuations byte-identical, the
summed log-likelihoods of every option (max |Δ|) and the predictions of each metric:

    cloze_speedup_vs_lmeval=X.XX agreement_acc=… agreement_acc_norm=… agreement_acc_bytes=… max_abs_ll_diff=…

Our cloze time includes the PMI metric's neutral-context rows, which lm-eval is not asked for.
Measured 2026-12-01 on the quiet 2-core machine, `--scoring cloze --subjects computer_network,logic --limit 10`
(20 questions, 5-shot): ours 55.9 s (1.5 GB peak), lm-eval 365.5 s (10.9 GB); pairs identical 20/20;
cloze_speedup_vs_lmeval=6.53 agreement_acc=1.000 agreement_acc_norm=1.000 agreement_acc_bytes=1.000
max_abs_ll_diff=1.25e-03 rss_ratio_vs_lmeval=0.14. The full default cloze run, `--scoring cloze` (10 subjects,
266 questions, 1,064 option continuations), 2026-12-01 22:23-23:20, nothing else running (load 2.0 from the
bench's own two threads, CPU steal 0.2-1.8%): ours 342.1 s (1.8 GB peak), lm-eval 3,043.5 s (9.7 GB);
pairs identical 266/266; cloze_speedup_vs_lmeval=8.90 agreement_acc=1.000 agreement_acc_norm=1.000
agreement_acc_bytes=1.000 max_abs_ll_diff=1.16e-03 rss_ratio_vs_lmeval=0.19. The ratio is higher than
letter mode's because lm-eval scores each option as a whole prompt of its own (1,064 sequences of ~1,100
tokens), while we run each subject's prefix once, each question once and each option's few tokens
against both (`question_kv`).
Without lm-eval installed the script says so, prints our side only and exits 2.

Where our letter-mode time goes (profiled 2026-12-01, `eval exam` on logic, computer_network, law,
65 questions, fp32, 2 threads, on a shared machine at load ~6, so absolute seconds are ~2.5x inflated;
the shares are what counts): 95% is the model's forwards, of which the per-question forwards are 87%
and the three subjects' prefix forwards 13%; inside them the linear layers ~43%, attention (the
queries against the batch-1 prefix, and each question's own causal part) ~35%, rotary embedding, RMS
norms and the log-sum-exp merge ~20% (elementwise, memory-bound), the rest Python. Model and tokenizer
load (transformers' import included, since the clock starts before the load) ~4%, tokenization 0.1%,
report and chart 0.5%. Counted in tokens on the default 10 subjects: lm-eval runs 333k prompt
tokens; we run 10.2k prefix tokens once and 53.3k question tokens, which right-padded in batches of 8
became 68.1k (28% padding). So the ratio is bounded by tokens (333k / 63.5k = 5.2x, more where
attention over the long prompts dominates lm-eval's side) unless the per-token cost falls: packing a
batch's questions end to end in one row (`HFScorer.packed`, shared_prefix.PackedRows) removes the
padding; A/B in one process on computer_network, high_school_geography, basic_medicine, law (81
questions, two alternating rounds, load 3.5-7): CPU time 189.5 s -> 166.4 s per round (1.14x), wall
218 s -> 210 s, the same 81 predictions, log-probs within 1.5e-5. What is left is compute on real tokens: the question tokens' matmuls and their attention to
the prefix; only bf16 (not used here: the baseline is fp32) or fewer threads' contention would move it.

Re-profiled 2026-12-01 after packing (timers around the model's parts in one run over law and
computer_network, fp32, 2 threads): the MLP 48%, the attention function 31% (the queries against the
prefix 18%, each question's own causal span 6%, the log-sum-exp merge 1%, layout copies the rest),
the q/k/v/o projections ~14%, RMSNorm and RoPE 4%. The pure scoring of the default 10 subjects took
149 s (model load ~6 s more). Counted in FLOPs it is ~19 TFLOP: the questions' linear layers 11.3,
their attention to the prefixes 5.1, the prefixes' own forwards ~2.5; the matmuls ran at 130-170
GFLOP/s in the model, against ~170 GFLOP/s for a lone MKL sgemm of the same shapes on these 2 cores,
and the prefix attention kernel at ~140. So the run is compute-bound at 75-80% of this machine's fp32
matmul rate: what is left to take is the ~10% in elementwise ops and copies, not a structural cost.
Tried and dropped: attending the packed queries to the prefix without folding (the CPU flash kernel
takes grouped-query keys as they are) was ~20% faster as a lone call but ~10% slower in the model
(4 alternating runs); plain matmul attention instead of the flash kernel was 2-4x slower.

So the speed-up follows the FLOP ratio. lm-eval's side is ~102 TFLOP: 333k prompt tokens, each ~212 MFLOP
of linear layers, ~57 of output head (logits at every position) and ~38 of attention. That is 5.4x our
~19. In the four measured runs both sides ran at about the same rate per FLOP: ours 70-116 GFLOP/s
(163.5-270 s), lm-eval 72-112 (910-1409 s), and the ratio read 5.2-6.4. At fp32, 8x would need our side
to run 1.5x faster per FLOP than lm-eval's, i.e. near a lone sgemm's rate over the whole run, attention
and elementwise ops included. The one exact saving left that we know of is the last layer at positions
whose logits are not read (its query, attention, output projection and MLP: ~3% of the questions' work).

Measured 2026-11-28 on the quiet 2-core CPU machine, the default 266 questions: ours 163.5 s (1.6 GB peak),
lm-eval 910.5 s (14.0 GB); 266/266 contexts byte-identical; last line
eval_speedup_vs_lmeval=5.57 agreement=1.000 accuracy=0.241 rss_ratio_vs_lmeval=0.11.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import baselines

REPO = Path(__file__).resolve().parents[1]
CEVAL = REPO.parent / "shared" / "ceval-exam"
SUBJECTS = ["computer_network", "high_school_physics", "advanced_mathematics", "college_economics",
            "high_school_geography", "logic", "modern_chinese_history", "law", "basic_medicine", "civil_servant"]
LETTERS = "ABCD"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child_ours(args, scoring: str = "letter") -> dict:
    from subjectlm.eval.exam.runner import PREDICTIONS, ExamConfig, read_predictions, run_exam

    out = Path(args.workdir) / f"ours_{scoring}"
    start = time.perf_counter()
    run_exam(ExamConfig(model="default", data=str(args.data), subjects=args.subjects, shots=args.shots,
                        batch_size=args.batch_size, limit=args.limit, output_dir=str(out), overwrite=True,
                        dtype="fp32", device="cpu", scoring=scoring), log=lambda _: None)
    seconds = time.perf_counter() - start
    preds = {f"{r.subject}/{r.id}": {"prediction": r.prediction, "correct": r.correct,
                                     "modes": r.modes or {}, "cloze": r.cloze}
             for r in read_predictions(out / PREDICTIONS)}
    # The exact prompts, to compare with lm-eval's contexts.
    from subjectlm.eval.exam import prompts as P
    from subjectlm.eval.exam.directory import read_exam

    _, exams = read_exam(args.data, "ceval", "val", args.subjects)
    style = P.style("ceval")
    if scoring == "cloze":  # each option's (context, continuation), as lm-eval's arguments hold them
        texts = {f"{e.info.handle}/{d.id}": [[P.cloze_prompt(style, e.info.name, e.dev[: args.shots], d), c]
                                             for c in P.cloze_continuations(style, d)]
                 for e in exams for d in e.docs[: args.limit]}
    else:
        texts = {f"{e.info.handle}/{d.id}": P.prompt(style, e.info.name, e.dev[: args.shots], d)
                 for e in exams for d in e.docs[: args.limit]}
    return {"seconds": seconds, "rss_mb": _peak_rss_mb(), "predictions": preds, "prompts": texts}


def _write_tasks(args, task_dir: Path, scoring: str = "letter") -> list[str]:
    import csv

    mapping = json.loads((Path(args.data) / "subject_mapping.json").read_text(encoding="utf-8"))
    names = []
    for subject in args.subjects:
        files = {}
        for split in ("dev", "val"):
            with open(Path(args.data) / split / f"{subject}_{split}.csv", encoding="utf-8", newline="") as handle:
                rows = list(csv.DictReader(handle))
            if split == "val" and args.limit:
                rows = rows[: args.limit]
            path = task_dir / f"{subject}_{split}.jsonl"
            path.write_text("".join(json.dumps({k: str(v) for k, v in r.items()}, ensure_ascii=False) + "\n"
                                    for r in rows), encoding="utf-8")
            files[split] = str(path)
        name = f"slbench_{scoring}_ceval_{subject}"
        header = f"以下是中国关于{mapping[subject][1]}考试的单项选择题，请选出其中的正确答案。\n\n"
        task = {
            "task": name, "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"dev": files["dev"], "val": files["val"]}},
            "validation_split": "val", "fewshot_split": "dev", "fewshot_config": {"sampler": "first_n"},
            "output_type": "multiple_choice", "description": header,
            "doc_to_text": "{{question}}\nA. {{A}}\nB. {{B}}\nC. {{C}}\nD. {{D}}\n答案：",
            "doc_to_choice": ["A", "B", "C", "D"], "doc_to_target": "{{['A', 'B', 'C', 'D'].index(answer)}}",
            "target_delimiter": "", "fewshot_delimiter": "\n\n", "metric_list": [{"metric": "acc"}],
        }
        if scoring == "cloze":  # the option texts are the choices; a shot is followed by its correct text
            task.update({"doc_to_text": "{{question}}\n答案：", "doc_to_choice": "{{[A, B, C, D]}}",
                         "metric_list": [{"metric": m} for m in ("acc", "acc_norm", "acc_bytes")]})
        (task_dir / f"{name}.yaml").write_text(json.dumps(task, ensure_ascii=False, indent=1), encoding="utf-8")
        names.append(name)
    return names


def child_lmeval(args, scoring: str = "letter") -> dict:
    import lm_eval
    from lm_eval.tasks import TaskManager

    from subjectlm.models import resolve_model

    task_dir = Path(args.workdir) / "lmeval_tasks"
    task_dir.mkdir(parents=True, exist_ok=True)
    names = _write_tasks(args, task_dir, scoring)
    model_dir = resolve_model("default")
    start = time.perf_counter()
    results = lm_eval.simple_evaluate(
        model="hf", model_args=f"pretrained={model_dir},dtype=float32,device=cpu",
        tasks=names, num_fewshot=args.shots, batch_size=args.batch_size, log_samples=True,
        task_manager=TaskManager(include_path=str(task_dir)), random_seed=0, numpy_random_seed=0,
        torch_random_seed=0, fewshot_random_seed=0)
    seconds = time.perf_counter() - start
    preds, contexts = {}, {}
    for name in names:
        subject = name[len(f"slbench_{scoring}_ceval_"):]
        for sample in results["samples"][name]:
            scores = [float(r[0]) for r in sample["filtered_resps"]]
            key = f"{subject}/{sample['doc']['id']}"
            preds[key] = {"prediction": LETTERS[max(range(4), key=scores.__getitem__)], "lls": scores}
            if scoring == "cloze":  # lm-eval's own metric values per question (1.0 = right)
                preds[key]["metrics"] = {m: sample.get(m) for m in ("acc", "acc_norm", "acc_bytes")}
                contexts[key] = [list(a[:2]) for a in sample["arguments"]] if "arguments" in sample else None
            else:
                contexts[key] = sample["arguments"][0][0] if "arguments" in sample else None
    return {"seconds": seconds, "rss_mb": _peak_rss_mb(), "predictions": preds, "contexts": contexts,
            "version": lm_eval.__version__ if hasattr(lm_eval, "__version__") else "0.4.13"}


def run_child(kind: str, args, subjects: list[str], tag: str) -> dict:
    result = Path(args.workdir) / f"{kind}{tag}.json"
    cmd = [sys.executable, __file__, "--_child", kind, "--_result", str(result), "--workdir", args.workdir,
           "--data", str(args.data), "--shots", str(args.shots), "--batch_size", str(args.batch_size),
           "--subjects", ",".join(subjects)] + (["--limit", str(args.limit)] if args.limit else [])
    print(f"running {kind}{tag} ({len(subjects)} subjects) ...", flush=True)
    subprocess.run(cmd, check=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    return json.loads(result.read_text(encoding="utf-8"))


def round_schedule(subjects: list[str], rounds: int) -> list[tuple[list[str], tuple[str, str]]]:
    """The subjects dealt into `rounds` groups (every rounds-th one), each group run by both sides, the
    side that goes first alternating (ours, lm-eval; lm-eval, ours; ...). This machine's speed drifts by
    10-30% over an hour; with one round a drift between the two sides' turns moves the ratio, while
    alternating turns puts each side's time in both halves of the run, so a steady drift weighs on
    both alike."""
    rounds = max(1, min(rounds, len(subjects)))
    return [(subjects[i::rounds], ("ours", "lmeval") if i % 2 == 0 else ("lmeval", "ours")) for i in range(rounds)]


def merge_rounds(parts: list[dict]) -> dict:
    """One side's results over its rounds: seconds summed, peak RSS the largest, per-question maps joined."""
    merged = {"seconds": sum(p["seconds"] for p in parts), "rss_mb": max(p["rss_mb"] for p in parts),
              "round_seconds": [p["seconds"] for p in parts]}
    for key in ("predictions", "prompts", "contexts"):
        if key in parts[0]:
            merged[key] = {k: v for p in parts for k, v in p[key].items()}
    if "version" in parts[0]:
        merged["version"] = parts[0]["version"]
    return merged


def run_sides(args, scoring: str, has_lmeval: bool) -> tuple[dict, dict | None]:
    """Both sides over all subjects in `args.rounds` alternating rounds (see round_schedule)."""
    suffix = "" if scoring == "letter" else f"_{scoring}"
    runs: dict[str, list[dict]] = {"ours": [], "lmeval": []}
    schedule = round_schedule(args.subjects, args.rounds)
    for index, (group, order) in enumerate(schedule):
        tag = f"-round{index + 1}" if len(schedule) > 1 else ""
        for side in order:
            if side == "ours" or has_lmeval:
                runs[side].append(run_child(side + suffix, args, group, tag))
    theirs = merge_rounds(runs["lmeval"]) if runs["lmeval"] else None
    return merge_rounds(runs["ours"]), theirs


def _table(ours: dict, theirs: dict | None, n: int) -> None:
    print(f"{'':10s} {'seconds':>9s} {'q/s':>8s} {'peak RSS MB':>12s}")
    for name, side in (("subjectlm", ours), ("lm-eval", theirs)):
        if side is not None:
            print(f"{name:10s} {side['seconds']:9.1f} {n / side['seconds']:8.3f} {side['rss_mb']:12.0f}")
    rounds = ours.get("round_seconds", [])
    if theirs is not None and len(rounds) > 1:  # each round's own ratio shows how far the machine drifted
        print("per round (ours s / lm-eval s = ratio): " + ", ".join(
            f"{a:.1f} / {b:.1f} = {b / a:.2f}" for a, b in zip(rounds, theirs["round_seconds"])))


def report_letter(args, ours: dict, theirs: dict | None) -> int:
    keys = sorted(ours["predictions"])
    n = len(keys)
    correct = sum(bool(ours["predictions"][k]["correct"]) for k in keys)
    print(f"letter scoring, questions: {n} ({len(args.subjects)} subjects, {args.shots}-shot, "
          f"batch {args.batch_size}, CPU)")
    if theirs is None:
        _table(ours, None, n)
        print(f"letter accuracy={correct / n:.3f} (no lm-eval to compare with)")
        return 0
    missing = [k for k in keys if k not in theirs["predictions"]]
    if missing:
        print(f"lm-eval lacks {len(missing)} questions, e.g. {missing[:3]}", file=sys.stderr)
        return 1
    same = sum(ours["predictions"][k]["prediction"] == theirs["predictions"][k]["prediction"] for k in keys)
    identical = sum(theirs["contexts"].get(k) == ours["prompts"].get(k) for k in keys)
    print(f"lm-eval contexts identical to our prompts: {identical}/{n}")
    _table(ours, theirs, n)
    print(f"eval_speedup_vs_lmeval={theirs['seconds'] / ours['seconds']:.2f} agreement={same / n:.3f} "
          f"accuracy={correct / n:.3f} rss_ratio_vs_lmeval={ours['rss_mb'] / theirs['rss_mb']:.2f}")
    return 0


# our cloze mode -> lm-eval's metric of the same definition
CLOZE_METRICS = {"cloze_acc": "acc", "cloze_acc_norm": "acc_norm", "cloze_acc_bytes": "acc_bytes"}


def report_cloze(args, ours: dict, theirs: dict | None) -> int:
    keys = sorted(ours["predictions"])
    n = len(keys)
    accuracy = {m: sum(bool(ours["predictions"][k]["modes"][m]["correct"]) for k in keys) / n
                for m in (*CLOZE_METRICS, "cloze_acc_pmi")}
    print(f"cloze scoring, questions: {n} ({len(args.subjects)} subjects, {args.shots}-shot, "
          f"batch {args.batch_size}, CPU)")
    print("our accuracy: " + " ".join(f"{m}={v:.3f}" for m, v in accuracy.items()))
    if theirs is None:
        _table(ours, None, n)
        return 0
    missing = [k for k in keys if k not in theirs["predictions"]]
    if missing:
        print(f"lm-eval lacks {len(missing)} questions, e.g. {missing[:3]}", file=sys.stderr)
        return 1
    identical = sum(theirs["contexts"].get(k) == ours["prompts"].get(k) for k in keys)
    print(f"lm-eval (context, continuation) pairs identical to ours: {identical}/{n} questions")
    diff = max(abs(a - b) for k in keys
               for a, b in zip(ours["predictions"][k]["cloze"]["logprobs"].values(), theirs["predictions"][k]["lls"]))
    agreement = {}
    for mode, metric in CLOZE_METRICS.items():
        # lm-eval's per-question metric (1.0 right, 0.0 wrong) against ours: the same verdict on each question
        agreement[metric] = sum(float(bool(ours["predictions"][k]["modes"][mode]["correct"]))
                                == theirs["predictions"][k]["metrics"][metric] for k in keys) / n
    _table(ours, theirs, n)
    print(f"cloze_speedup_vs_lmeval={theirs['seconds'] / ours['seconds']:.2f} "
          + " ".join(f"agreement_{m}={v:.3f}" for m, v in agreement.items())
          + f" max_abs_ll_diff={diff:.2e} rss_ratio_vs_lmeval={ours['rss_mb'] / theirs['rss_mb']:.2f}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(CEVAL))
    parser.add_argument("--all", action="store_true", help="all subjects of the val split")
    parser.add_argument("--subjects", default=",".join(SUBJECTS))
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--batch_size", type=int, default=8, help="both sides")
    parser.add_argument("--limit", type=int, default=None, help="first N questions per subject")
    parser.add_argument("--scoring", choices=("letter", "cloze", "both"), default="both")
    parser.add_argument("--rounds", type=int, default=1,
                        help="split the subjects into N rounds, the sides taking turns to go first in each")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--_result", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.subjects = [s for s in args.subjects.split(",") if s]
    if args.all:
        args.subjects = sorted(p.name[: -len("_val.csv")] for p in (Path(args.data) / "val").glob("*_val.csv"))
    if args._child:
        import torch

        torch.set_num_threads(min(2, os.cpu_count() or 1))
        side, _, scoring = args._child.partition("_")
        result = (child_ours if side == "ours" else child_lmeval)(args, scoring or "letter")
        Path(args._result).write_text(json.dumps(result, ensure_ascii=False), encoding="utf-8")
        return 0
    if not Path(args.data).is_dir():
        print(f"C-Eval data not found at {args.data}", file=sys.stderr)
        return 2
    absent = baselines.missing("lm_eval")
    has_lmeval = absent is None
    if not has_lmeval:
        print(f"{absent}. Running our side only.", flush=True)
    args.workdir = args.workdir or tempfile.mkdtemp(prefix="eval_speed-")
    status = 0
    if args.scoring in ("letter", "both"):
        status |= report_letter(args, *run_sides(args, "letter", has_lmeval))
    if args.scoring in ("cloze", "both"):
        status |= report_cloze(args, *run_sides(args, "cloze", has_lmeval))
    if not has_lmeval:
        print(f"{absent}: no speed ratio or agreement measured")
        return 2
    return status


if __name__ == "__main__":
    sys.exit(main())
