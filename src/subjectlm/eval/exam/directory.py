"""Reading exam directories (C-Eval, CMMLU, MMLU layouts) into `ExamDoc`s.

Layouts, as each benchmark's repository ships them:

    ceval  DIR/{dev,val,test}/{subject}_{split}.csv  header id,question,A,B,C,D[,answer[,explanation]]
           DIR/subject_mapping.json: {subject: [English name, Chinese name, category]}
           (or beside DIR: the old scripts' data/{dev,val,test} + ./subject_mapping.json)
    cmmlu  DIR/{dev,test}/{subject}.csv              header ,Question,A,B,C,D,Answer
    mmlu   DIR/{dev,val,test}/{subject}_{split}.csv  no header: question,A,B,C,D,answer

Shots are the first N rows of the dev split, in file order (never sampled), so a
run is reproducible.

`check_exam` finds everything wrong with an exam directory before a model is loaded, each as
`file:LINE: column: problem` with the CSV's physical line (a quoted newline makes a row span
lines): empty or unknown answer letters, missing option columns, short rows, repeated ids
(errors); subjects the mapping does not name, a UTF-8 BOM, empty options (warnings).
`subjectlm data check --kind exam DIR` prints it; `eval exam` runs it first and refuses errors.
`scan_docs` (here) reads one file and finds its problems; `check_exam` (check.py) a directory.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from subjectlm.data.errors import Problem
from subjectlm.data.readers import guess_encoding
from subjectlm.errors import UserError
from subjectlm.eval.exam.prompts import LETTERS, ExamDoc

CATEGORIES = ("STEM", "Social Science", "Humanities", "Other")

# C-Eval Hard: the eight hardest STEM subjects (C-Eval paper, section 2.4).
CEVAL_HARD = frozenset({
    "advanced_mathematics", "discrete_mathematics", "probability_and_statistics", "college_chemistry",
    "college_physics", "high_school_mathematics", "high_school_chemistry", "high_school_physics",
})

# CMMLU subject -> (Chinese name used in the prompt, category). Source: haonan-li/CMMLU
# src/categories.py (name_en2zh; category = that of the first subcategory).
# The "China specific" tag is a second category there; it is kept in CMMLU_CHINA_SPECIFIC.
CMMLU_SUBJECTS: dict[str, tuple[str, str]] = {
    "agronomy": ("农学", "Other"), "anatomy": ("解剖学", "STEM"), "ancient_chinese": ("古汉语", "Social Science"),
    "arts": ("艺术学", "Humanities"), "astronomy": ("天文学", "STEM"), "business_ethics": ("商业伦理", "Social Science"),
    "chinese_civil_service_exam": ("中国公务员考试", "Social Science"), "chinese_driving_rule": ("中国驾驶规则", "Other"),
    "chinese_food_culture": ("中国饮食文化", "Social Science"), "chinese_foreign_policy": ("中国外交政策", "Social Science"),
    "chinese_history": ("中国历史", "Humanities"), "chinese_literature": ("中国文学", "Humanities"),
    "chinese_teacher_qualification": ("中国教师资格", "Social Science"), "clinical_knowledge": ("临床知识", "Other"),
    "college_actuarial_science": ("大学精算学", "STEM"), "college_education": ("大学教育学", "Social Science"),
    "college_engineering_hydrology": ("大学工程水文学", "STEM"), "college_law": ("大学法律", "Humanities"),
    "college_mathematics": ("大学数学", "STEM"), "college_medical_statistics": ("大学医学统计", "STEM"),
    "college_medicine": ("大学医学", "Other"), "computer_science": ("计算机科学", "STEM"),
    "computer_security": ("计算机安全", "Other"), "conceptual_physics": ("概念物理学", "STEM"),
    "construction_project_management": ("建设工程管理", "Other"), "economics": ("经济学", "Social Science"),
    "education": ("教育学", "Social Science"), "electrical_engineering": ("电气工程", "STEM"),
    "elementary_chinese": ("小学语文", "Social Science"), "elementary_commonsense": ("小学常识", "Other"),
    "elementary_information_and_technology": ("小学信息技术", "Other"), "elementary_mathematics": ("初等数学", "STEM"),
    "ethnology": ("民族学", "Social Science"), "food_science": ("食品科学", "Other"), "genetics": ("遗传学", "STEM"),
    "global_facts": ("全球事实", "Humanities"), "high_school_biology": ("高中生物", "STEM"),
    "high_school_chemistry": ("高中化学", "STEM"), "high_school_geography": ("高中地理", "Social Science"),
    "high_school_mathematics": ("高中数学", "STEM"), "high_school_physics": ("高中物理学", "STEM"),
    "high_school_politics": ("高中政治", "Social Science"), "human_sexuality": ("人类性行为", "Other"),
    "international_law": ("国际法学", "Humanities"), "journalism": ("新闻学", "Social Science"),
    "jurisprudence": ("法理学", "Humanities"), "legal_and_moral_basis": ("法律与道德基础", "Other"),
    "logical": ("逻辑学", "Humanities"), "machine_learning": ("机器学习", "STEM"), "management": ("管理学", "Social Science"),
    "marketing": ("市场营销", "Social Science"), "marxist_theory": ("马克思主义理论", "Humanities"),
    "modern_chinese": ("现代汉语", "Social Science"), "nutrition": ("营养学", "Other"), "philosophy": ("哲学", "Humanities"),
    "professional_accounting": ("专业会计", "Social Science"), "professional_law": ("专业法学", "Humanities"),
    "professional_medicine": ("专业医学", "Other"), "professional_psychology": ("专业心理学", "Social Science"),
    "public_relations": ("公共关系", "Social Science"), "security_study": ("安全研究", "Social Science"),
    "sociology": ("社会学", "Social Science"), "sports_science": ("体育学", "Other"),
    "traditional_chinese_medicine": ("中医中药", "Other"), "virology": ("病毒学", "STEM"),
    "world_history": ("世界历史", "Humanities"), "world_religions": ("世界宗教", "Humanities"),
}
CMMLU_CHINA_SPECIFIC = frozenset({
    "ancient_chinese", "chinese_civil_service_exam", "chinese_driving_rule", "chinese_food_culture",
    "chinese_foreign_policy", "chinese_history", "chinese_literature", "chinese_teacher_qualification",
    "construction_project_management", "elementary_chinese", "elementary_commonsense", "ethnology",
    "high_school_politics", "modern_chinese", "traditional_chinese_medicine",
})

# MMLU subject -> category, following the subcategory grouping of hendrycks/test
# (math/physics/chemistry/biology/CS/engineering -> STEM; history/philosophy/law ->
# Humanities; politics/culture/economics/geography/psychology -> Social Science;
# health/business/other -> Other).
_MMLU = {
    "STEM": "abstract_algebra astronomy college_biology college_chemistry college_computer_science "
            "college_mathematics college_physics computer_security conceptual_physics electrical_engineering "
            "elementary_mathematics high_school_biology high_school_chemistry high_school_computer_science "
            "high_school_mathematics high_school_physics high_school_statistics machine_learning",
    "Humanities": "formal_logic high_school_european_history high_school_us_history high_school_world_history "
                  "international_law jurisprudence logical_fallacies moral_disputes moral_scenarios philosophy "
                  "prehistory professional_law world_religions",
    "Social Science": "econometrics high_school_geography high_school_government_and_politics "
                      "high_school_macroeconomics high_school_microeconomics high_school_psychology human_sexuality "
                      "professional_psychology public_relations security_studies sociology us_foreign_policy",
    "Other": "anatomy business_ethics clinical_knowledge college_medicine global_facts human_aging management "
             "marketing medical_genetics miscellaneous nutrition professional_accounting professional_medicine virology",
}
MMLU_CATEGORIES: dict[str, str] = {s: cat for cat, names in _MMLU.items() for s in names.split()}

SPLITS = ("dev", "val", "test")


class ExamError(UserError, ValueError):
    """A missing or malformed exam file; the message names the file."""


@dataclass(frozen=True)
class SubjectInfo:
    handle: str    # file-name stem, e.g. computer_network
    name: str      # what the prompt calls it, e.g. 计算机网络
    category: str  # one of CATEGORIES
    hard: bool = False


@dataclass
class SubjectExam:
    info: SubjectInfo
    dev: list[ExamDoc] = field(default_factory=list)   # shots come from here
    docs: list[ExamDoc] = field(default_factory=list)  # the questions of the chosen split


def detect_format(data_dir: Path) -> str:
    if (data_dir / "subject_mapping.json").is_file():
        return "ceval"
    names = [p.name for p in (data_dir / "dev").glob("*.csv")] if (data_dir / "dev").is_dir() else []
    if not names:
        raise ExamError(f"{data_dir}: no dev/*.csv files: not an exam directory in the C-Eval, CMMLU or MMLU layout")
    if all(n.endswith("_dev.csv") for n in names):
        with open(data_dir / "dev" / names[0], encoding="utf-8-sig", newline="") as handle:
            first = next(csv.reader(handle), [])
        return "ceval" if first[:2] == ["id", "question"] else "mmlu"
    return "cmmlu"


def csv_path(data_dir: Path, fmt: str, split: str, subject: str) -> Path:
    return data_dir / split / (f"{subject}.csv" if fmt == "cmmlu" else f"{subject}_{split}.csv")


def list_subjects(data_dir: Path, fmt: str, split: str) -> list[str]:
    folder = data_dir / split
    if not folder.is_dir():
        raise ExamError(f"{folder}: no such split directory (splits here: "
                        f"{', '.join(s for s in SPLITS if (data_dir / s).is_dir()) or 'none'})")
    suffix = ".csv" if fmt == "cmmlu" else f"_{split}.csv"
    return sorted(p.name[: -len(suffix)] for p in folder.glob(f"*{suffix}"))


def _csv_rows(text: str) -> Iterator[tuple[int, list[str]]]:
    """(physical line the row starts on, cells) for each CSV row."""
    reader = csv.reader(io.StringIO(text, newline=""))
    start = 1
    for row in reader:
        yield start, row
        start = reader.line_num + 1


def _decode(path: Path, problems: list[Problem]) -> str | None:
    file = str(path)
    data = path.read_bytes()
    if data.startswith(codecs.BOM_UTF8):
        problems.append(Problem(file, 1, "file", "starts with a UTF-8 byte-order mark (BOM): read without it", warning=True))
        data = data[len(codecs.BOM_UTF8):]
    if not data.strip():
        problems.append(Problem(file, None, "file", "empty file (0 bytes): no questions" if not data
                                else "only whitespace: no questions"))
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        problems.append(Problem(file, line, "file", f"not UTF-8 (byte 0x{data[exc.start]:02x}); it looks like "
                                f"{guess_encoding(data)}: convert the file to UTF-8"))
        return None


def scan_docs(path: Path, fmt: str, subject: str, split: str = "val") -> tuple[list[ExamDoc], list[Problem]]:
    """One file's rows as documents, and every problem found in it (errors and warnings)."""
    file = str(path)
    problems: list[Problem] = []
    text = _decode(path, problems)
    if text is None:
        return [], problems
    try:
        rows = list(_csv_rows(text))
    except csv.Error as exc:
        return [], problems + [Problem(file, None, "file", f"not readable as CSV: {exc}")]
    if fmt != "mmlu":
        header = rows[0][1] if rows else []
        head = [h.strip().lower() for h in header]
        rows = rows[1:]
    else:
        head = ["question", "a", "b", "c", "d", "answer"]
        header = ["question", "A", "B", "C", "D", "answer"]
    if fmt == "cmmlu" and head:
        head[0] = "id"
    missing = [k for k in ("question", "a", "b", "c", "d") if k not in head]
    if missing:
        for key in missing:
            problems.append(Problem(file, 1, key.upper() if len(key) == 1 else key,
                                    f"column missing from the header ({','.join(header)})"))
        return [], problems
    letters = LETTERS[:4]
    docs: list[ExamDoc] = []
    ids: dict[str, int] = {}
    for line, row in rows:
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) != len(head):
            problems.append(Problem(file, line, "row", f"{len(row)} columns, expected {len(head)} ({','.join(header)}); "
                                    "a comma inside a cell needs quotes"))
            continue
        rec = dict(zip(head, row))
        bad = len(problems)
        if not rec["question"].strip():
            problems.append(Problem(file, line, "question", "empty"))
        for key in ("a", "b", "c", "d"):
            if not rec[key].strip():
                problems.append(Problem(file, line, key.upper(), "empty option", warning=True))
        answer = None
        if "answer" in head:
            answer = rec["answer"].strip().upper() or None
            if answer is None:
                problems.append(Problem(file, line, "answer", f"empty: every question needs its letter ({', '.join(letters)})"))
            elif answer not in letters:
                problems.append(Problem(file, line, "answer", f"{rec['answer'].strip()!r} is not one of {', '.join(letters)}"))
        doc_id = str(rec.get("id", len(docs))).strip() or str(len(docs))
        if doc_id in ids:
            problems.append(Problem(file, line, "id", f"{doc_id!r} is also used on line {ids[doc_id]} "
                                    "(answers are kept by id: resume and compare would mix them up)"))
        ids.setdefault(doc_id, line)
        if any(not p.warning for p in problems[bad:]):
            continue
        docs.append(ExamDoc(subject=subject, id=doc_id, question=rec["question"],
                            options=tuple(rec[k] for k in ("a", "b", "c", "d")), answer=answer,
                            explanation=rec.get("explanation") or None))
    if not docs and not any(not p.warning for p in problems):
        problems.append(Problem(file, None, "file", "no questions (a header and nothing else)",
                                warning=split == "dev"))
    return docs, problems


