"""`subjectlm synth`, top to bottom: documents -> chunks -> facts -> questions -> outputs -> report.

    1. chunks of the documents, near-duplicate chunks removed; a seeded `control_fraction` of them is
       withheld from everything that trains (pt/, sft/, dpo/): their facts are asked in the exam only
    2. facts of every chunk (grounded: the quote must be in the chunk), K rewrites of each taught chunk
    3. per fact: N+1 questions, an answer and a short answer; the last question is the exam's, the
       others (taught facts only) are sft/; multi-fact questions of each taught chunk
    4. three distractors per exam question; a wrong answer per taught fact (dpo/'s rejected side)
    5. near-duplicates removed within pt/, sft/, dpo/ and across pt/ and sft/; an exam question that
       overlaps any of them is reworded once, then dropped if it still does
    6. exam letters balanced, outputs written, synth_report.md/.json

Every teacher reply goes through the teacher's cache in output_dir, so a killed run started again
asks only what it had no reply to, and builds the same outputs (the run is a function of the
documents, the config and the replies).
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from subjectlm.io import OutputExistsError
from subjectlm.synth import dedup, generate
from subjectlm.synth.chunk import Chunk, approximate_tokens, chunk_documents, tokenizer_counter
from subjectlm.synth.config import SynthConfig
from subjectlm.synth.documents import read_documents
from subjectlm.synth.exam import ExamItem, ExamRow, balanced_rows, dev_count, longest_correct_share
from subjectlm.synth.facts import Fact, normalize
from subjectlm.synth.generate import FactQuestions, Tally

CACHE_NAME = "teacher_cache.jsonl"
REPORT_NAME = "synth_report.json"


def prepare_dir(out: Path, overwrite: bool) -> None:
    """A synth output_dir is continued (its cache reused); any other non-empty one needs `overwrite`,
    which, like `overwrite` on a synth dir, starts afresh."""
    ours = (out / CACHE_NAME).is_file() or (out / REPORT_NAME).is_file()
    if out.exists() and any(out.iterdir()):
        if overwrite:
            shutil.rmtree(out)
        elif not ours:
            raise OutputExistsError(f"{out} already exists and was not written by synth; pass --overwrite to "
                                    "replace it")
    out.mkdir(parents=True, exist_ok=True)


def control_ids(chunks: Sequence[Chunk], fraction: float, seed: int) -> set[str]:
    """A seeded share of chunks, chosen by a hash of their text (not their position), at least one when
    the fraction is above 0 and there are two chunks or more."""
    n = round(fraction * len(chunks))
    if fraction > 0 and n == 0 and len(chunks) >= 2:
        n = 1
    ranked = sorted(chunks, key=lambda c: hashlib.sha256(f"{seed}\0{c.text}".encode()).hexdigest())
    return {c.id for c in ranked[:n]}


def _unique_chunks(chunks: list[Chunk], jaccard: float, tally: Tally) -> list[Chunk]:
    keep, removed = dedup.remove_near_duplicates({"chunks": [c.text for c in chunks]}, jaccard)
    tally.counts["chunks after near-duplicates"] = len(keep["chunks"])
    tally.drops["chunk: near-duplicate of an earlier chunk"] += removed["chunks"]["within"]
    return [chunks[i] for i in keep["chunks"]]


def _unique_facts(facts: list[Fact], control: set[str], taught_chunks: Sequence[Chunk], jaccard: float,
                  tally: Tally) -> list[Fact]:
    """Near-duplicate facts removed (a taught one kept over a control one: it is taught anyway), and
    control facts whose quote a taught chunk also states (they would be taught through it)."""
    dropped: set[int] = set()
    for group in dedup._groups([f.fact for f in facts], jaccard):
        taught = [i for i in group if facts[i].chunk_id not in control]
        keeper = taught[0] if taught else group[0]
        for i in group:
            if i != keeper:
                dropped.add(i)
                tally.drops["fact: near-duplicate of another fact"] += 1
    taught_text = "\0".join(normalize(c.text) for c in taught_chunks)
    kept = []
    for i, fact in enumerate(facts):
        if i in dropped:
            continue
        if fact.chunk_id in control and normalize(fact.quote) in taught_text:
            tally.drops["control fact: also stated in a taught chunk"] += 1
            continue
        kept.append(fact)
    return kept


def _training_records(chunks: Sequence[Chunk], taught: set[str], rewrites, asked: Sequence[FactQuestions],
                      multi, pairs, wrong, config: SynthConfig) -> dict[str, list[dict[str, Any]]]:
    def context(chunk: Chunk, text: str) -> str:
        return (" > ".join(chunk.headings) + "\n\n" + text) if chunk.headings else text

    pt = [{"text": context(c, c.text)} for c in chunks if c.id in taught]
    pt += [{"text": context(c, text)} for c, _style, text in rewrites]
    sft = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": fq.answer}]}
           for fq in asked if fq.fact.chunk_id in taught for q in fq.questions[:-1][:config.sft_questions]]
    sft += [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for _c, q, a in multi]
    dpo = [{"prompt": q, "chosen": fq.answer, "rejected": w} for (fq, q), w in zip(pairs, wrong) if w]
    return {"pt": pt, "sft": sft, "dpo": dpo}


def _record_text(kind: str, record: dict[str, Any]) -> str:
    if kind == "pt":
        return record["text"]
    if kind == "sft":
        return "\n".join(m["content"] for m in record["messages"])
    return record["prompt"] + "\n" + record["chosen"]


def _training_texts(records: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Every piece of text a model is trained on: what an exam question must not overlap."""
    texts = [r["text"] for r in records["pt"]]
    texts += [m["content"] for r in records["sft"] for m in r["messages"]]
    texts += [t for r in records["dpo"] for t in (r["prompt"], r["chosen"], r["rejected"])]
    return texts


