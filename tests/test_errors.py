"""One error path: every error a user can fix subclasses UserError and is caught once, in cli.py,
which prints exactly one `error: ...` line (no traceback) and exits 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from subjectlm.cli import main
from subjectlm.errors import UserError


def _run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "subjectlm", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    return lines[0]


def test_every_stage_error_is_a_user_error():
    from subjectlm.backends import BackendUnavailable
    from subjectlm.config import ConfigError
    from subjectlm.data.errors import DataError, DataFileNotFoundError
    from subjectlm.eval.exam.compare import CompareError
    from subjectlm.eval.exam.directory import ExamError
    from subjectlm.export.gguf import ExportError
    from subjectlm.export.hparams import HParamsError
    from subjectlm.export.quantize import QuantizeError
    from subjectlm.export.vocab import VocabError
    from subjectlm.io import JsonlError, OutputExistsError
    from subjectlm.merge.errors import MergeError
    from subjectlm.merge.tensors import SafetensorsFormatError
    from subjectlm.models import ModelNotFoundError
    from subjectlm.train.templates import TemplateError

    for cls in (ConfigError, DataError, DataFileNotFoundError, BackendUnavailable, CompareError, ExamError,
                ExportError, HParamsError, QuantizeError, VocabError, JsonlError, OutputExistsError, MergeError,
                SafetensorsFormatError, ModelNotFoundError, TemplateError):
        assert issubclass(cls, UserError), cls.__name__
    # Code that catches the builtin bases keeps working.
    assert issubclass(ConfigError, ValueError) and issubclass(ModelNotFoundError, FileNotFoundError)
    assert issubclass(OutputExistsError, FileExistsError)


@pytest.mark.parametrize("argv, message", [
    (["model", "path", "/nonexistent/model"], "error: model '/nonexistent/model' not found"),
    (["eval", "exam", "--data", "/nonexistent/exam", "--dtype", "bf61"],
     "error: command line: dtype: must be one of auto, fp32, float32, bf16, bfloat16, fp16, float16, got 'bf61'"),
    (["eval", "exam", "--data", "/nonexistent/exam"], "error: /nonexistent/exam: "),
    (["eval", "compare", "/nonexistent/a", "/nonexistent/b"], "error: /nonexistent/a: no summary.json"),
    (["run", "/nonexistent/recipe.yaml"], "error: config file /nonexistent/recipe.yaml does not exist"),
    (["serve", "--model", "/nonexistent/model"], "error: model '/nonexistent/model' not found"),
])
def test_user_errors_print_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert _one_error_line(captured.err).startswith(message)


def test_errors_from_stage_code_reach_the_cli(tmp_path, capsys):
    """Errors raised deep in a stage (not by the config) come out the same way."""
    assert main(["export", "ollama", "--gguf", str(tmp_path / "missing.gguf")]) == 2
    assert _one_error_line(capsys.readouterr().err).startswith("error: gguf: ")
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_bytes(b"not a gguf file")
    assert main(["export", "ollama", "--gguf", str(not_gguf)]) == 2
    assert _one_error_line(capsys.readouterr().err) == (
        f"error: gguf: {not_gguf} is not a readable GGUF file (GGUF magic invalid)")

    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    (base / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    assert main(["merge", "--base", str(base), "--lora", str(adapter), "--output_dir", str(tmp_path / "out")]) == 2
    assert _one_error_line(capsys.readouterr().err).startswith("error: ")

    yaml_file = tmp_path / "sft.yaml"
    yaml_file.write_text("lora_rnak: 8\n")
    assert main(["sft", str(yaml_file)]) == 2
    assert _one_error_line(capsys.readouterr().err).startswith(f"error: {yaml_file}: unknown key 'lora_rnak'")


def test_no_traceback_from_the_installed_command(tmp_path):
    """Through a real process: stderr holds the one error line and nothing else."""
    proc = _run_cli("eval", "exam", "--data", str(tmp_path / "missing"), "--output_dir", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith(f"error: {tmp_path / 'missing'}: ")
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_an_error_inside_a_recipe_stage_is_one_line(tmp_path):
    """`subjectlm run`: an eval stage pointed at a missing exam ends in one error line, not a traceback."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model: default\noutput_dir: runs\nstages:\n  - stage: eval\n    data: no_such_exam\n")
    proc = _run_cli("run", str(recipe), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "no_such_exam" in _one_error_line(proc.stderr)


def test_data_check_findings_exit_1_not_2(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "q", "output": "a"}\n{"instruction": \n')
    proc = _run_cli("data", "check", "--kind", "sft", str(bad))
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
