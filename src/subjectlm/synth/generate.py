"""The requests synth makes of the teacher, and what it keeps of each reply.

Each step builds its requests (prompts.py), sends them in one batch (the teacher runs them
concurrently, from its cache when it has them) and parses the replies into plain data. A failed or
malformed reply never stops the run: it is counted in the tally under its reason and its item is left
out. Requests and parsing depend only on the documents, the config and the replies, so a resumed run
(every reply from the cache) builds the same data.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any, Sequence

from subjectlm.synth import prompts
from subjectlm.synth.chunk import Chunk
from subjectlm.synth.config import REWRITE_STYLES, SynthConfig
from subjectlm.synth.facts import Fact, grounded_facts, normalize


@dataclasses.dataclass
class Tally:
    """Counts at each step (in step order) and every item left out, by reason."""

    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    drops: Counter = dataclasses.field(default_factory=Counter)


@dataclasses.dataclass(frozen=True)
class FactQuestions:
    fact: Fact
    questions: tuple[str, ...]  # distinct wordings, in the teacher's order
    answer: str  # one sentence
    short_answer: str  # the exam's correct option and the QA key fact


def ask(teacher: Any, requests: list[Any], tally: Tally, step: str) -> list[Any]:
    """The teacher's replies in request order (`step` names the progress bar); each failed one counted
    as `teacher <tag>: <reason>`."""
    replies = teacher.ask(requests, desc=step) if requests else []
    for request, reply in zip(requests, replies):
        if not reply.ok:
            tally.drops[f"teacher {request.tag}: {reply.reason or 'failed'}"] += 1
    return replies


def _request(config: SynthConfig, messages: list[dict[str, str]], tag: str, want_json: bool = True) -> Any:
    from subjectlm.synth.teacher import TeacherRequest

    return TeacherRequest(messages=messages, want_json=want_json, max_tokens=config.max_tokens,
                          temperature=config.temperature, tag=tag)


def _text(value: Any) -> str:
    """A reply's string field, stripped; a number as its text (a short answer may come as 1486); else ''."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value.strip() if isinstance(value, str) else ""


def rewrite_styles(chunk_index: int, k: int) -> list[str]:
    """K styles for the chunk at `chunk_index`: the style list rotated by the index, so that with K < 5
    every style still appears across the corpus."""
    n = len(REWRITE_STYLES)
    return [REWRITE_STYLES[(chunk_index + i) % n] for i in range(k)]


# ---- step 1: facts of every chunk, rewrites of the taught ones


def facts_and_rewrites(teacher: Any, config: SynthConfig, chunks: Sequence[Chunk], taught: set[str],
                       tally: Tally) -> tuple[list[Fact], list[tuple[Chunk, str, str]]]:
    """Grounded facts of every chunk, and (chunk, style, text) of each taught chunk's rewrites."""
    requests = [_request(config, prompts.facts_prompt(c.headings, c.text, config.facts_per_chunk, c.language),
                         "facts") for c in chunks]
    rewrite_keys = [(c, style) for i, c in enumerate(chunks) if c.id in taught
                    for style in rewrite_styles(i, config.rewrites)]
    requests += [_request(config, prompts.rewrite_prompt(c.headings, c.text, style, c.language), "rewrite",
                          want_json=False) for c, style in rewrite_keys]
    replies = ask(teacher, requests, tally, "facts, rewrites")
    facts: list[Fact] = []
    for chunk, reply in zip(chunks, replies[:len(chunks)]):
        if reply.ok:
            facts += grounded_facts(chunk, reply.data, config.facts_per_chunk, tally.drops)
    rewrites = []
    for (chunk, style), reply in zip(rewrite_keys, replies[len(chunks):]):
        text = _text(reply.text) if reply.ok else ""
        if reply.ok and not text:
            tally.drops["rewrite: empty"] += 1
        elif text:
            rewrites.append((chunk, style, text))
    return facts, rewrites


# ---- step 2: questions about each fact, and multi-fact questions of each taught chunk


def parse_questions(fact: Fact, data: Any, drops: Counter) -> FactQuestions | None:
    if not isinstance(data, dict):
        drops["questions reply: not an object"] += 1
        return None
    raw = data.get("questions")
    questions: list[str] = []
    seen: set[str] = set()
    for q in raw if isinstance(raw, list) else []:
        text = _text(q)
        if text and normalize(text) not in seen:
            seen.add(normalize(text))
            questions.append(text)
        elif text:
            drops["question: same wording twice"] += 1
    answer, short = _text(data.get("answer")), _text(data.get("short_answer"))
    if not questions:
        drops["questions reply: no questions"] += 1
    elif not answer or not short:
        drops["questions reply: no answer or short answer"] += 1
    elif normalize(short) not in normalize(fact.fact) and normalize(short) not in normalize(fact.quote):
        drops["questions reply: short answer not in the fact"] += 1  # the exam's key must be the fact's words
    else:
        return FactQuestions(fact, tuple(questions), answer, short)
    return None


