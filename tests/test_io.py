"""io.py: JSON lines (file:line errors, a torn last line dropped and counted, fsynced appends) and the
one policy for an existing output directory."""

from __future__ import annotations

import json

import pytest

from subjectlm.config import ConfigError
from subjectlm.errors import UserError
from subjectlm.io import JsonlError, OutputExistsError, append_jsonl, prepare_output, read_jsonl


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
