"""Exam directories in the C-Eval, CMMLU and MMLU layouts become the same documents."""

from __future__ import annotations

import json

import pytest

from conftest import CEVAL_DIR
from subjectlm.eval.exam.directory import (
    CEVAL_HARD,
    CMMLU_SUBJECTS,
    MMLU_CATEGORIES,
    ExamError,
    detect_format,
    read_exam,
)


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_mmlu_layout_headerless(tmp_path):
    _write(tmp_path / "dev" / "high_school_physics_dev.csv", 'What is g?,9.8,10,1,0,A\n"Multi\nline?",a,b,c,d,D\n')
    _write(tmp_path / "test" / "high_school_physics_test.csv", "Speed of light?,3e8,1,2,3,A\n")
    fmt, exams = read_exam(tmp_path, split="test")
    assert fmt == "mmlu"
    (exam,) = exams
    assert exam.info.name == "high school physics" and exam.info.category == "STEM"
    assert exam.dev[1].question == "Multi\nline?" and exam.dev[1].answer == "D"
    assert exam.docs[0].options == ("3e8", "1", "2", "3") and exam.docs[0].id == "0"


def test_cmmlu_layout(tmp_path):
    head = ",Question,A,B,C,D,Answer\n"
    _write(tmp_path / "dev" / "logical.csv", head + "0,问题一,甲,乙,丙,丁,B\n")
    _write(tmp_path / "test" / "logical.csv", head + "0,问题二,甲,乙,丙,丁,C\n1,问题三,甲,乙,丙,丁,A\n")
    assert detect_format(tmp_path) == "cmmlu"
    fmt, exams = read_exam(tmp_path)  # val -> test: CMMLU has no val split
    assert fmt == "cmmlu"
    assert exams[0].info.name == "逻辑学" and exams[0].info.category == "Humanities"
    assert [d.answer for d in exams[0].docs] == ["C", "A"] and exams[0].docs[1].id == "1"


def test_ceval_without_mapping_and_errors(tmp_path):
    _write(tmp_path / "dev" / "x_dev.csv", "id,question,A,B,C,D,answer,explanation\n0,q,a,b,c,d,E,\n")
    _write(tmp_path / "val" / "x_val.csv", "id,question,A,B,C,D,answer\n0,q,a,b,c,d,A\n")
    assert detect_format(tmp_path) == "ceval"
    with pytest.raises(ExamError, match=r"x_dev.csv:2: answer: 'E' is not one of A, B, C, D"):
        read_exam(tmp_path)
    with pytest.raises(ExamError, match="nope not in"):
        read_exam(tmp_path, subjects=["nope"])
    with pytest.raises(ExamError, match="no such split"):
        read_exam(tmp_path, split="test")


def test_tables_cover_the_benchmarks():
    assert len(CMMLU_SUBJECTS) == 67 and len(MMLU_CATEGORIES) == 57 and len(CEVAL_HARD) == 8
    assert set(MMLU_CATEGORIES.values()) == {"STEM", "Humanities", "Social Science", "Other"}


@pytest.mark.skipif(not CEVAL_DIR.is_dir(), reason="../shared/ceval-exam not present")
def test_real_ceval_all_subjects_read():
    mapping = json.loads((CEVAL_DIR / "subject_mapping.json").read_text(encoding="utf-8"))
    for split, with_answers in (("val", True), ("test", False)):
        fmt, exams = read_exam(CEVAL_DIR, split=split)
        assert fmt == "ceval" and len(exams) == 52
        assert all(len(e.dev) == 5 and all(d.explanation for d in e.dev) for e in exams)
        assert all((d.answer is not None) == with_answers for e in exams for d in e.docs)
    assert {e.info.handle for e in exams if e.info.hard} == CEVAL_HARD
    assert all(e.info.category == mapping[e.info.handle][2] for e in exams)
    assert sum(len(e.docs) for e in read_exam(CEVAL_DIR, split="val")[1]) == 1346