def parse_multi(data: Any, drops: Counter) -> list[tuple[str, str]]:
    items = data.get("items") if isinstance(data, dict) else data
    out = []
    for item in items if isinstance(items, list) else []:
        q = _text(item.get("question")) if isinstance(item, dict) else ""
        a = _text(item.get("answer")) if isinstance(item, dict) else ""
        if q and a:
            out.append((q, a))
        else:
            drops["multi-fact: item without question or answer"] += 1
    if not isinstance(items, list):
        drops["multi-fact reply: no list of items"] += 1
    return out


def questions(teacher: Any, config: SynthConfig, chunks: Sequence[Chunk], facts: Sequence[Fact], taught: set[str],
              tally: Tally) -> tuple[list[FactQuestions], list[tuple[Chunk, str, str]]]:
    """Per fact: sft_questions + 1 wordings (the last one is the exam's), the answer and the short answer.
    Control facts get the same request as taught ones, so that both groups' exam questions are alike."""
    by_id = {c.id: c for c in chunks}
    requests = [_request(config, prompts.questions_prompt(by_id[f.chunk_id].headings, f.fact,
                                                          config.sft_questions + 1, by_id[f.chunk_id].language),
                         "questions") for f in facts]
    multi_chunks = []
    if config.multi_fact_questions:
        for chunk in chunks:
            own = [f.fact for f in facts if f.chunk_id == chunk.id]
            if chunk.id in taught and len(own) >= 2:
                multi_chunks.append(chunk)
                requests.append(_request(config, prompts.multi_fact_prompt(own, config.multi_fact_questions,
                                                                           chunk.language), "multi_fact"))
    replies = ask(teacher, requests, tally, "questions")
    asked = [parse_questions(f, r.data, tally.drops) if r.ok else None for f, r in zip(facts, replies)]
    multi = [(chunk, q, a) for chunk, r in zip(multi_chunks, replies[len(facts):]) if r.ok
             for q, a in parse_multi(r.data, tally.drops)[:config.multi_fact_questions]]
    return [a for a in asked if a is not None], multi


# ---- step 3: distractors for each exam question, a wrong answer for each taught fact's pair


def parse_distractors(data: Any, short_answer: str, drops: Counter) -> list[str] | None:
    """Three options distinct from each other and from the answer after normalisation, or None."""
    raw = data.get("distractors") if isinstance(data, dict) else data
    kept: list[str] = []
    seen = {normalize(short_answer)}
    for item in raw if isinstance(raw, list) else []:
        text = _text(item)
        key = normalize(text)
        if not key:
            continue
        if key in seen:
            drops["distractor: same as the answer or another distractor"] += 1
            continue
        seen.add(key)
        kept.append(text)
    if len(kept) < 3:
        drops["exam: fewer than 3 distinct distractors"] += 1
        return None
    return kept[:3]


def parse_wrong_answer(data: Any, answer: str, drops: Counter) -> str | None:
    wrong = _text(data.get("wrong_answer")) if isinstance(data, dict) else _text(data)
    if not wrong:
        drops["dpo: no wrong answer"] += 1
    elif normalize(wrong) == normalize(answer):
        drops["dpo: wrong answer same as the grounded one"] += 1
    else:
        return wrong
    return None


def options_and_wrong_answers(teacher: Any, config: SynthConfig, exam: Sequence[tuple[FactQuestions, str]],
                              pairs: Sequence[tuple[FactQuestions, str]], languages: dict[str, str],
                              tally: Tally) -> tuple[list[list[str] | None], list[str | None]]:
    """Distractors for each (fact questions, exam question), a wrong answer for each (fact questions, prompt)."""
    requests = [_request(config, prompts.distractors_prompt(q, fq.short_answer, fq.fact.fact,
                                                            languages[fq.fact.chunk_id]), "distractors")
                for fq, q in exam]
    requests += [_request(config, prompts.wrong_answer_prompt(q, fq.answer, languages[fq.fact.chunk_id]),
                          "wrong_answer") for fq, q in pairs]
    replies = ask(teacher, requests, tally, "distractors, wrong answers")
    options = [parse_distractors(r.data, fq.short_answer, tally.drops) if r.ok else None
               for (fq, _), r in zip(exam, replies)]
    wrong = [parse_wrong_answer(r.data, fq.answer, tally.drops) if r.ok else None
             for (fq, _), r in zip(pairs, replies[len(exam):])]
    return options, wrong


# ---- step 4: an exam question that overlaps the training data, asked once more


def reworded(teacher: Any, config: SynthConfig, items: Sequence[tuple[str, str, str]], tally: Tally) -> list[str]:
    """(question, short answer, language) -> the reworded question ('' when the reply had none)."""
    requests = [_request(config, prompts.reword_prompt(q, short, lang), "reword") for q, short, lang in items]
    out = []
    for reply in ask(teacher, requests, tally, "rewording"):
        question = _text(reply.data.get("question")) if reply.ok and isinstance(reply.data, dict) else ""
        if reply.ok and not question:
            tally.drops["reword reply: no question"] += 1
        out.append(question)
    return out
