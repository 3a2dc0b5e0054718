"""Prediction: every shape of predictions.jsonl line reads and writes back byte for byte, keys in order."""

from __future__ import annotations

import json

import pytest

from subjectlm.eval.exam.prediction import Prediction

LINES = {
    # --scoring letter (and the records of runs from before scoring modes: the same without `modes`)
    "letter": '{"repeat": 0, "subject": "logic", "id": "3", "probs": {"A": 0.7, "B": 0.1, "C": 0.1, "D": 0.1}, '
              '"logprobs": {"A": -0.3, "B": -2.3, "C": -2.3, "D": -2.3}, "prediction": "A", "answer": "A", '
              '"correct": true, "modes": {"letter": {"prediction": "A", "correct": true}}}',
    "before modes": '{"repeat": 0, "subject": "logic", "id": "3", "probs": {"A": 0.7}, "logprobs": {"A": -0.3}, '
                    '"prediction": "A", "answer": "A", "correct": true}',
    "both": '{"repeat": 1, "subject": "logic", "id": 7, "probs": {"A": 0.5}, "logprobs": {"A": -0.7}, '
            '"prediction": "A", "answer": null, "correct": null, "modes": {"letter": {"prediction": "A", '
            '"correct": null}, "cloze_acc": {"prediction": "B", "correct": null}}, '
            '"cloze": {"logprobs": {"A": -3.0}, "neutral_logprobs": {"A": -5.0}}}',
    "cloze": '{"repeat": 0, "subject": "logic", "id": "3", "answer": "D", "modes": {"cloze_acc_norm": '
             '{"prediction": "D", "correct": true}}, "cloze": {"logprobs": {"D": -1.0}, "neutral_logprobs": '
             '{"D": -0.1}}, "prediction": "D", "correct": true}',
    "cot": '{"repeat": 0, "subject": "logic", "id": "3", "prediction": null, "answer": "B", "correct": false, '
           '"response": "不知道"}',
    "cla3": '{"repeat": 0, "subject": "logic", "id": "3", "scores": {"A": 51.2, "B": 40.0}, '
            '"probs": {"A": 0.99, "B": 0.01}, "prediction": "A", "answer": "B", "correct": false, "response": "A"}',
}


@pytest.mark.parametrize("shape", LINES)
def test_a_line_reads_and_writes_back_byte_for_byte(shape):
    line = LINES[shape]
    assert json.dumps(Prediction.from_json(json.loads(line)).to_json(), ensure_ascii=False) == line


def test_mode_reads_the_scored_modes_and_the_old_letter_records():
    letter = Prediction.from_json(json.loads(LINES["letter"]))
    assert letter.mode("letter") == {"prediction": "A", "correct": True} and letter.mode("cloze_acc") is None
    old = Prediction.from_json(json.loads(LINES["before modes"]))
    assert old.mode("letter") == {"prediction": "A", "correct": True} and old.mode("cloze_acc_norm") is None
    assert Prediction.from_json(json.loads(LINES["both"])).key == ("logic", "7")
