"""synth's pure parts: chunking (English and Chinese), prompts as exact strings, the grounding check,
letter balancing, distractor distinctness, the control split."""

from __future__ import annotations

from collections import Counter

import pytest

from subjectlm.config import ConfigError
from subjectlm.synth import prompts
from subjectlm.synth.chunk import Chunk, approximate_tokens, chunk_documents, chunk_text, sections, sentence_spans
from subjectlm.synth.config import SynthConfig
from subjectlm.synth.documents import Document, language, read_documents
from subjectlm.synth.exam import ExamItem, balanced_rows, dev_count, longest_correct_share
from subjectlm.synth.facts import grounded_facts, normalize, quote_in_chunk
from subjectlm.synth.generate import parse_distractors, parse_questions, parse_wrong_answer, rewrite_styles
from subjectlm.synth.synthesize import control_ids

# ---- chunking


def test_sentences_end_at_western_and_chinese_terminators():
    text = "Mount Harrow is 1,486 m high. It erupted in 1783! Did it? Yes.\n\n凯斯特雷尔岛面积212平方公里。它是火山岛！对吗？是的；好。"
    assert [text[s:e] for s, e in sentence_spans(text)] == [
        "Mount Harrow is 1,486 m high.", "It erupted in 1783!", "Did it?", "Yes.",
        "凯斯特雷尔岛面积212平方公里。", "它是火山岛！", "对吗？", "是的；", "好。"]


def test_decimal_points_and_closing_quotes_do_not_split_wrongly():
    text = "The gabbro is 4.2 million years old. He said “it is old.” Then left.\n她说：“很古老。”然后走了。"
    assert [text[s:e] for s, e in sentence_spans(text)] == [
        "The gabbro is 4.2 million years old.", "He said “it is old.”", "Then left.", "她说：“很古老。”", "然后走了。"]


def test_a_blank_line_ends_a_sentence_without_a_full_stop():
    assert [t for t in chunk_text("Heading-like line\n\nNext one.", 2, approximate_tokens)] == [
        "Heading-like line", "Next one."]


def test_approximate_tokens_counts_cjk_characters_and_quarter_other_characters():
    assert approximate_tokens("abcd efgh") == 2  # 8 non-space characters / 4
    assert approximate_tokens("abcde") == 2  # rounded up
    assert approximate_tokens("火山岛") == 3
    assert approximate_tokens("火山岛 is big") == 3 + 2  # 5 other characters -> 2


def test_chunks_respect_the_size_and_are_slices_of_the_text():
    body = " ".join(f"Sentence number {i} is here." for i in range(10))  # each: 22 chars -> 6 tokens
    chunks = chunk_text(body, 13, approximate_tokens)
    assert chunks == [" ".join(f"Sentence number {i} is here." for i in range(j, min(j + 2, 10)))
                      for j in range(0, 10, 2)]
    assert all(c in body for c in chunks)


def test_a_paragraph_that_fits_a_chunk_is_not_split():
    text = "One two three four. Five six seven.\n\nEight nine ten eleven. Twelve.\n\nThirteen."
    # paragraphs of 4 + 4, 5 + 2 and 3 tokens: the second would fit after the first only in part
    assert chunk_text(text, 10, approximate_tokens) == ["One two three four. Five six seven.",
                                                        "Eight nine ten eleven. Twelve.\n\nThirteen."]
    assert chunk_text(text, 4, approximate_tokens) == ["One two three four.", "Five six seven.",
                                                       "Eight nine ten eleven.", "Twelve.", "Thirteen."]


def test_a_sentence_longer_than_a_chunk_is_a_chunk_of_its_own():
    long = "word " * 40 + "end."
    assert chunk_text(f"Short one. {long} Short two.", 8, approximate_tokens) == ["Short one.", long.strip(),
                                                                                  "Short two."]


