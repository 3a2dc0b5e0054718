"""Cloze scoring: each option's text scored as the continuation of its question, and four ways to pick one.

Small models have not learned the "A/B/C/D" answer format, so the letter they pick says little
about what they know; the log-likelihood of the answer *text* does (OLMES, Gu et al. 2024, scores
every task both ways). The metrics are lm-eval's for `output_type: multiple_choice`
(lm_eval/api/task.py, ConfigurableTask.process_results, 0.4.13), where `ll` is the summed
log-prob of the continuation's tokens and the lengths are of the option text itself, without the
target delimiter:

    cloze_acc        argmax  ll                        lm-eval `acc`
    cloze_acc_norm   argmax  ll / len(text)            lm-eval `acc_norm`: characters (OLMES "per char")
    cloze_acc_bytes  argmax  ll / len(text.encode())   lm-eval `acc_bytes`: UTF-8 bytes
    cloze_acc_pmi    argmax  ll - ll_neutral           lm-eval `acc_mutual_info`, whose unconditional
                                                       context is empty; ours is the bare answer cue
                                                       (答案：, Answer:), which a model can condition on

Ties go to the first option, as numpy's argmax. An empty option text cannot be picked by a
length-normalised metric (its score is -inf instead of lm-eval's nan).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from subjectlm.eval.exam import prompts as P
from subjectlm.eval.exam.prediction import LETTER

CLOZE_MODES = ("cloze_acc", "cloze_acc_norm", "cloze_acc_bytes", "cloze_acc_pmi")
SCORING: dict[str, tuple[str, ...]] = {"letter": (LETTER,), "cloze": CLOZE_MODES, "both": (LETTER, *CLOZE_MODES)}
# The mode whose prediction fills a record's top-level `prediction`/`correct` (and the submission):
# the official letter when it was scored, else lm-eval's usual headline for cloze tasks.
CLOZE_PRIMARY = "cloze_acc_norm"


def scoring_modes(scoring: str) -> tuple[str, ...]:
    return SCORING[scoring]


def primary_mode(modes: Sequence[str]) -> str:
    return LETTER if LETTER in modes else CLOZE_PRIMARY


def _argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)  # first of equal maxima


def _per(value: float, length: int) -> float:
    return value / length if length else -math.inf


def cloze_picks(logprobs: Sequence[float], options: Sequence[str], unconditional: Sequence[float]) -> dict[str, int]:
    """The chosen option's index under each cloze metric (see the module docstring)."""
    return {
        "cloze_acc": _argmax(logprobs),
        "cloze_acc_norm": _argmax([_per(v, len(t)) for v, t in zip(logprobs, options)]),
        "cloze_acc_bytes": _argmax([_per(v, len(t.encode("utf-8"))) for v, t in zip(logprobs, options)]),
        "cloze_acc_pmi": _argmax([v - u for v, u in zip(logprobs, unconditional)]),
    }


def cloze_contexts(backend, style: P.PromptStyle, subject: str, shots: Sequence[P.ExamDoc],
                   docs: Sequence[P.ExamDoc], with_prompt: bool) -> tuple[list[str], list[list[str]], str]:
    """Each question's context, its options' continuations, and the neutral context for PMI.

    With the chat template the options start the assistant's reply, so they carry no delimiter.
    """
    if with_prompt:
        contexts = [backend.chat_prompt(P.cloze_chat_messages(style, subject, shots, d)) for d in docs]
        continuations = [list(d.options) for d in docs]
        neutral = backend.chat_prompt([{"role": "user", "content": P.neutral_context(style)}])
    else:
        contexts = [P.cloze_prompt(style, subject, shots, d) for d in docs]
        continuations = [P.cloze_continuations(style, d) for d in docs]
        neutral = P.neutral_context(style)
    return contexts, continuations, neutral


def score_cloze(backend, style: P.PromptStyle, subject: str, shots: Sequence[P.ExamDoc],
                docs: Sequence[P.ExamDoc], with_prompt: bool) -> list[dict[str, Any]]:
    """Per question: the options' log-likelihoods (`cloze`) and each cloze mode's prediction (`modes`)."""
    contexts, continuations, neutral = cloze_contexts(backend, style, subject, shots, docs, with_prompt)
    special = not with_prompt  # a chat template writes its own BOS
    scores = backend.score_continuations(contexts, continuations, add_special_tokens=special)
    # The neutral log-prob depends on the option text only: each distinct text is scored once.
    distinct = sorted({c for row in continuations for c in row})
    neutral_scores = dict(zip(distinct, backend.score_continuations([neutral], [distinct],
                                                                     add_special_tokens=special)[0]))
    out = []
    for doc, conts, logprobs in zip(docs, continuations, scores):
        letters = P.LETTERS[: len(doc.options)]
        unconditional = [neutral_scores[c] for c in conts]
        picks = cloze_picks(logprobs, doc.options, unconditional)
        modes = {}
        for mode, index in picks.items():
            pred = letters[index]
            modes[mode] = {"prediction": pred, "correct": None if doc.answer is None else pred == doc.answer}
        out.append({"cloze": {"logprobs": {k: round(v, 6) for k, v in zip(letters, logprobs)},
                              "neutral_logprobs": {k: round(v, 6) for k, v in zip(letters, unconditional)}},
                    "modes": modes})
    return out

