"""Did the exam leak into training? Every evaluation item against all the training data.

    find_overlap(train_paths, eval_paths, OverlapConfig()) -> OverlapReport

For every evaluation item (an exam question with its options, a QA question, an arena prompt, a
window of held-out text; see overlap_sources.py) two tests against the training data (anything pt,
sft or dpo reads), after `normalize_text` (case, whitespace, full-/half-width forms, CJK punctuation):

- the longest run of tokens it shares with the training data (words; Chinese and Japanese
  characters one by one; punctuation ignored), flagged at >= `ngram` (13, as GPT-3's and
  lm-evaluation-harness's decontamination). Training records are read as one stream, so a question
  split over two consecutive records is found; the report names the record where the run starts
  (and the one where it ends, when another). An item too short for such a run (`whole_min`, 8, to
  ngram - 1 tokens) is flagged when all of it appears in the training data ("whole"); a shorter one
  (`sentence_min`, 4, to whole_min - 1) when all of it appears there as whole sentences, from a
  sentence's start to a sentence's end ("whole" too): "What was the Gannet Flow?" asked in a training
  record is a leak, the same five words inside a longer sentence are not evidence of one.
- near duplicates: the highest Jaccard similarity of its `shingle`-token shingles with one training
  record's, flagged at >= `jaccard` (0.8). Exact Jaccard (prefix filtering, then exact counts), not
  a MinHash estimate. It compares whole records: a question inside a long record is the run test's
  to find.

The training data is indexed once (overlap_index.py: hashed n-grams in sorted numpy arrays), then
every item is looked up: the cost grows with training tokens plus evaluation tokens, not their
product (a few seconds per million training tokens).

`OverlapReport.counts()` (items checked, flagged by reason and per evaluation source), `.flagged`
(each with the evaluation file:line, the training file:line matched, the run and the Jaccard),
`.to_json()` (what an eval stage writes as leakage.json) and `.format()` (the table
`subjectlm data overlap` prints).

For other code (synth's deduplication and its "no exam question overlaps the training outputs" check):

    normalize_text(s) -> str                       overlap_text.py
    near_duplicate_groups(texts, jaccard=0.8)      groups of indices of near-duplicate strings (CJK by
                                                   character shingles, other text by word shingles)
    overlapping(new_texts, texts, ngram=13, jaccard=0.8) -> list[TextOverlap | None]
                                                   for each new text, its longest run shared with
                                                   `texts` (or all of a short one found in them) and
                                                   its most similar one (indices), or None
    TextIndex                                      the index itself: add texts once, query many times
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from subjectlm.config import ConfigError, check_options, option
from subjectlm.data.errors import DataError, Problem
from subjectlm.data.overlap_index import Run, Similar, TextIndex, near_duplicate_groups
from subjectlm.data.overlap_sources import EvalItem, eval_items, training_records
from subjectlm.data.overlap_text import normalize_text, tokens
from subjectlm.data.readers import TXT_MODES, expand_paths

__all__ = ["Flag", "OverlapConfig", "OverlapReport", "TextIndex", "TextOverlap", "find_overlap",
           "near_duplicate_groups", "normalize_text", "overlapping", "tokens"]


@dataclasses.dataclass
class OverlapConfig:
    ngram: int = option(13, help="flag an item that shares a run of at least this many tokens (words; CJK characters) "
                                 "with the training data", min=1)
    jaccard: float = option(0.8, help="flag an item whose shingles have at least this Jaccard similarity with one "
                                      "training record's (0 < jaccard <= 1)")
    whole_min: int = option(8, help="an item shorter than ngram tokens, but of at least this many, is flagged when all of "
                                    "it appears in the training data (set it and sentence_min to ngram to turn this off)",
                            min=1)
    sentence_min: int = option(4, help="an item shorter than whole_min, but of at least this many tokens, is flagged when "
                                       "the training data holds all of it as whole sentences, from a sentence's start to "
                                       "a sentence's end (set it to whole_min to turn this off)", min=1)
    shingle: int = option(3, help="tokens per shingle for the Jaccard similarity", min=1)
    window: int = option(100, help="held-out text is checked in windows of this many tokens (overlapping by ngram - 1)",
                         min=1)
    txt_mode: str = option("auto", help="training .txt files: a record per line or per blank-line paragraph, as pt "
                                        "reads them", choices=TXT_MODES)

    def __post_init__(self):
        check_options(self)
        if not 0 < self.jaccard <= 1:
            raise ConfigError(f"jaccard: must be in (0, 1], got {self.jaccard}", key="jaccard")
        if self.window < self.ngram:
            raise ConfigError(f"window: must be at least ngram ({self.ngram}), got {self.window}", key="window")


@dataclasses.dataclass(frozen=True)
class Flag:
    """One evaluation item found in the training data."""

    item: EvalItem
    run: Run | None                   # the longest shared run when it reaches ngram; or all of a short item (run.whole)
    run_train: tuple[str, int] | None  # training (file, line) where it starts
    run_train_end: tuple[str, int] | None  # and where it ends, when another record
    similar: Similar | None           # the most similar training record, when at or above jaccard
    similar_train: tuple[str, int] | None

    @property
    def reasons(self) -> list[str]:
        run = None if self.run is None else "whole" if self.run.whole else "ngram"
        return [name for name in (run, "jaccard" if self.similar else None) if name]

    def to_json(self) -> dict[str, Any]:
        place = lambda p: {"file": p[0], "line": p[1]} if p else None
        return {
            "kind": self.item.kind, "source": self.item.source, "label": self.item.label,
            "eval_file": self.item.file, "eval_line": self.item.line, "reasons": self.reasons,
            "longest_run": self.run.length if self.run else 0, "shared_text": self.run.text if self.run else None,
            "run_train": place(self.run_train), "run_train_end": place(self.run_train_end),
            "jaccard": round(self.similar.jaccard, 4) if self.similar else None,
            "jaccard_train": place(self.similar_train),
        }


@dataclasses.dataclass
class OverlapReport:
    config: OverlapConfig
    train_paths: list[str]
    eval_paths: list[str]
    train_records: int
    train_tokens: int
    items_by_source: dict[str, tuple[str, int]]  # eval source -> (kind, items checked)
    flagged: list[Flag]
    skipped: list[Problem]  # training records no format reads
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.flagged

    def counts(self) -> dict[str, Any]:
        by_source = {source: {"kind": kind, "items": n, "flagged": 0, "ngram": 0, "whole": 0, "jaccard": 0}
                     for source, (kind, n) in self.items_by_source.items()}
        by_reason = {"ngram": 0, "whole": 0, "jaccard": 0}
        for flag in self.flagged:
            by_source[flag.item.source]["flagged"] += 1
            for reason in flag.reasons:
                by_source[flag.item.source][reason] += 1
                by_reason[reason] += 1
        return {"items": sum(n for _, n in self.items_by_source.values()), "flagged": len(self.flagged),
                "by_reason": by_reason, "by_source": by_source}

    def to_json(self) -> dict[str, Any]:
        return {
            "config": dataclasses.asdict(self.config),
            "train": {"paths": self.train_paths, "records": self.train_records, "tokens": self.train_tokens,
                      "skipped": len(self.skipped), "skipped_examples": [str(p) for p in self.skipped[:20]]},
            "eval": {"paths": self.eval_paths},
            "counts": self.counts(),
            "flagged": [flag.to_json() for flag in self.flagged],
            "seconds": round(self.seconds, 3),
        }

    def format(self, limit: int | None = 50) -> str:
        c = self.config
        counts = self.counts()
        lines = [f"overlap of {counts['items']} evaluation item(s) with {self.train_records} training record(s) "
                 f"({self.train_tokens} tokens): flagged at a shared run >= {c.ngram} tokens (run), all of an item of "
                 f"{c.whole_min}-{c.ngram - 1} tokens or of {c.sentence_min}-{c.whole_min - 1} as whole sentences (whole) or "
                 f"Jaccard >= {c.jaccard:g}"]
        if self.skipped:
            lines.append(f"warning: {len(self.skipped)} training record(s) no format reads were left out, e.g. {self.skipped[0]}")
        width = max([len("evaluation source")] + [len(s) for s in counts["by_source"]])
        head = f"{'evaluation source':<{width}}  {'kind':<6}  {'items':>6}  {'flagged':>7}  {'run':>5}  {'whole':>5}  {'jaccard':>7}"
        lines += [head, "-" * len(head)]
        for source, row in counts["by_source"].items():
            lines.append(f"{source:<{width}}  {row['kind']:<6}  {row['items']:>6}  {row['flagged']:>7}  "
                         f"{row['ngram']:>5}  {row['whole']:>5}  {row['jaccard']:>7}")
        shown = self.flagged if limit is None else self.flagged[:limit]
        if shown:
            lines += ["", "flagged:"]
        for flag in shown:
            parts = [f"{flag.item.where}"]
            if flag.run is not None:
                end = f" to line {flag.run_train_end[1]}" if flag.run_train_end and flag.run_train_end[0] == flag.run_train[0] \
                    else (f" to {flag.run_train_end[0]}:{flag.run_train_end[1]}" if flag.run_train_end else "")
                what = "all" if flag.run.whole else "run of"
                parts.append(f"{what} {flag.run.length} tokens at {flag.run_train[0]}:{flag.run_train[1]}{end}")
            if flag.similar is not None:
                parts.append(f"Jaccard {flag.similar.jaccard:.2f} with {flag.similar_train[0]}:{flag.similar_train[1]}")
            if flag.run is not None:
                parts.append(repr(flag.run.text if len(flag.run.text) <= 80 else flag.run.text[:77] + "..."))
            lines.append("  " + "  ".join(parts))
        if len(shown) < len(self.flagged):
            lines.append(f"  ... and {len(self.flagged) - len(shown)} more (--output FILE.json lists them all)")
        return "\n".join(lines)


def find_overlap(train_paths: Sequence[str | Path], eval_paths: Sequence[str | Path],
                 config: OverlapConfig | None = None, log: Callable[[str], None] | None = None) -> OverlapReport:
    """Every item of `eval_paths` against the training data of `train_paths` (see the module docstring)."""
    from tqdm import tqdm

    config = config or OverlapConfig()
    start = time.perf_counter()
    items = eval_items(eval_paths, config.window, config.ngram)  # first: a bad evaluation path fails fast
    index = TextIndex(ngram=config.ngram, shingle=config.shingle)
    places: list[tuple[str, int]] = []
    skipped: list[Problem] = []
    files = expand_paths(train_paths)
    for record, text in tqdm(training_records(files, config.txt_mode, skipped), desc="indexing training data",
                             unit=" records", disable=None, leave=False):
        index.add(text)
        places.append((record.file, record.line))
    if not places:
        raise DataError(skipped or [Problem(", ".join(map(str, train_paths)), None, "file", "no training records found")])
    if log:
        log(f"indexed {len(places)} training records ({index.token_count} tokens); checking {len(items)} items")
    queries = [index.encode_tokens(item.tokens) for item in items]
    runs = index.shared_runs(queries, config.whole_min, config.sentence_min)
    similar = index.most_similar(queries, config.jaccard)
    flagged = []
    for item, run, near in zip(items, runs, similar):
        if run is None and near is None:
            continue
        flagged.append(Flag(item, run, places[run.unit] if run else None,
                            places[run.end_unit] if run and run.end_unit != run.unit else None,
                            near, places[near.unit] if near else None))
    by_source: dict[str, tuple[str, int]] = {}
    for item in items:
        kind, n = by_source.get(item.source, (item.kind, 0))
        by_source[item.source] = (kind, n + 1)
    return OverlapReport(config, [str(p) for p in train_paths], [str(p) for p in eval_paths], len(places),
                         index.token_count, by_source, flagged, skipped, time.perf_counter() - start)


@dataclasses.dataclass(frozen=True)
class TextOverlap:
    run: Run | None          # longest run shared with one of the texts (`run.unit` its index), at least ngram tokens
    similar: Similar | None  # the most similar text (`similar.unit` its index), at least the Jaccard threshold


def overlapping(new_texts: Sequence[str], texts: Sequence[str], ngram: int = 13, jaccard: float = 0.8,
                shingle: int = 3, whole_min: int = 8, sentence_min: int = 4) -> list[TextOverlap | None]:
    """For each of `new_texts`, what it shares with `texts` (plain strings), or None when nothing reaches a
    threshold: a run of `ngram` tokens, all of a text of `whole_min` to ngram - 1 tokens (`run.whole`), all of
    one of `sentence_min` to whole_min - 1 tokens as whole sentences of `texts` (`run.whole`), or
    Jaccard >= `jaccard`. `texts` are laid end to end as training records are, so a run may go on from one
    text into the next (`run.unit` is where it starts, `run.end_unit` where it ends)."""
    index = TextIndex(ngram=ngram, shingle=shingle)
    for text in texts:
        index.add(text)
    queries = [index.encode(t) for t in new_texts]
    runs = index.shared_runs(queries, whole_min, sentence_min)
    similar = index.most_similar(queries, jaccard)
    return [TextOverlap(r, s) if r is not None or s is not None else None for r, s in zip(runs, similar)]
