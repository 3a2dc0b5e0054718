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

Last line: eval_speedup_vs_lmeval=X.XX agreement=Y.YYY accuracy=Z.ZZZ rss_ratio_vs_lmeval=R.RR
(agreement: share of questions where both predict the same letter; accuracy: ours).

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

REPO = Path(__file__).resolve().parents[1]
CEVAL = REPO.parent / "shared" / "ceval-exam"
SUBJECTS = ["computer_network", "high_school_physics", "advanced_mathematics", "college_economics",
            "high_school_geography", "logic", "modern_chinese_history", "law", "basic_medicine", "civil_servant"]
LETTERS = "ABCD"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child_ours(args) -> dict:
    from subjectlm.eval.runner import PREDICTIONS, ExamConfig, read_predictions, run_exam

    out = Path(args.workdir) / "ours"
    start = time.perf_counter()
    run_exam(ExamConfig(model="default", data=str(args.data), subjects=args.subjects, shots=args.shots,
                        batch_size=args.batch_size, limit=args.limit, output_dir=str(out), overwrite=True,
                        dtype="fp32", device="cpu"), log=lambda _: None)
    seconds = time.perf_counter() - start
    preds = {f"{r['subject']}/{r['id']}": {"prediction": r["prediction"], "correct": r["correct"]}
             for r in read_predictions(out / PREDICTIONS)}
    # The exact prompts, to compare with lm-eval's contexts.
    from subjectlm.eval import prompts as P
    from subjectlm.eval.exams import read_exam

    _, exams = read_exam(args.data, "ceval", "val", args.subjects)
    texts = {f"{e.info.handle}/{d.id}": P.prompt(P.style("ceval"), e.info.name, e.dev[: args.shots], d)
             for e in exams for d in e.docs[: args.limit]}
    return {"seconds": seconds, "rss_mb": _peak_rss_mb(), "predictions": preds, "prompts": texts}


def _write_tasks(args, task_dir: Path) -> list[str]:
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
        name = f"slbench_ceval_{subject}"
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
        (task_dir / f"{name}.yaml").write_text(json.dumps(task, ensure_ascii=False, indent=1), encoding="utf-8")
        names.append(name)
    return names


def child_lmeval(args) -> dict:
    import lm_eval
    from lm_eval.tasks import TaskManager

    from subjectlm.models import resolve_model

    task_dir = Path(args.workdir) / "lmeval_tasks"
    task_dir.mkdir(parents=True, exist_ok=True)
    names = _write_tasks(args, task_dir)
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
        subject = name[len("slbench_ceval_"):]
        for sample in results["samples"][name]:
            scores = [float(r[0]) for r in sample["filtered_resps"]]
            key = f"{subject}/{sample['doc']['id']}"
            preds[key] = {"prediction": LETTERS[max(range(4), key=scores.__getitem__)]}
            contexts[key] = sample["arguments"][0][0] if "arguments" in sample else None
    return {"seconds": seconds, "rss_mb": _peak_rss_mb(), "predictions": preds, "contexts": contexts,
            "version": lm_eval.__version__ if hasattr(lm_eval, "__version__") else "0.4.13"}


def run_child(kind: str, args) -> dict:
    result = Path(args.workdir) / f"{kind}.json"
    cmd = [sys.executable, __file__, "--_child", kind, "--_result", str(result), "--workdir", args.workdir,
           "--data", str(args.data), "--shots", str(args.shots), "--batch_size", str(args.batch_size),
           "--subjects", ",".join(args.subjects)] + (["--limit", str(args.limit)] if args.limit else [])
    print(f"running {kind} ...", flush=True)
    subprocess.run(cmd, check=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    return json.loads(result.read_text(encoding="utf-8"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(CEVAL))
    parser.add_argument("--all", action="store_true", help="all subjects of the val split")
    parser.add_argument("--subjects", default=",".join(SUBJECTS))
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--batch_size", type=int, default=8, help="both sides")
    parser.add_argument("--limit", type=int, default=None, help="first N questions per subject")
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
        result = child_ours(args) if args._child == "ours" else child_lmeval(args)
        Path(args._result).write_text(json.dumps(result, ensure_ascii=False), encoding="utf-8")
        return 0
    if not Path(args.data).is_dir():
        print(f"C-Eval data not found at {args.data}", file=sys.stderr)
        return 2
    args.workdir = args.workdir or tempfile.mkdtemp(prefix="eval_speed-")
    ours = run_child("ours", args)
    theirs = run_child("lmeval", args)
    keys = sorted(ours["predictions"])
    missing = [k for k in keys if k not in theirs["predictions"]]
    if missing:
        print(f"lm-eval lacks {len(missing)} questions, e.g. {missing[:3]}", file=sys.stderr)
        return 1
    n = len(keys)
    same = sum(ours["predictions"][k]["prediction"] == theirs["predictions"][k]["prediction"] for k in keys)
    correct = sum(bool(ours["predictions"][k]["correct"]) for k in keys)
    identical = sum(theirs["contexts"].get(k) == ours["prompts"].get(k) for k in keys)
    qps_ours, qps_theirs = n / ours["seconds"], n / theirs["seconds"]
    print(f"questions: {n} ({len(args.subjects)} subjects, {args.shots}-shot, batch {args.batch_size}, CPU)")
    print(f"lm-eval contexts identical to our prompts: {identical}/{n}")
    print(f"{'':10s} {'seconds':>9s} {'q/s':>8s} {'peak RSS MB':>12s}")
    print(f"{'subjectlm':10s} {ours['seconds']:9.1f} {qps_ours:8.3f} {ours['rss_mb']:12.0f}")
    print(f"{'lm-eval':10s} {theirs['seconds']:9.1f} {qps_theirs:8.3f} {theirs['rss_mb']:12.0f}")
    print(f"eval_speedup_vs_lmeval={qps_ours / qps_theirs:.2f} agreement={same / n:.3f} accuracy={correct / n:.3f} "
          f"rss_ratio_vs_lmeval={ours['rss_mb'] / theirs['rss_mb']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
