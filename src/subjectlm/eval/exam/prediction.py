"""One answered exam question: a line of predictions.jsonl.

Which fields a prediction carries depends on how it was scored (scoring.py):

    letter   probs, logprobs (each answer letter as the next token), modes
    cot      response (the completion the letter was read from)
    cla3     scores (the old script's processed scores), probs, response (the decoded top token)
    cloze    modes (each cloze metric's pick), cloze (the options' log-likelihoods)

and every one has repeat, subject, id, prediction, answer and correct: the primary mode's verdict
(letter when scored, else cloze_acc_norm). `to_json` writes the keys a run has always written, in
the same order, leaving out the fields its scorers did not fill; `from_json` reads any line an
earlier run wrote, including those from before scoring modes existed (no `modes`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

LETTER = "letter"  # the mode a record without `modes` was scored in (cloze.py names it too)
_OPTIONAL = ("scores", "probs", "logprobs")        # before the verdict, when present
_AFTER = ("response", "modes", "cloze")             # after it, when present


@dataclasses.dataclass
class Prediction:
    repeat: int
    subject: str                             # the subject's handle (file name)
    id: Any                                  # the question's id in its file
    prediction: str | None = None            # the letter picked; None: none could be read (counted wrong)
    answer: str | None = None                # the right letter; None on a test split without answers
    correct: bool | None = None              # None when there is no answer to grade against
    scores: dict[str, float] | None = None   # cla3: each letter's processed score
    probs: dict[str, float] | None = None    # letter, cla3: each letter's probability
    logprobs: dict[str, float] | None = None  # letter: each letter's log-prob as the next token
    response: str | None = None              # cot: the completion; cla3: the decoded top token
    modes: dict[str, dict[str, Any]] | None = None  # {mode: {"prediction", "correct"}} per scored mode
    cloze: dict[str, dict[str, float]] | None = None  # {"logprobs", "neutral_logprobs"} per option letter

    @property
    def key(self) -> tuple[str, str]:
        """(subject, id as text): how two runs' predictions of one question are paired."""
        return self.subject, str(self.id)

    def mode(self, mode: str) -> dict[str, Any] | None:
        """{"prediction", "correct"} under one scoring mode; None if that mode was not scored.
        A record from before scoring modes existed carries the letter mode at the top level only."""
        if self.modes is not None:
            return self.modes.get(mode)
        return {"prediction": self.prediction, "correct": self.correct} if mode == LETTER else None

    def to_json(self) -> dict[str, Any]:
        head = {"repeat": self.repeat, "subject": self.subject, "id": self.id}
        verdict = {"prediction": self.prediction, "answer": self.answer, "correct": self.correct}
        optional = {k: getattr(self, k) for k in _OPTIONAL if getattr(self, k) is not None}
        after = {k: getattr(self, k) for k in _AFTER if getattr(self, k) is not None}
        if self.modes is not None and LETTER not in self.modes:
            # Cloze alone: the primary mode's prediction and correct were always written last.
            return {**head, "answer": self.answer, **after, "prediction": self.prediction, "correct": self.correct}
        return {**head, **optional, **verdict, **after}

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> Prediction:
        return cls(**{f.name: record[f.name] for f in dataclasses.fields(cls) if f.name in record})
