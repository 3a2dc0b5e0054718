"""Hand-made broken inputs (tests/data/, one small file per class): each finding's exact
`file:line: field:` and the exit status (0 ok, 1 findings, warnings count under --strict)."""

from __future__ import annotations

from pathlib import Path

import pytest

from subjectlm.cli import main
from subjectlm.data import DataError, load_pt, load_sft

DATA = Path(__file__).parent / "data"


def _check(capsys, *args: str) -> tuple[int, list[str]]:
    code = main(["data", "check", *args])
    out = capsys.readouterr().out
    return code, [line for line in out.splitlines() if line.startswith(("error: ", "warning: "))]


@pytest.mark.parametrize("name,kind,finding", [
    ("empty.jsonl", "sft", "error: {}: file: empty file (0 bytes): no records"),
    ("empty.txt", "pt", "error: {}: file: empty file (0 bytes): no records"),
    ("whitespace.jsonl", "pt", "error: {}: file: only whitespace: no records"),
    ("empty_array.json", "sft", "error: {}: file: no records in this file"),
    ("surrogate.jsonl", "sft", "error: {}:2: conversations[1].value: cannot be encoded as UTF-8: lone surrogate "
                               "U+D800 at character 6 (a \\u escape of half a surrogate pair)"),
    ("mixed.jsonl", "sft", "error: {}:2: record: sharegpt record in a file whose first record (line 1) is alpaca: "
                           "keep one format per file"),
    ("duplicate_key.jsonl", "sft", "error: {}:2: output: key 'output' appears twice in one object "
                                   "(JSON would keep only the last value)"),
    ("duplicate_key.json", "dpo", "error: {}:3: chosen: key 'chosen' appears twice in one object "
                                  "(JSON would keep only the last value)"),
])
def test_error_classes_exit_1_naming_file_and_line(capsys, name, kind, finding):
    path = DATA / name
    code, findings = _check(capsys, "--kind", kind, str(path))
    assert (code, findings) == (1, [finding.format(path)])


@pytest.mark.parametrize("name,kind,extra,finding", [
    ("bom.jsonl", "pt", [], "warning: {}:1: file: file starts with a UTF-8 byte-order mark (BOM): read without it; "
                            "save the file as UTF-8 without BOM"),
    ("duplicates.jsonl", "sft", [], "warning: {0}:3: record: exact duplicate of {0}:1"),
    ("too_long.txt", "pt", ["--max_length", "20"], "warning: {}:2: record: 57 characters, longer than max_length 20"),
])
def test_warning_classes_exit_0_and_1_under_strict(capsys, name, kind, extra, finding):
    path = DATA / name
    code, findings = _check(capsys, "--kind", kind, str(path), *extra)
    assert (code, findings) == (0, [finding.format(path)])
    code, findings = _check(capsys, "--kind", kind, str(path), *extra, "--strict")
    assert (code, findings) == (1, [finding.format(path).replace("warning: ", "error: ", 1)])


def test_summary_line_counts_warnings(capsys):
    main(["data", "check", "--kind", "sft", str(DATA / "duplicates.jsonl")])
    out = capsys.readouterr().out.splitlines()
    assert "records: 3 valid, 0 bad, 1 warning(s)" in out
    assert out[-1] == "OK with 1 warning(s) (--strict makes them errors)"


def test_loaders_read_a_bom_and_refuse_the_error_classes():
    loaded = load_pt([DATA / "bom.jsonl"])
    assert loaded.items == ["Kestrel Island is volcanic."] and len(loaded.warnings) == 1
    for name in ("empty.jsonl", "surrogate.jsonl", "mixed.jsonl", "duplicate_key.jsonl"):
        with pytest.raises(DataError, match=f"{name}"):
            load_sft([DATA / name])


def test_missing_path_is_a_finding(capsys, tmp_path):
    code, findings = _check(capsys, "--kind", "sft", str(tmp_path / "nope.jsonl"))
    assert (code, findings) == (1, [f"error: {tmp_path / 'nope.jsonl'}: file: no such file or directory"])


# ---- exams ---------------------------------------------------------------------------------

def test_exam_ceval_layout(capsys):
    root = DATA / "exam_ceval"
    code, findings = _check(capsys, "--kind", "exam", str(root))
    assert code == 1
    assert findings == [
        f"warning: {root}/dev/unmapped_dev.csv: subject: 'unmapped' is not in subject_mapping.json: "
        "the prompt calls it 'unmapped' and it counts as Other",
        f"error: {root}/val/bad_letter_val.csv:3: answer: 'E' is not one of A, B, C, D",
        # the question on line 2 spans two lines: the bad row starts on line 4
        f"error: {root}/val/empty_answer_val.csv:4: answer: empty: every question needs its letter (A, B, C, D)",
        f"error: {root}/val/no_option_d_val.csv:1: D: column missing from the header (id,question,A,B,C,answer)",
    ]


def test_exam_cmmlu_and_mmlu_layouts(capsys):
    cmmlu, mmlu = DATA / "exam_cmmlu", DATA / "exam_mmlu"
    code, findings = _check(capsys, "--kind", "exam", str(cmmlu))
    assert code == 1 and findings[1] == (f"error: {cmmlu}/test/geology.csv:3: row: 5 columns, expected 7 "
                                         "(,Question,A,B,C,D,Answer); a comma inside a cell needs quotes")
    code, findings = _check(capsys, "--kind", "exam", str(mmlu))
    assert (code, findings) == (1, [f"error: {mmlu}/test/astronomy_test.csv:4: answer: 'F' is not one of A, B, C, D"])


def test_unmapped_subject_is_only_a_warning(capsys, tmp_path):
    import shutil

    root = tmp_path / "exam"
    shutil.copytree(DATA / "exam_ceval", root)
    for bad in ("empty_answer", "bad_letter", "no_option_d"):
        (root / "val" / f"{bad}_val.csv").unlink()
    code, findings = _check(capsys, "--kind", "exam", str(root))
    assert code == 0 and [f.split(":")[0] for f in findings] == ["warning"]
    assert _check(capsys, "--kind", "exam", str(root), "--strict")[0] == 1


def test_eval_exam_refuses_bad_files_before_loading_a_model(capsys, tmp_path):
    root = DATA / "exam_ceval"
    code = main(["eval", "exam", "--model", str(tmp_path / "no-model-here"), "--data", str(root),
                 "--output_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.splitlines()[0] == f"warning: {root}/dev/unmapped_dev.csv: subject: 'unmapped' is not in " \
                                  "subject_mapping.json: the prompt calls it 'unmapped' and it counts as Other"
    assert f"error: 3 problems in the exam files of {root}:" in err
    assert f"\n  {root}/val/bad_letter_val.csv:3: answer: 'E' is not one of A, B, C, D\n" in err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        f"error: 3 problems in the exam files of {root}:"]
    assert not (tmp_path / "out").exists()


def test_eval_exam_names_an_unknown_subject(capsys, tmp_path):
    root = DATA / "exam_mmlu"
    code = main(["eval", "exam", "--data", str(root), "--split", "test", "--subjects", "astronomy,astrology",
                 "--output_dir", str(tmp_path / "out")])
    assert code == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: 2 problems in the exam files of " + str(root) + ":",
        f"  {root}/test/astronomy_test.csv:4: answer: 'F' is not one of A, B, C, D",
        f"  {root}/test: subjects: 'astrology' has no file here (astrology_test.csv); available: astronomy"]