def read_docs(path: Path, fmt: str, subject: str) -> list[ExamDoc]:
    """One file's rows as documents; a bad row is an error naming file and line."""
    if not path.is_file():
        raise ExamError(f"{path}: file not found")
    docs, problems = scan_docs(path, fmt, subject, split="dev")
    errors = [p for p in problems if not p.warning]
    if errors:
        raise ExamError("\n".join(str(p) for p in errors))
    return docs


def subject_info(data_dir: Path, fmt: str, subject: str, mapping: dict | None) -> SubjectInfo:
    if fmt == "ceval":
        entry = (mapping or {}).get(subject)
        name, category = (entry[1], entry[2]) if entry else (subject.replace("_", " "), "Other")
        return SubjectInfo(subject, name, category, hard=subject in CEVAL_HARD)
    if fmt == "cmmlu":
        name, category = CMMLU_SUBJECTS.get(subject, (subject.replace("_", " "), "Other"))
        return SubjectInfo(subject, name, category)
    # MMLU's prompt names the subject in words: "about high school physics."
    return SubjectInfo(subject, subject.replace("_", " "), MMLU_CATEGORIES.get(subject, "Other"))


def read_mapping(data_dir: Path) -> dict | None:
    """C-Eval's subject_mapping.json: in the exam directory, or beside it where Chinese-LLaMA-Alpaca-3's
    scripts kept it (`unzip ceval-exam.zip -d data` next to ./subject_mapping.json)."""
    for folder in (data_dir, data_dir.parent):
        if (folder / "subject_mapping.json").is_file():
            return json.loads((folder / "subject_mapping.json").read_text(encoding="utf-8"))
    return None


def read_exam(data_dir: str | Path, fmt: str = "auto", split: str = "val",
              subjects: list[str] | None = None) -> tuple[str, list[SubjectExam]]:
    """The chosen subjects (all of the split when None) with their dev shots and questions."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ExamError(f"{data_dir}: exam directory not found")
    if fmt == "auto":
        fmt = detect_format(data_dir)
    if fmt == "cmmlu" and split == "val":
        split = "test"  # CMMLU ships dev and test only; its test split carries answers
    mapping = read_mapping(data_dir)
    available = list_subjects(data_dir, fmt, split)
    chosen = subjects or available
    unknown = [s for s in chosen if s not in available]
    if unknown:
        raise ExamError(f"subjects: {', '.join(unknown)} not in {data_dir / split} "
                        f"(available: {', '.join(available[:8])}{', ...' if len(available) > 8 else ''})")
    exams = []
    for subject in chosen:
        dev_path = csv_path(data_dir, fmt, "dev", subject)
        dev = read_docs(dev_path, fmt, subject) if dev_path.is_file() else []
        exams.append(SubjectExam(subject_info(data_dir, fmt, subject, mapping), dev,
                                 read_docs(csv_path(data_dir, fmt, split, subject), fmt, subject)))
    return fmt, exams

