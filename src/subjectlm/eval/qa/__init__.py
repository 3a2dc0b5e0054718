"""Closed-book QA: `eval qa`. One line per file:

    items.py     the questions, the prompts, and the scores of an answer against its reference
    runner.py    `eval qa`: QAConfig, answer, score, compare with a base model
    compare.py   two QA runs question by question
"""
