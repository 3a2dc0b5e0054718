"""The data layer: every format read and normalized, every bad-input kind reported as file:line: field."""

from __future__ import annotations

import json

import pytest

from conftest import SEED_DIR
from subjectlm.data import DataError, load_dpo, load_pt, load_sft
from subjectlm.data.check import check


def write(tmp_path, name, content, mode="w"):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def test_alpaca_array_with_input_system_history(tmp_path):
    records = [
        {"instruction": "Name the rock.", "input": "It is black and glassy.", "output": "Obsidian.", "system": "Be brief."},
        {"instruction": "And its origin?", "output": "Volcanic.", "history": [["Name the rock.", "Obsidian."]]},
    ]
    path = write(tmp_path, "a.json", json.dumps(records, indent=2))
    loaded = load_sft([path])
    assert [c.messages for c in loaded.items] == [
        [{"role": "system", "content": "Be brief."},
         {"role": "user", "content": "Name the rock.\nIt is black and glassy."},
         {"role": "assistant", "content": "Obsidian."}],
        [{"role": "user", "content": "Name the rock."}, {"role": "assistant", "content": "Obsidian."},
         {"role": "user", "content": "And its origin?"}, {"role": "assistant", "content": "Volcanic."}],
    ]
    # JSON array elements know the line they start on.
    assert [c.source for c in loaded.items] == [f"{path}:2", f"{path}:8"]


def test_sharegpt_and_messages_jsonl(tmp_path):
    lines = [
        {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"},
                           {"from": "human", "value": "more"}, {"from": "gpt", "value": "sure"}], "system": "S"},
        {"messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
    ]
    sharegpt = write(tmp_path, "c.jsonl", json.dumps(lines[0]) + "\n")
    messages = write(tmp_path, "m.jsonl", json.dumps(lines[1]) + "\n")
    items = load_sft([sharegpt, messages]).items
    assert items[0].messages[0] == {"role": "system", "content": "S"}
    assert [m["role"] for m in items[0].messages] == ["system", "user", "assistant", "user", "assistant"]
    assert items[1].messages[1:] == [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]


def test_pt_formats_and_directory(tmp_path):
    write(tmp_path, "lines.txt", "first doc\nsecond doc\n\n")
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub", "paras.txt", "para one\nstill one\n\npara two\n")
    write(tmp_path, "t.jsonl", '{"text": "json doc"}\n')
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["pq one", "pq two"]}), tmp_path / "d.parquet")
    docs = load_pt([tmp_path]).items
    assert docs == ["pq one", "pq two", "first doc", "second doc", "para one\nstill one", "para two", "json doc"]
    assert load_pt([tmp_path / "sub" / "paras.txt"], txt_mode="line").items == ["para one", "still one", "para two"]


def test_preference_strings_and_message_lists(tmp_path):
    lines = [
        {"prompt": "Which is harder?", "chosen": "Quartz.", "rejected": "Talc."},
        {"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "good"}],
         "rejected": [{"role": "assistant", "content": "bad"}], "system": "sys"},
    ]
    path = write(tmp_path, "p.jsonl", "\n".join(json.dumps(record) for record in lines))
    pairs = load_dpo([path]).items
    assert pairs[0].prompt == [{"role": "user", "content": "Which is harder?"}]
    assert (pairs[1].prompt[0], pairs[1].chosen, pairs[1].rejected) == ({"role": "system", "content": "sys"}, "good", "bad")


