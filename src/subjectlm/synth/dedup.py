"""Near-duplicates within and across synth's outputs, and exam questions that overlap the training data.

Both tests are `subjectlm.data.overlap`'s, as `eval` runs them on the written files. Near-duplicates:
Jaccard >= `jaccard` of token shingles of the normalised text (CJK by characters, other text by words).
Of each group the first item is kept, outputs taken in the order given (pt, sft, dpo), so a removal is
counted `within` its output when the kept one is in the same output and `across` when it is in an
earlier one.

An exam or QA question overlaps the training outputs for any of three reasons, each reported (a
question may have several): it shares a run of `ngram` consecutive tokens (normalised words; CJK
characters) with the training texts; it is shorter than that and found whole in them (8 tokens or more
anywhere, 4 to 7 as whole sentences); or it is a near-duplicate of one of them (a training question asked in nearly the same words).
"""

from __future__ import annotations

from typing import Sequence


def _groups(texts: Sequence[str], jaccard: float) -> list[list[int]]:
    from subjectlm.data.overlap import near_duplicate_groups

    return [sorted(g) for g in near_duplicate_groups(list(texts), jaccard=jaccard) if len(g) > 1]


def remove_near_duplicates(outputs: dict[str, list[str]], jaccard: float
                           ) -> tuple[dict[str, list[int]], dict[str, dict[str, int]]]:
    """Indices to keep in each output, and {output: {within: n, across: n}} removed."""
    owner: list[tuple[str, int]] = [(name, i) for name, texts in outputs.items() for i in range(len(texts))]
    flat = [text for texts in outputs.values() for text in texts]
    removed: set[int] = set()
    counts = {name: {"within": 0, "across": 0} for name in outputs}
    for group in _groups(flat, jaccard):
        first = group[0]
        for index in group[1:]:
            if index in removed:
                continue
            removed.add(index)
            name = owner[index][0]
            counts[name]["within" if owner[first][0] == name else "across"] += 1
    keep = {name: [] for name in outputs}
    for index, (name, i) in enumerate(owner):
        if index not in removed:
            keep[name].append(i)
    return keep, counts


SHARED_NGRAM = "shared n-gram"
WHOLE = "whole question in the training data"
NEAR_DUPLICATE = "near-duplicate"
OVERLAP_REASONS = (SHARED_NGRAM, WHOLE, NEAR_DUPLICATE)


def overlapping(questions: Sequence[str], training: Sequence[str], ngram: int, jaccard: float
                ) -> list[tuple[str, ...]]:
    """For each question, every reason it overlaps the training texts (of OVERLAP_REASONS, in that
    order); () when it overlaps none."""
    from subjectlm.data.overlap import overlapping as find

    reasons = []
    for found in find(list(questions), list(training), ngram=ngram, jaccard=jaccard):
        run = None if found is None else found.run
        reasons.append(tuple(name for name, hit in (
            (SHARED_NGRAM, run is not None and not run.whole), (WHOLE, run is not None and run.whole),
            (NEAR_DUPLICATE, found is not None and found.similar is not None)) if hit))
    return reasons
