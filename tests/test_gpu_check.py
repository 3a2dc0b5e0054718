"""bench/gpu_check.py cannot rot: its --dry-run (no GPU) parses every CLI call it will make, imports what its
workers use and loads its accelerate configs; a broken call is reported, not missed."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("gpu_check", None)


def test_dry_run_passes():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dry-run"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith(": ok")
    assert "CLI calls parsed" in proc.stdout


def test_dry_run_reports_a_call_that_no_longer_parses(gpu_check, tmp_path, monkeypatch):
    ctx = gpu_check.Ctx(work=tmp_path)
    assert gpu_check.dry_run(ctx) == []
    monkeypatch.setattr(gpu_check, "cli_calls", lambda ctx: [["sft", "--no_such_flag", "1"]])
    problems = gpu_check.dry_run(ctx)
    assert problems == ["`subjectlm sft --no_such_flag 1 ...` does not parse: sft --no_such_flag 1"]


def test_unknown_path_name_is_a_usage_error():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--only", "sft-fp16"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2 and "--only: unknown path(s) sft-fp16" in proc.stderr


def test_outputs_are_a_json_of_every_line_and_a_markdown_table(gpu_check, tmp_path):
    lines = [gpu_check.Line("sft-bf16-full", "PASS", "bf16 loss 1.0 vs fp32 1.0: rel diff 0.00% (limit 2%)", 3.2),
             gpu_check.Line("accelerate-deepspeed-zero2", "SKIP", "not installed here: deepspeed", 0.0)]
    meta = {"date": "2026-12-01 10:00 UTC", "gpu": "NVIDIA H200", "torch": "2.11.0", "model": "tiny"}
    gpu_check.write_outputs(tmp_path, lines, meta)
    doc = json.loads((tmp_path / "gpu_check.json").read_text())
    assert doc["gpu"] == "NVIDIA H200" and [ln["status"] for ln in doc["lines"]] == ["PASS", "SKIP"]
    table = (tmp_path / "gpu_check.md").read_text()
    assert table.startswith("GPU check, 2026-12-01 10:00 UTC, NVIDIA H200, torch 2.11.0, tiny\n")
    assert "| accelerate-deepspeed-zero2 | SKIP | not installed here: deepspeed | 0.0 |" in table