def test_markdown_headings_become_chunk_context_and_nest_by_level():
    text = "# Geology\nIntro text.\n## Rocks\nGabbro is old.\n### Gabbro\nIt is coarse.\n## Soils\nAsh soils."
    assert list(sections(text)) == [
        (("Geology",), "Intro text."), (("Geology", "Rocks"), "Gabbro is old."),
        (("Geology", "Rocks", "Gabbro"), "It is coarse."), (("Geology", "Soils"), "Ash soils.")]
    chunks = chunk_documents([Document("a.md", text)], 100)
    assert [(c.id, c.headings, c.text) for c in chunks] == [
        ("c00000", ("Geology",), "Intro text."), ("c00001", ("Geology", "Rocks"), "Gabbro is old."),
        ("c00002", ("Geology", "Rocks", "Gabbro"), "It is coarse."), ("c00003", ("Geology", "Soils"), "Ash soils.")]


def test_chinese_document_chunks_and_language():
    text = "# 地质\n凯斯特雷尔岛是一座火山岛。岛上最高点是哈罗山，海拔1486米。科兰辉长岩是最古老的岩石。"
    chunks = chunk_documents([Document("z.md", text)], 20)
    assert [c.text for c in chunks] == ["凯斯特雷尔岛是一座火山岛。", "岛上最高点是哈罗山，海拔1486米。",
                                        "科兰辉长岩是最古老的岩石。"]
    assert {c.language for c in chunks} == {"zh"}
    assert [c.tokens for c in chunks] == [13, 15, 13]
    assert language("Kestrel Island is volcanic.") == "en"