def _checked_exam(teacher, config: SynthConfig, items: list[ExamItem], training: list[str], languages: dict,
                  tally: Tally) -> tuple[list[ExamItem], dict[str, int]]:
    """Items whose question overlaps no training text: overlapping ones reworded once, then dropped.
    Counted: questions checked and flagged, each reason found (a question may have several: a short
    question repeated from sft/ is both found whole and a near-duplicate), reworded and dropped."""
    reasons = dedup.overlapping([i.question for i in items], training, config.overlap_ngram, config.jaccard)
    flagged = [i for i, r in enumerate(reasons) if r]
    found = Counter(name for r in reasons for name in r)
    overlap = {"checked": len(items), "flagged": len(flagged),
               **{f"flagged: {name}": found[name] for name in dedup.OVERLAP_REASONS}, "reworded": 0, "dropped": 0}
    new = generate.reworded(teacher, config, [(items[i].question, items[i].short_answer,
                                               languages[items[i].id.rsplit("-", 1)[0]]) for i in flagged], tally)
    again = dedup.overlapping([q or "" for q in new], training, config.overlap_ngram, config.jaccard)
    replaced = {}
    for i, question, reason in zip(flagged, new, again):
        if question and not reason:
            replaced[i] = question
            overlap["reworded"] += 1
        else:
            overlap["dropped"] += 1
            tally.drops["exam: overlaps the training data (after rewording once)"] += 1
    kept = []
    for i, item in enumerate(items):
        if i in replaced:
            kept.append(ExamItem(item.id, item.category, replaced[i], item.short_answer, item.answer,
                                 item.distractors))
        elif not reasons[i]:
            kept.append(item)
    return kept, overlap


def _exam_rows(items: list[ExamItem], config: SynthConfig) -> dict[tuple[str, str], list[ExamRow]]:
    splits: dict[tuple[str, str], list[ExamRow]] = {}
    for category in ("taught", "control"):
        group = [i for i in items if i.category == category]
        n_dev = dev_count(len(group), config.dev_shots)
        for split, part in (("dev", group[:n_dev]), ("val", group[n_dev:])):
            seed = int(hashlib.sha256(f"{config.seed}\0{category}\0{split}".encode()).hexdigest()[:8], 16)
            splits[(category, split)] = balanced_rows(part, seed)
    return splits


def _token_counter(config: SynthConfig):
    """The given tokenizer, else a local teacher's own (a model directory or `default`), else the approximation."""
    name = config.tokenizer
    local_teacher = not config.teacher.startswith(("http://", "https://")) and not config.teacher.endswith(".gguf")
    if name is None and local_teacher:
        name = config.teacher
    return tokenizer_counter(name) if name else approximate_tokens


def _open_teacher(config: SynthConfig, out: Path):
    from subjectlm.synth.teacher import open_teacher

    return open_teacher(config.teacher, config.teacher_model, config.api_key_env, config.concurrency,
                        out / CACHE_NAME, price_in=config.price_in, price_out=config.price_out,
                        timeout=config.timeout, max_retries=config.max_retries)


