"""kill -9 in the middle of long work: nothing half-written at a final path, and a re-run (`--resume`
where there is one) gives what an uninterrupted run gives.

Each run is a real `subjectlm` process on a tiny model. The kill point is made deterministic by a
wrapper that replaces one internal function with "SIGKILL myself" (or "do the work, then SIGKILL
myself", just before the result would be renamed into place) and then runs the CLI unchanged."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

KILL = "import os, signal\ndef _die(*a, **k):\n    os.kill(os.getpid(), signal.SIGKILL)\n"


def _subjectlm(argv: list[str], patch: str = "", cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`subjectlm ARGV` in a fresh process, after running `patch` (which may plant a kill point)."""
    script = KILL + patch + "\nimport sys\nfrom subjectlm.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", script, *map(str, argv)], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env=env)


def _killed(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]


def _ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stderr[-3000:]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


# ---- eval exam -------------------------------------------------------------------------------

@pytest.fixture()
def exam_dir(tmp_path) -> Path:
    root = tmp_path / "exam"
    mapping = {}
    for subject in ("alpha", "beta", "gamma"):
        for split, n in (("dev", 1), ("val", 3)):
            path = root / split / f"{subject}_{split}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "w", encoding="utf-8", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["id", "question", "A", "B", "C", "D", "answer"])
                writer.writerows([[str(i), f"{subject} question {i}?", "w", "x", "y", "z", "ABCD"[i % 4]]
                                  for i in range(n)])
        mapping[subject] = [subject.title(), subject, "STEM"]
    (root / "subject_mapping.json").write_text(json.dumps(mapping), encoding="utf-8")
    return root


def test_eval_exam_killed_then_resumed_equals_uninterrupted(tmp_path, exam_dir, tiny_llama_dir):
    args = ["eval", "exam", "--model", tiny_llama_dir, "--data", exam_dir, "--shots", "1", "--output_dir"]
    _ok(_subjectlm(args + [tmp_path / "whole"]))
    # Killed as it starts the second subject: the first subject's answers are flushed, nothing else.
    patch = ("import subjectlm.eval.exam.runner as R\n_real, _calls = R.answer_chunk, []\n"
             "def _chunk(*a, **k):\n    _calls.append(1)\n    if len(_calls) == 2:\n        _die()\n"
             "    return _real(*a, **k)\nR.answer_chunk = _chunk\n")
    killed = tmp_path / "killed"
    _killed(_subjectlm(args + [killed], patch))
    lines = (killed / "predictions.jsonl").read_text().splitlines()
    assert [json.loads(line)["subject"] for line in lines] == ["alpha"] * 3
    assert not (killed / "summary.json").exists() and not (killed / "report.md").exists()
    _ok(_subjectlm(args + [killed, "--resume"]))
    whole = tmp_path / "whole"
    assert (killed / "predictions.jsonl").read_text() == (whole / "predictions.jsonl").read_text()
    a, b = (json.loads((d / "summary.json").read_text()) for d in (whole, killed))
    assert (a["macro"], a["micro"], a["subjects"]) == (b["macro"], b["micro"], b["subjects"])


# ---- eval qa ---------------------------------------------------------------------------------

def test_eval_qa_killed_then_resumed_equals_uninterrupted(tmp_path, tiny_llama_dir):
    data = tmp_path / "qa.jsonl"
    data.write_text("".join((REPO / "examples" / "data" / "qa.jsonl").read_text().splitlines(keepends=True)[:4]))
    args = ["eval", "qa", "--model", tiny_llama_dir, "--data", data, "--batch_size", "2", "--max_new_tokens", "8",
            "--output_dir"]
    _ok(_subjectlm(args + [tmp_path / "whole"]))
    # Killed as it starts the second batch: the first batch's answers are flushed, nothing else.
    patch = ("import subjectlm.eval.qa.runner as R\n_real, _calls = R.score_batch, []\n"
             "def _batch(*a, **k):\n    _calls.append(1)\n    if len(_calls) == 2:\n        _die()\n"
             "    return _real(*a, **k)\nR.score_batch = _batch\n")
    killed = tmp_path / "killed"
    _killed(_subjectlm(args + [killed], patch))
    assert len((killed / "predictions.jsonl").read_text().splitlines()) == 2
    assert not (killed / "summary.json").exists() and not (killed / "report.md").exists()
    _ok(_subjectlm(args + [killed, "--resume"]))
    whole = tmp_path / "whole"
    assert (killed / "predictions.jsonl").read_text() == (whole / "predictions.jsonl").read_text()
    a, b = (json.loads((d / "summary.json").read_text()) for d in (whole, killed))
    assert a["scores"] == b["scores"] and a["n"] == b["n"] == 4


