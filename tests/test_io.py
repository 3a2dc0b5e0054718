"""io.py: JSON lines (file:line errors, a torn last line dropped and counted, fsynced appends), the
one policy for an existing output directory, and atomic outputs whose leftovers a later run clears."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from subjectlm.config import ConfigError
from subjectlm.errors import UserError
from subjectlm.io import (
    JsonlError,
    OutputExistsError,
    append_jsonl,
    atomic_dir,
    exchange_paths,
    prepare_output,
    read_jsonl,
    remove_stale_temps,
    temp_sibling,
    write_json,
)


def test_append_then_read_round_trip(tmp_path):
    path = tmp_path / "sub" / "metrics.jsonl"
    rows = [{"step": 1, "loss": 2.5}, {"step": 2, "text": "岩浆"}]
    for row in rows:
        append_jsonl(path, row)
    assert path.read_text(encoding="utf-8") == '{"step": 1, "loss": 2.5}\n{"step": 2, "text": "岩浆"}\n'
    got = read_jsonl(path)
    assert got == rows and got.torn == 0


def test_a_bad_middle_line_names_file_and_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2\n{"a": 3}\n')
    with pytest.raises(JsonlError) as info:
        read_jsonl(path)
    assert str(info.value) == f"{path}:3: not valid JSON: Expecting ',' delimiter"
    assert isinstance(info.value, UserError)


def test_a_torn_last_line_is_dropped_with_a_warning_and_counted(tmp_path, capsys):
    path = tmp_path / "p.jsonl"
    whole = '{"a": 1}\n{"a": 2}\n'
    path.write_text(whole + '{"a": 3, "b": "cut sh')
    got = read_jsonl(path)
    assert got == [{"a": 1}, {"a": 2}] and got.torn == 1
    assert f"warning: {path}:3: last line is cut short" in capsys.readouterr().err
    assert path.read_text() == whole + '{"a": 3, "b": "cut sh'  # reading alone changes nothing
    got = read_jsonl(path, repair=True)
    assert got.torn == 1 and path.read_text() == whole  # repair cuts it off the file
    append_jsonl(path, {"a": 4})
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}, {"a": 4}]


def test_a_complete_last_line_without_newline_is_kept_and_appends_start_a_new_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}')  # written by hand, no final newline
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}]
    append_jsonl(path, {"a": 3})
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}, {"a": 3}]
    # An append after a torn line never glues onto it: the torn line becomes a reported bad line.
    torn = tmp_path / "t.jsonl"
    torn.write_text('{"a": 1}\n{"a": ')
    append_jsonl(torn, {"a": 3})
    with pytest.raises(JsonlError, match=r"t.jsonl:2: not valid JSON"):
        read_jsonl(torn)


def test_missing_file(tmp_path):
    assert read_jsonl(tmp_path / "none.jsonl", missing_ok=True) == []
    with pytest.raises(JsonlError, match="none.jsonl: no such file"):
        read_jsonl(tmp_path / "none.jsonl")


def test_prepare_output_policy_in_one_wording(tmp_path):
    out = tmp_path / "run"
    assert prepare_output(out) is False  # missing: fine
    out.mkdir()
    assert prepare_output(out) is False  # empty: fine
    (out / "x.json").write_text(json.dumps({}))
    with pytest.raises(OutputExistsError) as info:
        prepare_output(out, resume=False)
    assert str(info.value) == f"{out} already exists; pass --overwrite to replace it or --resume to continue it"
    with pytest.raises(OutputExistsError) as info:
        prepare_output(out)  # a command that cannot resume does not offer it
    assert str(info.value) == f"{out} already exists; pass --overwrite to replace it"
    assert prepare_output(out, overwrite=True) is True
    assert prepare_output(out, resume=True) is True
    assert (out / "x.json").exists()  # nothing is deleted here
    with pytest.raises(ConfigError, match="--overwrite and --resume: give one or the other"):
        prepare_output(out, overwrite=True, resume=True)


# ---- atomic outputs and what a killed writer leaves


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_writer_killed_inside_atomic_dir_leaves_a_temp_the_next_write_removes(tmp_path, capsys):
    final = tmp_path / "merged"
    script = ("import os, signal, sys; from subjectlm.io import atomic_dir\n"
              "with atomic_dir(sys.argv[1]) as tmp:\n"
              "    (tmp / 'model.safetensors').write_bytes(b'x' * 1000)\n"
              "    os.kill(os.getpid(), signal.SIGKILL)\n")
    done = subprocess.run([sys.executable, "-c", script, str(final)])
    assert done.returncode == -9
    left = [p.name for p in tmp_path.iterdir()]
    assert not final.exists() and len(left) == 1 and left[0].startswith(".merged.tmp-")
    with atomic_dir(final) as tmp:
        (tmp / "model.safetensors").write_text("whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]
    assert (final / "model.safetensors").read_text() == "whole"
    assert "removed 1 temporary file(s)" in capsys.readouterr().err


def test_a_live_writers_temp_is_left_alone(tmp_path):
    final = tmp_path / "out.json"
    mine = temp_sibling(final)  # this process is alive: its temp may be in use
    write_json(final, {"a": 1})
    assert mine.exists() and json.loads(final.read_text()) == {"a": 1}


def test_a_kill_between_the_fallbacks_two_renames_is_finished_next_time(tmp_path, monkeypatch):
    """Without renameat2: the old result was moved aside, the new one (complete) not yet renamed in."""
    from subjectlm import io

    final = tmp_path / "export"
    pid = _dead_pid()
    old = tmp_path / f".export.old-{io._HOST}-{pid}-abc"
    new = tmp_path / f".export.tmp-{io._HOST}-{pid}-def"
    old.mkdir(), new.mkdir()
    (old / "model.gguf").write_text("old"), (new / "model.gguf").write_text("new")
    assert remove_stale_temps(final) == [old]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]
    assert (final / "model.gguf").read_text() == "new"


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_atomic_dir_replaces_an_existing_output_and_leaves_nothing_beside_it(tmp_path, monkeypatch, exchange):
    from subjectlm import io

    if not exchange:
        monkeypatch.setattr(io, "exchange_paths", lambda a, b: False)
    final = tmp_path / "out"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with atomic_dir(final, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert [p.name for p in final.iterdir()] == ["new.txt"]


def test_exchange_is_atomic_where_linux_has_renameat2(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "x").write_text("a"), (b / "x").write_text("b")
    if not exchange_paths(a, b):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available here; the two-rename path is tested above")
    assert (a / "x").read_text() == "b" and (b / "x").read_text() == "a"


def test_atomic_outputs_get_the_mode_a_plain_mkdir_or_open_would_give(tmp_path):
    """mkdtemp/mkstemp make private (0700/0600) temps; a finished output must not stay private."""
    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "merged") as tmp:
            (tmp / "a").write_text("x")
        write_json(tmp_path / "s.json", {})
    finally:
        os.umask(old)
    assert (tmp_path / "merged").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "s.json").stat().st_mode & 0o777 == 0o644