def run(config: SynthConfig, teacher: Any = None) -> dict[str, Any]:
    """Run synth; `teacher` (an object with `ask` and `stats`) replaces the one the config names."""
    from subjectlm.synth import outputs, report as report_module

    started = time.monotonic()
    out = Path(config.output_dir)
    prepare_dir(out, config.overwrite)
    tally = Tally()
    documents = read_documents(config.data)
    count = _token_counter(config)
    chunks = chunk_documents(documents, config.chunk_tokens, count)
    tally.counts.update({"documents": len(documents), "chunks": len(chunks)})
    chunks = _unique_chunks(chunks, config.jaccard, tally)
    control = control_ids(chunks, config.control_fraction, config.seed)
    taught = {c.id for c in chunks} - control
    tally.counts.update({"taught chunks": len(taught), "control chunks": len(control)})
    languages = {c.id: c.language for c in chunks}

    own_teacher = teacher is None
    teacher = _open_teacher(config, out) if own_teacher else teacher
    try:
        facts, rewrites = generate.facts_and_rewrites(teacher, config, chunks, taught, tally)
        tally.counts.update({"facts grounded": len(facts), "rewrites": len(rewrites)})
        facts = _unique_facts(facts, control, [c for c in chunks if c.id in taught], config.jaccard, tally)
        tally.counts["facts kept"] = len(facts)

        asked, multi = generate.questions(teacher, config, chunks, facts, taught, tally)
        tally.counts.update({"facts with questions": len(asked), "multi-fact questions": len(multi)})
        exam_asks = [(fq, fq.questions[-1]) for fq in asked]
        pairs = [(fq, fq.questions[0]) for fq in asked if fq.fact.chunk_id in taught and len(fq.questions) >= 2]
        options, wrong = generate.options_and_wrong_answers(teacher, config, exam_asks, pairs, languages, tally)

        records = _training_records(chunks, taught, rewrites, asked, multi, pairs, wrong, config)
        # pt and sft against each other; dpo only within itself: its pairs repeat sft's questions and
        # answers on purpose (they teach a preference, not the text).
        keep, duplicates = dedup.remove_near_duplicates(
            {kind: [_record_text(kind, r) for r in records[kind]] for kind in ("pt", "sft")}, config.jaccard)
        keep_dpo, duplicates_dpo = dedup.remove_near_duplicates(
            {"dpo": [_record_text("dpo", r) for r in records["dpo"]]}, config.jaccard)
        keep.update(keep_dpo)
        duplicates.update(duplicates_dpo)
        records = {kind: [records[kind][i] for i in keep[kind]] for kind in records}

        items = [ExamItem(fq.fact.id, "taught" if fq.fact.chunk_id in taught else "control", q, fq.short_answer,
                          fq.answer, tuple(opts)) for (fq, q), opts in zip(exam_asks, options) if opts]
        tally.counts["exam questions with options"] = len(items)
        items, overlap = _checked_exam(teacher, config, items, _training_texts(records), languages, tally)
        rows = _exam_rows(items, config)
    finally:
        if own_teacher and hasattr(teacher, "close"):
            teacher.close()

    fact_category = {f.id: ("control" if f.chunk_id in control else "taught") for f in facts}
    by_chunk = {c.id: c for c in chunks}
    outputs.write_jsonl(out / "chunks.jsonl", [
        {"id": c.id, "source": c.source, "headings": list(c.headings), "category":
         "control" if c.id in control else "taught", "tokens": c.tokens, "text": c.text} for c in chunks])
    outputs.write_jsonl(out / "facts.jsonl", [
        {"id": f.id, "chunk": f.chunk_id, "category": fact_category[f.id], "fact": f.fact, "quote": f.quote,
         "source": by_chunk[f.chunk_id].source, "headings": list(by_chunk[f.chunk_id].headings)} for f in facts])
    for kind in ("pt", "sft", "dpo"):
        outputs.write_jsonl_dir(out / kind, f"{kind}.jsonl", records[kind])
    subject = config.subject or Path(config.data[0]).stem or "subject"
    outputs.write_exam(out / "exam", subject, rows)
    all_rows = [r for part in rows.values() for r in part]
    outputs.write_jsonl(out / "qa.jsonl", [outputs.qa_record(r) for r in all_rows])

    summary = report_module.build(config, tally, records, rows, duplicates, overlap,
                                  longest_correct_share(all_rows), teacher.stats, time.monotonic() - started)
    outputs.write_report(out, summary, report_module.markdown(summary))
    return {"summary": report_module.one_line(summary), "output_dir": str(out), "report": summary,
            "datasets": {"pt": str(out / "pt"), "sft": str(out / "sft"), "dpo": str(out / "dpo"),
                         "exam": str(out / "exam"), "qa": str(out / "qa.jsonl")}}