BAD_CASES = [
    # (file name, content, kind, expected message fragment)
    ("trunc.jsonl", '{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": "d"\n', "sft",
     "trunc.jsonl:2: record: truncated JSON"),
    ("trunc.json", '[\n {"instruction": "a", "output": "b"},\n {"instruction": "c", "out', "sft",
     "trunc.json:3: record 1: truncated JSON"),
    ("gbk.jsonl", '{"instruction": "中文问题", "output": "回答"}\n'.encode("gbk"), "sft", "gbk.jsonl:1: file: not UTF-8 (byte 0xd6); it looks like GBK/GB18030"),
    ("utf16.jsonl", '{"instruction": "a", "output": "b"}\n'.encode("utf-16"), "sft", "utf16.jsonl:1: file: file is UTF-16"),
    ("missing.jsonl", '{"instruction": "a"}\n', "sft", "missing.jsonl:1: output: missing"),
    ("empty.jsonl", '{"instruction": "  ", "output": "b"}\n', "sft", "empty.jsonl:1: instruction: empty"),
    ("type.jsonl", '{"instruction": "a", "output": 5}\n', "sft", "type.jsonl:1: output: expected a string, got int"),
    ("role.jsonl", '{"conversations": [{"from": "human", "value": "a"}, {"from": "robot", "value": "b"}]}\n', "sft",
     "role.jsonl:1: conversations[1].from: unknown role 'robot'"),
    ("order.jsonl", '{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}\n', "sft",
     "order.jsonl:1: messages[1]: expected an assistant turn here, got user"),
    ("unknown.jsonl", '{"question": "a"}\n', "sft", "unknown.jsonl:1: record: unknown format"),
    ("notobj.jsonl", '[1, 2]\n', "sft", "notobj.jsonl:1: record: expected a JSON object, got list"),
    ("pt.jsonl", '{"txt": "a"}\n', "pt", "pt.jsonl:1: text: missing"),
    ("dpo.jsonl", '{"prompt": "p", "chosen": "a"}\n', "dpo", "dpo.jsonl:1: rejected: missing"),
    ("same.jsonl", '{"prompt": "p", "chosen": "a", "rejected": "a"}\n', "dpo", "same.jsonl:1: rejected: identical to chosen"),
]


@pytest.mark.parametrize("name,content,kind,expected", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_input_names_file_line_field(tmp_path, name, content, kind, expected):
    path = write(tmp_path, name, content)
    report = check(kind, [path])
    assert not report.ok
    messages = [str(p) for p in report.problems]
    assert any(m.startswith(str(tmp_path / expected.split(":")[0])) and expected in m for m in messages), messages


def test_loader_raises_unless_skip_invalid_and_counts_skips(tmp_path):
    path = write(tmp_path, "mixed.jsonl", '{"instruction": "a", "output": "b"}\n{"instruction": "c"}\n{"bad json\n')
    with pytest.raises(DataError) as info:
        load_sft([path])
    assert f"{path}:2: output: missing" in str(info.value)
    assert f"{path}:3: record: truncated JSON" in str(info.value)
    loaded = load_sft([path], skip_invalid=True)
    assert len(loaded.items) == 1 and len(loaded.problems) == 2
    assert loaded.summary() == "1 records from 1 file(s), 2 skipped as invalid"


def test_check_reports_duplicates_lengths_and_too_long(tmp_path):
    path = write(tmp_path, "d.jsonl", "\n".join([
        '{"instruction": "a", "output": "bb"}', '{"instruction": "a", "output": "bb"}', '{"instruction": "long one", "output": "' + "x" * 50 + '"}']))
    report = check("sft", [path], max_length=20)
    assert report.ok and report.records == 3
    assert report.duplicates == [[f"{path}:1", f"{path}:2"]]
    assert report.too_long == [(f"{path}:3", len("long one\n" + "x" * 50))]
    assert report.percentiles()["max"] == 59


def test_cli_data_check_exit_codes(tmp_path, capsys):
    from subjectlm.cli import main

    good = write(tmp_path, "good.jsonl", '{"instruction": "a", "output": "b"}\n')
    bad = write(tmp_path, "bad.jsonl", '{"instruction": "a", "output": "b"}\n{"instruction": "a", "output"\n')
    assert main(["data", "check", "--kind", "sft", str(good)]) == 0
    assert main(["data", "check", "--kind", "sft", str(bad)]) == 1
    assert f"{bad}:2: record: truncated JSON" in capsys.readouterr().out
    assert main(["data", "check", "--kind", "sft", str(tmp_path / "nope.json")]) == 1


@pytest.mark.skipif(not (SEED_DIR / "ruozhiba_qa2449_gpt4o.json").exists(), reason="../shared/seed_data absent")
def test_seed_data_checks_clean(capsys):
    from subjectlm.cli import main

    assert main(["data", "check", "--kind", "sft", str(SEED_DIR / "ruozhiba_qa2449_gpt4o.json")]) == 0
    out = capsys.readouterr().out
    assert "records: 2449 valid, 0 bad" in out