def test_documents_txt_md_jsonl_and_errors(tmp_path):
    (tmp_path / "a.md").write_text("# T\nOne.\n", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text('{"text": "Two."}\n{"text": "Three."}\n', encoding="utf-8")
    docs = read_documents([tmp_path])
    assert [(d.source, d.text) for d in docs] == [(f"{tmp_path}/a.md", "# T\nOne.\n"), (f"{tmp_path}/b.jsonl:1", "Two."),
                                                  (f"{tmp_path}/b.jsonl:2", "Three.")]
    (tmp_path / "b.jsonl").write_text('{"text": "Two."}\n{"txt": "x"}\n', encoding="utf-8")
    with pytest.raises(Exception, match=r"b.jsonl:2: text"):
        read_documents([tmp_path])
    (tmp_path / "c.docx").write_text("x")
    with pytest.raises(Exception, match="unsupported file type '.docx'"):
        read_documents([tmp_path / "c.docx"])


def test_pdf_without_a_text_layer_is_a_clear_error(tmp_path):
    pypdf = pytest.importorskip("pypdf")
    writer = pypdf.PdfWriter()
    writer.add_blank_page(width=200, height=200)
    with open(tmp_path / "scan.pdf", "wb") as handle:
        writer.write(handle)
    with pytest.raises(Exception, match=r"scan.pdf: the PDF has no text layer \(1 page\(s\), all images\?\)"):
        read_documents([tmp_path / "scan.pdf"])


# ---- prompts, as exact strings


def test_facts_prompt_english_exact():
    messages = prompts.facts_prompt(("Geology", "Rocks"), "Gabbro is old.", 5, "en")
    assert messages == [
        {"role": "system", "content": "You write study material strictly from the given text. Never add information "
                                      "that is not in it."},
        {"role": "user", "content": 'Section: Geology > Rocks\n\nText:\n"""\nGabbro is old.\n"""\n\nList up to 5 '
                                    'atomic facts stated in the text above. Each fact is one short, self-contained '
                                    'sentence that names its subject (no "it" or "this"). With each fact, copy the '
                                    'exact words of the text that state it as "quote".\nReply with JSON only: '
                                    '{"facts": [{"fact": "...", "quote": "..."}]}'}]


def test_facts_prompt_chinese_exact_and_without_headings():
    messages = prompts.facts_prompt((), "辉长岩很古老。", 3, "zh")
    assert messages[0]["content"] == "你严格依据给定的文本编写学习材料，绝不添加文本中没有的信息。"
    assert messages[1]["content"] == (
        '文本：\n"""\n辉长岩很古老。\n"""\n\n列出上面文本陈述的至多 3 条原子事实。每条事实是一个简短、独立的句子，写明它的主语'
        '（不用“它”“这”）。每条事实都附上文本中陈述它的原话，一字不改地抄在 "quote" 中。\n只回复 JSON：{"facts": '
        '[{"fact": "...", "quote": "..."}]}')


def test_rewrite_prompt_exact():
    assert prompts.rewrite_prompt((), "Gabbro is old.", "relations", "en")[1]["content"] == (
        "Take pairs of entities the text below names and, for each pair, explain how the two are related according "
        "to the text. Use only information from the text and add nothing else; keep every name and number exactly "
        'as written. Reply with the rewritten text only.\n\nText:\n"""\nGabbro is old.\n"""')
    assert prompts.rewrite_prompt(("地质",), "辉长岩很古老。", "notes", "zh")[1]["content"] == (
        "把下面的文本改写成简明的学习笔记：分条列出要点。只使用文本中的信息，不要添加任何其他内容；名称和数字与原文完全一致。"
        '只回复改写后的文本。\n\n章节：地质\n\n文本：\n"""\n辉长岩很古老。\n"""')


def test_questions_prompt_exact():
    assert prompts.questions_prompt(("Geology",), "The Corran Gabbro is 4.2 million years old.", 4,
                                    "en")[1]["content"] == (
        "Topic: Geology\nFact: The Corran Gabbro is 4.2 million years old.\n\nWrite 4 questions that each ask for "
        "this fact, every one worded differently (other words and sentence structure, not only a new order), each "
        "clear on its own about what it asks and answerable from the fact alone. Then write the answer as one "
        "complete sentence, and a short answer of a few words (the name, number or term the questions ask for).\n"
        'Reply with JSON only: {"questions": ["..."], "answer": "...", "short_answer": "..."}')


def test_distractor_wrong_answer_reword_and_multi_fact_prompts_exact():
    assert prompts.distractors_prompt("How old?", "4.2 million years", "It is 4.2 million years old.",
                                      "en")[1]["content"] == (
        "Question: How old?\nCorrect answer: 4.2 million years\nFact: It is 4.2 million years old.\n\nWrite three "
        "wrong answers to the question that look plausible: of the same kind and form as the correct answer (a "
        "similar number, name or term), different from each other and from the correct answer, and about as long "
        'as it.\nReply with JSON only: {"distractors": ["...", "...", "..."]}')
    assert prompts.wrong_answer_prompt("How old?", "It is 4.2 million years old.", "en")[1]["content"] == (
        "Question: How old?\nCorrect answer: It is 4.2 million years old.\n\nWrite a wrong answer to the question "
        "that sounds just as sure: the same sentence with one detail changed (a number, a name or a relation), so "
        'that it is plausible but false.\nReply with JSON only: {"wrong_answer": "..."}')
    assert prompts.reword_prompt("多老？", "420万年", "zh")[1]["content"] == (
        '问题：多老？\n答案：420万年\n\n改写这个问题，使它用不同的说法问同一个答案：尽量改变句式、换用其他词语。\n只回复 JSON：'
        '{"question": "..."}')
    assert prompts.multi_fact_prompt(["A is 1.", "B is 2."], 2, "en")[1]["content"] == (
        "Facts:\n1. A is 1.\n2. B is 2.\n\nWrite 2 questions that each need two or more of the facts above to answer, "
        'and answer each from the facts alone in one or two sentences.\nReply with JSON only: {"items": '
        '[{"question": "...", "answer": "..."}]}')


def test_every_style_has_both_languages():
    assert set(prompts.STYLES["en"]) == set(prompts.STYLES["zh"]) == set(rewrite_styles(0, 5))
    assert rewrite_styles(0, 2) == ["textbook", "notes"]
    assert rewrite_styles(4, 2) == ["relations", "textbook"]


# ---- grounding


@pytest.mark.parametrize("quote, found", [
    ("the corran gabbro is 4.2 MILLION years old", True),  # case
    ("Corran   Gabbro\nis 4.2", True),  # whitespace
    ("“Corran Gabbro is 4.2 million years old.”", True),  # curly quotes and the full stop at the edges
    ("Corran Gabbro ... at Corran Head", True),  # elided, parts in order
    ("at Corran Head … Corran Gabbro is", False),  # parts out of order
    ("Corran Gabbro is 5.2 million years old", False),  # a changed number
    ("...", False),
])
def test_quote_in_chunk_english(quote, found):
    chunk = "The Corran Gabbro is 4.2 million years old. It is exposed at Corran Head on the south coast."
    assert quote_in_chunk(quote, chunk) is found


def test_quote_in_chunk_full_and_half_width():
    chunk = "哈罗山海拔１４８６米，是全岛最高点。"
    assert quote_in_chunk("哈罗山海拔1486米,是全岛最高点", chunk)
    assert quote_in_chunk("哈罗山海拔1486米，是全岛最高点。", chunk)
    assert not quote_in_chunk("哈罗山海拔1500米", chunk)
    assert normalize("Ｍｔ　HARROW。") == "mt harrow."


def test_an_invented_quote_is_dropped_and_counted():
    chunk = Chunk("c00000", "a.txt", (), "Mount Harrow is 1,486 m high. It last erupted in 1968.", "en", 14)
    drops: Counter = Counter()
    facts = grounded_facts(chunk, {"facts": [
        {"fact": "Mount Harrow is 1,486 m high.", "quote": "Mount Harrow is 1,486 m high"},
        {"fact": "Mount Harrow is 4,400 m high.", "quote": "Mount Harrow is 4,400 metres high"},
        {"fact": "It erupted in 1968.", "quote": ""},
        {"quote": "It last erupted"},
        {"fact": "Harrow last erupted in 1968.", "quote": "It last erupted in 1968"},
    ]}, 1, drops)
    assert [(f.id, f.fact) for f in facts] == [("c00000-f0", "Mount Harrow is 1,486 m high.")]
    assert drops == Counter({"fact: quote not in chunk": 1, "fact: no quote": 1, "fact: no text": 1,
                             "fact: over facts_per_chunk": 1})
    assert grounded_facts(chunk, "not json", 5, drops) == []
    assert drops["facts reply: no list of facts"] == 1


# ---- parsing replies


def test_distractors_must_be_distinct_after_normalisation():
    drops: Counter = Counter()
    assert parse_distractors({"distractors": ["4.3 Million Years", "４.３ million years", "4.2 million years",
                                              "3.1 million years", "", "5 million years"]},
                             "4.2 million years", drops) == ["4.3 Million Years", "3.1 million years", "5 million years"]
    assert drops == Counter({"distractor: same as the answer or another distractor": 2})
    assert parse_distractors({"distractors": ["a", "A ", "b"]}, "c", drops) is None
    assert drops["exam: fewer than 3 distinct distractors"] == 1
    assert parse_distractors({"distractors": [1783, 1857, 1968]}, "1894", Counter()) == ["1783", "1857", "1968"]


def test_questions_need_an_answer_whose_short_form_is_in_the_fact():
    from subjectlm.synth.facts import Fact

    fact = Fact("c0-f0", "c0", "Mount Harrow is 1,486 m high.", "Mount Harrow ... 1,486 metres")
    drops: Counter = Counter()
    got = parse_questions(fact, {"questions": ["How high is Harrow?", "how high is harrow?", "Harrow's height?"],
                                 "answer": "It is 1,486 m high.", "short_answer": "1,486 m"}, drops)
    assert got.questions == ("How high is Harrow?", "Harrow's height?")
    assert drops == Counter({"question: same wording twice": 1})
    assert parse_questions(fact, {"questions": ["Q?"], "answer": "A.", "short_answer": "4,400 m"}, drops) is None
    assert drops["questions reply: short answer not in the fact"] == 1
    assert parse_questions(fact, {"questions": [], "answer": "A.", "short_answer": "1,486"}, drops) is None
    assert parse_wrong_answer({"wrong_answer": "It is 1,486 M high."}, "It is 1,486 m high.", drops) is None
    assert parse_wrong_answer({"wrong_answer": "It is 1,468 m high."}, "It is 1,486 m high.", drops) == (
        "It is 1,468 m high.")


# ---- the exam


def _items(n: int, category: str = "taught") -> list[ExamItem]:
    return [ExamItem(f"c{i}-f0", category, f"Question {i}?", f"answer {i}", f"Answer {i}.",
                     (f"wrong {i} a", f"wrong {i} b", f"w{i}")) for i in range(n)]


def test_letters_are_balanced_and_options_keep_the_answer():
    rows = balanced_rows(_items(10), seed=3)
    assert sorted(Counter(r.letter for r in rows).values()) == [2, 2, 3, 3]
    for row in rows:
        assert row.options["ABCD".index(row.letter)] == row.item.short_answer
        assert sorted(row.options) == sorted([row.item.short_answer, *row.item.distractors])
    assert [r.letter for r in balanced_rows(_items(10), seed=3)] == [r.letter for r in rows]  # seeded
    assert [r.letter for r in balanced_rows(_items(10), seed=4)] != [r.letter for r in rows]


def test_longest_correct_share_and_dev_count():
    rows = balanced_rows(_items(8), seed=0)
    # "answer i" (8) is longer than "w{i}" (2) but shorter than "wrong i a" (9): never the longest.
    assert longest_correct_share(rows) == 0.0
    long_items = [ExamItem("x", "taught", "Q?", "the longest answer", "A.", ("a", "b", "c"))] + _items(3)
    assert longest_correct_share(balanced_rows(long_items, seed=0)) == 0.25
    assert [dev_count(n, 5) for n in (0, 3, 4, 19, 20, 100)] == [0, 0, 1, 4, 5, 5]


def test_control_split_is_seeded_by_text_and_at_least_one():
    chunks = [Chunk(f"c{i:05d}", "a", (), f"text {i}", "en", 2) for i in range(20)]
    control = control_ids(chunks, 0.1, seed=0)
    assert len(control) == 2 and control == control_ids(list(reversed(chunks)), 0.1, seed=0)
    assert control != control_ids(chunks, 0.1, seed=1)
    assert len(control_ids(chunks[:3], 0.1, seed=0)) == 1
    assert control_ids(chunks, 0.0, seed=0) == set()


def test_config_checks_name_the_key():
    base = {"data": ["d"], "output_dir": "o", "teacher": "http://127.0.0.1:1/v1"}
    with pytest.raises(ConfigError, match="control_fraction: must be below 1"):
        SynthConfig(**base, control_fraction=1.0)
    with pytest.raises(ConfigError, match="rewrites: at most 5"):
        SynthConfig(**base, rewrites=6)
    with pytest.raises(ConfigError, match="teacher: required"):
        SynthConfig(data=["d"], output_dir="o")


def test_token_counts_from_a_tokenizer_and_a_local_teachers_own(tiny_llama_dir, smollm_tokenizer):
    from subjectlm.synth.chunk import tokenizer_counter
    from subjectlm.synth.synthesize import _token_counter

    text = "Mount Harrow rises to 1,486 metres above sea level."
    expected = len(smollm_tokenizer(text, add_special_tokens=False)["input_ids"])
    assert tokenizer_counter(str(tiny_llama_dir))(text) == expected
    local = SynthConfig(data=["d"], output_dir="o", teacher=str(tiny_llama_dir))
    assert _token_counter(local)(text) == expected
    remote = SynthConfig(data=["d"], output_dir="o", teacher="http://127.0.0.1:8000/v1")
    assert _token_counter(remote) is approximate_tokens