# ---- merge -----------------------------------------------------------------------------------

@pytest.fixture()
def adapter_dir(tmp_path, tiny_llama_dir) -> Path:
    from test_merge import make_adapter

    return make_adapter(tiny_llama_dir, tmp_path / "adapter")


def test_merge_killed_before_its_rename_leaves_no_output(tmp_path, tiny_llama_dir, adapter_dir):
    args = ["merge", "--base", tiny_llama_dir, "--lora", adapter_dir, "--output_dir"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    _ok(_subjectlm(args + [whole]))
    # Killed with the weights written into the temporary folder, before the side files and the rename.
    _killed(_subjectlm(args + [killed], "import subjectlm.merge.write as S\nS._copy_side_files = _die\n"))
    assert not killed.exists()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".killed")]
    assert leftovers and all(".tmp-" in n or ".scratch-" in n for n in leftovers)  # hidden, beside it
    _ok(_subjectlm(args + [killed]))  # a plain re-run: the leftovers do not get in its way
    assert _visible(killed) == _visible(whole)
    for name in _visible(whole):
        if name.endswith(".safetensors"):
            assert _sha(killed / name) == _sha(whole / name), name


# ---- export with quantize --------------------------------------------------------------------

@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed")
def test_export_killed_while_quantizing_leaves_no_quantized_file(tmp_path, tiny_llama_dir):
    def args(out: Path) -> list:
        return ["export", "gguf", "--model", tiny_llama_dir, "--output", out / "model.gguf", "--quantize", "q8_0"]

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    _ok(_subjectlm(args(whole)))
    # Killed once llama.cpp has written the whole q8_0 file into its temporary name, before the rename.
    patch = ("import llama_cpp\n_real = llama_cpp.llama_model_quantize\n"
             "def _quantize(*a, **k):\n    _real(*a, **k)\n    _die()\nllama_cpp.llama_model_quantize = _quantize\n")
    _killed(_subjectlm(args(killed), patch))
    assert _visible(killed) == ["model.gguf"]  # the f16 file was complete and renamed; no q8_0 at its path
    assert any(p.name.startswith(".model-q8_0.gguf.tmp-") for p in killed.iterdir())
    _ok(_subjectlm(args(killed) + ["--overwrite"]))
    assert _visible(killed) == _visible(whole) == ["model-q8_0.gguf", "model.gguf"]
    for name in _visible(whole):
        assert _sha(killed / name) == _sha(whole / name), name


# ---- a recipe between stages -----------------------------------------------------------------

def _recipe(folder: Path, model: Path) -> Path:
    (folder / "corpus.txt").write_text("\n\n".join(f"Paragraph {i} about the basalt cliffs of Kestrel Island."
                                                   for i in range(8)))
    path = folder / "recipe.yaml"
    path.write_text(f"model: {model}\noutput_dir: out\nstages:\n"
                    "  - stage: pt\n    data: corpus.txt\n    block_size: 32\n    max_steps: 2\n"
                    "    per_device_train_batch_size: 2\n    save_steps: 1000\n    lora_rank: 4\n"
                    "    report_to: [none]\n    overwrite_output_dir: true\n"
                    "  - stage: merge\n    overwrite: true\n")
    return path


def test_recipe_killed_between_stages_resumes_at_the_next_stage(tmp_path, tiny_llama_dir):
    from safetensors.numpy import load_file

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    whole.mkdir(), killed.mkdir()
    _ok(_subjectlm(["run", _recipe(whole, tiny_llama_dir)], cwd=whole))
    # Killed as the merge stage starts: pt has finished and is recorded.
    proc = _subjectlm(["run", _recipe(killed, tiny_llama_dir)], "import subjectlm.merge as M\nM.run = _die\n",
                      cwd=killed)
    _killed(proc)
    state = json.loads((killed / "out" / "pipeline_state.json").read_text())
    assert list(state) == ["pt"] and not (killed / "out" / "merge").exists()
    proc = _subjectlm(["run", killed / "recipe.yaml"], cwd=killed)
    _ok(proc)
    assert "[pt] already done" in proc.stdout and "[merge] running merge" in proc.stdout
    a = load_file(str(whole / "out" / "merge" / "model.safetensors"))
    b = load_file(str(killed / "out" / "merge" / "model.safetensors"))
    assert set(a) == set(b)
    assert max(float(abs(a[k].astype("float64") - b[k].astype("float64")).max()) for k in a) <= 1e-5
