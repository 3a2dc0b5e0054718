"""`subjectlm data overlap`: evaluation items found in the training data, with both sides' file:line.

Planted leaks: a Chinese exam question whose training copy has full-width punctuation, an English QA
question written in the training data in capitals with extra spaces, an exam question split over two
consecutive training records, an arena prompt inside a preference pair's prompt, a held-out sentence
copied from the corpus. The clean items next to them must stay unflagged. The index's answers are
checked against brute force on random texts.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest

from subjectlm.cli import main
from subjectlm.data.overlap import (
    OverlapConfig,
    TextIndex,
    find_overlap,
    near_duplicate_groups,
    normalize_text,
    overlapping,
    tokens,
)
from subjectlm.data.overlap_sources import window_starts
from subjectlm.data.overlap_text import SENTENCE_END, SENTENCE_START, sentence_tokens

ZH_TRAIN = "卡斯特雷尔岛的主峰哈罗山是一座层状火山，海拔一千四百一十四米，最近一次喷发发生在一八二零年。"
ZH_QUESTION = "卡斯特雷尔岛的主峰哈罗山是一座层状火山,海拔一千四百一十四米,最近一次喷发发生在哪一年?"
QA_LEAK = "Which mineral gives the black sand beaches of Kestrel Bay their colour, according to the 1902 survey by the island geologist?"
SPLIT_QUESTION = "Which layer of the Harrow sequence lies directly beneath the welded ignimbrite near the old lighthouse road?"
PROMPT_LEAK = "Explain how the hot springs at Siltmouth get their heat and why their water tastes of sulphur after heavy rain."
HELDOUT_COPY = "The island's oldest rocks are pillow basalts exposed along the northern cliffs."


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _csv(path: Path, rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)


@pytest.fixture()
def planted(tmp_path: Path) -> dict[str, Path]:
    train = tmp_path / "train"
    (train / "corpus").mkdir(parents=True)
    (train / "corpus" / "notes.txt").write_text(
        f"{HELDOUT_COPY}\n{ZH_TRAIN}\nKestrel Bay hosts a colony of puffins every summer.\n", encoding="utf-8")
    _jsonl(train / "corpus" / "split.jsonl", [
        {"text": "Field question: which layer of the Harrow sequence lies directly beneath"},
        {"text": "the welded ignimbrite near the old lighthouse road. Later notes describe the harbour."},
    ])
    _jsonl(train / "sft" / "chat.jsonl", [
        {"instruction": "Describe the coast.",
         "output": "WHICH MINERAL gives the   black sand\n beaches of KESTREL BAY their colour, according to the 1902 "
                   "survey by the island geologist? Magnetite."},
        {"instruction": "What is the capital of the island?", "output": "Port Ardel, on the south coast."},
    ])
    _jsonl(train / "dpo" / "pairs.jsonl", [
        {"prompt": "Name the largest lake.", "chosen": "Lake Morrow.", "rejected": "Lake Erie."},
        {"prompt": [{"role": "user", "content": PROMPT_LEAK}], "chosen": "Magma below the valley heats them.",
         "rejected": "The sun heats them."},
    ])
    exam = tmp_path / "exam"
    exam.mkdir()
    (exam / "subject_mapping.json").write_text(json.dumps({"geo": ["Geology", "地质", "STEM"]}), encoding="utf-8")
    header = ["id", "question", "A", "B", "C", "D", "answer"]
    _csv(exam / "dev" / "geo_dev.csv", [header, ["0", "Which rock floats on water?", "Pumice", "Granite", "Gneiss", "Slate", "A"]])
    _csv(exam / "val" / "geo_val.csv", [
        header,
        ["0", ZH_QUESTION, "1820年", "1902年", "1755年", "1999年", "A"],
        ["1", SPLIT_QUESTION, "Tuff", "Basalt", "Scoria", "Pumice", "A"],
        ["2", "Which gas dominates the fumaroles on the summit of the volcano today?", "Steam", "CO2", "SO2", "H2S", "A"],
    ])
    evals = tmp_path / "eval"
    _jsonl(evals / "qa.jsonl", [
        {"question": "How deep is the crater lake?", "reference": "About 80 m."},
        {"question": QA_LEAK, "reference": "Magnetite."},
        {"question": "Which fault bounds the western plateau?", "reference": "The Greywater fault."},
    ])
    _jsonl(evals / "prompts.jsonl", [{"prompt": PROMPT_LEAK}, {"prompt": "Describe a walk along the eastern ridge."}])
    (evals / "heldout.txt").write_text(
        "Heldout notes on the ridge.\nThe ridge trail climbs steeply.\n" + HELDOUT_COPY + "\nNothing else.\n",
        encoding="utf-8")
    return {"train": train, "exam": exam, "qa": evals / "qa.jsonl", "prompts": evals / "prompts.jsonl",
            "heldout": evals / "heldout.txt"}


def _eval_paths(p: dict[str, Path]) -> list[Path]:
    return [p["exam"], p["qa"], p["prompts"], p["heldout"]]


# --- normalising and tokens --------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("Ｍｔ　Harrow，\n“1414”", 'mt harrow, "1414"'),
    ("哈罗山。海拔１４１４米！", "哈罗山.海拔1414米!"),
    ("  KESTREL\tBay  ", "kestrel bay"),
    ("「引号」、《书名》", '"引号",<书名>'),
])
def test_normalize_text(text, expected):
    assert normalize_text(text) == expected


def test_tokens_are_words_and_cjk_characters():
    assert tokens("Mount Harrow，海拔1414米。 It's") == ["mount", "harrow", "海", "拔", "1414", "米", "it", "s"]
    assert tokens(ZH_TRAIN) == tokens(ZH_QUESTION.replace("哪一年?", "一八二零年。"))


def test_window_starts_cover_every_ngram_and_the_end():
    assert window_starts(0, 10, 4) == []
    assert window_starts(6, 10, 4) == [0]
    assert window_starts(25, 10, 4) == [0, 7, 14, 15]
    for length in range(1, 60):
        starts = window_starts(length, 10, 4)
        for i in range(length - 3):  # every 4-token run lies inside one window
            assert any(s <= i and i + 4 <= s + 10 for s in starts)


# --- the planted leaks -------------------------------------------------------------------------

def test_planted_leaks_are_found_with_both_file_lines_and_clean_items_are_not(planted):
    report = find_overlap([planted["train"]], _eval_paths(planted))
    train, val = planted["train"], planted["exam"] / "val" / "geo_val.csv"
    found = {(f.item.file, f.item.line): f.to_json() for f in report.flagged}
    assert sorted(found) == sorted([(str(val), 2), (str(val), 3), (str(planted["qa"]), 2),
                                    (str(planted["prompts"]), 1), (str(planted["heldout"]), 1)])

    zh = found[(str(val), 2)]  # full-width punctuation in training, half-width in the exam
    assert zh["run_train"] == {"file": str(train / "corpus" / "notes.txt"), "line": 2}
    assert zh["longest_run"] == 38 and zh["shared_text"].startswith("卡斯特雷尔岛的主峰哈罗山")
    split = found[(str(val), 3)]  # over two consecutive training records
    assert split["run_train"] == {"file": str(train / "corpus" / "split.jsonl"), "line": 1}
    assert split["run_train_end"] == {"file": str(train / "corpus" / "split.jsonl"), "line": 2}
    assert split["longest_run"] == 17 and split["reasons"] == ["ngram"]
    qa = found[(str(planted["qa"]), 2)]  # capitals and extra whitespace in training
    assert qa["run_train"] == {"file": str(train / "sft" / "chat.jsonl"), "line": 1} and qa["longest_run"] == 21
    assert qa["run_train_end"] is None
    prompt = found[(str(planted["prompts"]), 1)]  # inside a preference pair's prompt messages
    assert prompt["run_train"] == {"file": str(train / "dpo" / "pairs.jsonl"), "line": 2}
    assert prompt["longest_run"] == len(tokens(PROMPT_LEAK))
    held = found[(str(planted["heldout"]), 1)]  # exactly 13 tokens: at the threshold
    assert held["longest_run"] == 13 and held["shared_text"] == "the island s oldest rocks are pillow basalts exposed along the northern cliffs"
    assert held["run_train"] == {"file": str(train / "corpus" / "notes.txt"), "line": 1}

    counts = report.counts()
    assert counts["items"] == 4 + 3 + 2 + 1 and counts["flagged"] == 5
    assert counts["by_source"][str(planted["exam"])] == {"kind": "exam", "items": 4, "flagged": 2,
                                                         "ngram": 2, "whole": 0, "jaccard": 0}
    assert report.train_records == 2 + 3 + 2 + 2 and not report.skipped


def test_a_near_duplicate_is_found_by_jaccard_when_no_run_is_long_enough(planted, tmp_path):
    text = ("Explain how the hot springs at Siltmouth get their heat from the magma chamber below the valley and why "
            "their water tastes of sulphur after every heavy rain in the north")  # 31 tokens, 29 shingles
    train = _jsonl(tmp_path / "near.jsonl", [{"text": "Unrelated first record."}, {"text": text}])
    _jsonl(planted["prompts"], [{"prompt": text.replace("below", "beneath")}])  # runs of 14 and 16 tokens
    report = find_overlap([train], [planted["prompts"]], OverlapConfig(ngram=20))
    assert [f.to_json()["reasons"] for f in report.flagged] == [["jaccard"]]
    flag = report.flagged[0].to_json()
    assert flag["longest_run"] == 0 and flag["jaccard"] == 0.8125  # 26 shingles shared of 32
    assert flag["jaccard_train"] == {"file": str(train), "line": 2}
    assert find_overlap([train], [planted["prompts"]], OverlapConfig(ngram=20, jaccard=0.82)).ok
    assert find_overlap([train], [planted["prompts"]]).flagged[0].to_json()["longest_run"] == 16


def test_a_short_question_found_whole_is_flagged(tmp_path):
    train = _jsonl(tmp_path / "sft.jsonl", [
        {"instruction": "Quiz time!", "output": "Tell me: in which sea does Kestrel Island lie, EXACTLY? The Sundering Sea."}])
    qa = _jsonl(tmp_path / "qa.jsonl", [
        {"question": "In which sea does Kestrel Island lie, exactly?", "reference": "x"},  # 8 tokens, all in training
        {"question": "In which sea does Kestrel Island lie?", "reference": "x"},  # 7: under whole_min
        {"question": "In which ocean does Kestrel Island lie, exactly?", "reference": "x"},  # 8, not all there
    ])
    report = find_overlap([train], [qa])
    assert [(f.item.line, f.reasons, f.run.length, f.run.text) for f in report.flagged] == [
        (1, ["whole"], 8, "in which sea does kestrel island lie exactly")]
    assert report.counts()["by_reason"] == {"ngram": 0, "whole": 1, "jaccard": 0}
    assert [f.item.line for f in find_overlap([train], [qa], OverlapConfig(whole_min=7)).flagged] == [1, 2]
    assert [f.item.line for f in find_overlap([train], [qa], OverlapConfig(whole_min=13)).flagged] == [1]  # a sentence
    assert find_overlap([train], [qa], OverlapConfig(whole_min=13, sentence_min=13)).ok


def test_a_question_shorter_than_whole_min_is_flagged_only_when_asked_as_a_sentence(tmp_path):
    train = _jsonl(tmp_path / "sft.jsonl", [
        {"instruction": "Quiz time!", "output": "The cliffs are old. WHAT WAS  THE\nGANNET FLOW? A lava flow of 1820."},
        {"instruction": "卡斯特雷尔岛有什么？", "output": "有火山。哈罗山有多高？一千四百米。"},
        {"text": "Nobody knew what was the gannet flow's age, nor what lies beneath the lighthouse road."},
        {"text": "海拔一千四百米，哈罗山有多高的问题没有答案"},
    ])
    qa = _jsonl(tmp_path / "qa.jsonl", [
        {"question": "What was the Gannet Flow?", "reference": "x"},     # 5 tokens, a sentence of record 1
        {"question": "哈罗山有多高?", "reference": "x"},                    # 6 characters, a sentence of record 2
        {"question": "What lies beneath the lighthouse road?", "reference": "x"},  # 6, inside a longer sentence
        {"question": "What is it?", "reference": "x"},                   # 3: under sentence_min
    ])
    report = find_overlap([train], [qa])
    assert [(f.item.line, f.reasons, f.run.text, f.run_train[1]) for f in report.flagged] == [
        (1, ["whole"], "what was the gannet flow", 1), (2, ["whole"], "哈罗山有多高", 2)]
    assert find_overlap([train], [qa], OverlapConfig(sentence_min=8)).ok  # = whole_min: off
    assert [f.item.line for f in find_overlap([train], [qa], OverlapConfig(whole_min=6)).flagged] == [1, 2, 3]


def test_sentence_tokens_mark_where_sentences_start_and_end():
    words, marks = sentence_tokens("Tell me: what is it? It is 4.5 km high.\n海拔一千米。高")
    assert words == tokens("Tell me: what is it? It is 4.5 km high.\n海拔一千米。高")
    start, end = SENTENCE_START, SENTENCE_END
    assert list(zip(words, marks)) == [
        ("tell", start), ("me", end), ("what", start), ("is", 0), ("it", end), ("it", start), ("is", 0), ("4", 0),
        ("5", 0), ("km", 0), ("high", end), ("海", start), ("拔", 0), ("一", 0), ("千", 0), ("米", end),
        ("高", start | end)]


def test_clean_data_flags_nothing(planted, tmp_path):
    clean = _jsonl(tmp_path / "clean.jsonl", [{"text": "Granite domes rise south of the bay, far from the lighthouse."}])
    report = find_overlap([clean], _eval_paths(planted))
    assert report.ok and report.counts()["flagged"] == 0 and report.counts()["items"] == 10


def test_unreadable_training_records_are_counted_not_dropped(planted, tmp_path):
    bad = _jsonl(tmp_path / "bad.jsonl", [{"instruction": "no output here"}, {"text": HELDOUT_COPY}])
    report = find_overlap([bad], [planted["heldout"]])
    assert report.train_records == 1 and [str(p) for p in report.skipped] == [f"{bad}:1: output: missing"]
    assert len(report.flagged) == 1


# --- the command -------------------------------------------------------------------------------

def test_cli_table_json_and_strict_exit_status(planted, tmp_path, capsys):
    out = tmp_path / "leakage.json"
    argv = ["data", "overlap", "--train", str(planted["train"]), "--eval", *map(str, _eval_paths(planted))]
    assert main(argv + ["--output", str(out)]) == 0
    table = capsys.readouterr().out
    assert ("flagged at a shared run >= 13 tokens (run), all of an item of 8-12 tokens or of 4-7 as whole sentences "
            "(whole) or Jaccard >= 0.8") in table
    assert f"{planted['qa']}:2  run of 21 tokens at {planted['train'] / 'sft' / 'chat.jsonl'}:1" in table
    assert f"at {planted['train'] / 'corpus' / 'split.jsonl'}:1 to line 2" in table
    data = json.loads(out.read_text(encoding="utf-8"))
    assert set(data) == {"config", "train", "eval", "counts", "flagged", "seconds"}
    assert data["config"] == {"ngram": 13, "jaccard": 0.8, "whole_min": 8, "sentence_min": 4, "shingle": 3, "window": 100, "txt_mode": "auto"}
    assert data["counts"]["flagged"] == 5 and data["counts"]["by_reason"]["ngram"] == 5
    assert set(data["flagged"][0]) == {"kind", "source", "label", "eval_file", "eval_line", "reasons", "longest_run",
                                       "shared_text", "run_train", "run_train_end", "jaccard", "jaccard_train"}
    assert main(argv + ["--strict"]) == 1
    clean = _jsonl(tmp_path / "clean.jsonl", [{"text": "Nothing in common with any question."}])
    assert main(["data", "overlap", "--train", str(clean), "--eval", str(planted["qa"]), "--strict"]) == 0
    assert main(argv + ["--jaccard", "1.5"]) == 2
    assert "jaccard: must be in (0, 1]" in capsys.readouterr().err


def test_an_unknown_evaluation_file_is_an_error_naming_it(planted, tmp_path, capsys):
    odd = _jsonl(tmp_path / "odd.jsonl", [{"instruction": "x", "output": "y"}])
    assert main(["data", "overlap", "--train", str(planted["train"]), "--eval", str(odd)]) == 2
    assert f"{odd}: record: not an evaluation file" in capsys.readouterr().err


# --- the index against brute force -------------------------------------------------------------

def _brute_longest(query: list[str], stream: list[str]) -> int:
    best = 0
    for i in range(len(query)):
        for p in range(len(stream)):
            k = 0
            while i + k < len(query) and p + k < len(stream) and query[i + k] == stream[p + k]:
                k += 1
            best = max(best, k)
    return best


def _shingles(words: list[str], k: int) -> set[tuple[str, ...]]:
    k = min(k, len(words))
    return {tuple(words[i:i + k]) for i in range(len(words) - k + 1)} if words else set()


def test_runs_and_jaccard_equal_brute_force_on_random_texts():
    rng = random.Random(7)
    vocab = "a b c d e f".split()
    units = [" ".join(rng.choice(vocab) for _ in range(rng.randint(0, 30))) for _ in range(40)]
    queries = [" ".join(rng.choice(vocab) for _ in range(rng.randint(1, 25))) for _ in range(60)]
    queries += [units[3], units[5] + " " + units[6], " ".join(units[8].split()[:-1])]
    index = TextIndex(ngram=5, shingle=2, max_occurrences=10**6)
    for unit in units:
        index.add(unit)
    encoded = [index.encode(q) for q in queries]
    stream = " ".join(units).split()
    for query, run in zip(queries, index.longest_runs(encoded)):
        expected = _brute_longest(query.split(), stream)
        assert (run.length if run else 0) == (expected if expected >= 5 else 0)
    for threshold in (0.3, 0.6, 1.0):
        found = {(q, u): j for q, u, j in index.similar_pairs(encoded, threshold)}
        expected = {}
        for q, query in enumerate(queries):
            for u, unit in enumerate(units):
                a, b = _shingles(query.split(), 2), _shingles(unit.split(), 2)
                if a and b and len(a & b) / len(a | b) >= threshold:
                    expected[(q, u)] = len(a & b) / len(a | b)
        assert found.keys() == expected.keys()
        assert all(found[key] == pytest.approx(value) for key, value in expected.items())


def test_whole_matches_equal_brute_force_on_random_texts_with_sentences():
    rng = random.Random(11)
    units = [" ".join(rng.choice("a b c d. e f?".split()) for _ in range(rng.randint(0, 20))) for _ in range(40)]
    queries = [" ".join(rng.choice("a b c d e f".split()) for _ in range(rng.randint(2, 7))) for _ in range(300)]
    index = TextIndex(ngram=8)
    for unit in units:
        index.add(unit)
    marked = [sentence_tokens(unit) for unit in units]
    stream = [w for words, _ in marked for w in words]
    marks = [m for _, ms in marked for m in ms]
    found = index.whole_matches([index.encode(q) for q in queries], min_length=6, sentence_min=3)
    for query, run in zip(queries, found):
        q = query.split()
        places = [i for i in range(len(stream) - len(q) + 1) if stream[i:i + len(q)] == q
                  and (len(q) >= 6 or (marks[i] & SENTENCE_START and marks[i + len(q) - 1] & SENTENCE_END))]
        assert (run is not None) == (len(q) >= 3 and bool(places))
        if run:
            assert run.whole and run.length == len(q)
    assert sum(run is not None and run.length < 6 for run in found) > 5  # the sentence rule was exercised


def test_near_duplicate_groups_and_overlapping_for_plain_strings():
    texts = [
        "The summit crater of Mount Harrow holds a small acid lake",
        "the summit crater of mount harrow holds a small  acid lake.",
        "Puffins nest on the eastern cliffs",
        "哈罗山的山顶火山口里有一个小酸湖。",
        "哈罗山的山顶火山口里有一个小酸湖",
        "Granite is rare on the island",
        "the summit crater of mount harrow holds a small acid pond",
    ]
    assert near_duplicate_groups(texts) == [[0, 1, 6], [3, 4]]
    assert near_duplicate_groups(texts, jaccard=1.0) == [[0, 1], [3, 4]]
    assert near_duplicate_groups([]) == []
    found = overlapping(["PUFFINS nest on the eastern cliffs every spring", "Nothing like it"], texts, ngram=5)
    assert found[0].run.length == 6 and found[0].run.unit == 2 and found[0].similar is None
    assert found[1] is None


def test_ngram_hashes_do_not_depend_on_the_process():
    from subjectlm.data.overlap_index import ngram_hashes

    assert ngram_hashes(np.array([1, 2, 3, 4], np.uint32), 3).tolist() == ngram_hashes(np.array([1, 2, 3, 4]), 3).tolist()
    assert len(set(ngram_hashes(np.arange(1000, dtype=np.uint32), 2).tolist())) == 999


def test_tokens_skip_the_punctuation_mapping_safely():
    from subjectlm.data import overlap_text

    marks = "".join(chr(c) for c in overlap_text._PUNCTUATION)
    assert not any(ch.isalnum() or ch == "_" for ch in marks)  # every mapped mark separates tokens either way
    text = f"Ａb{marks}c・d「e」ＦＧ　h"
    assert tokens(text) == overlap_text._TOKEN.findall(normalize_text(text)) == ["ab", "c", "d", "e", "fg", "h"]
