"""Validation: exams (C-Eval, CMMLU, MMLU), closed-book QA, perplexity, before/after comparison.

prompts.py (pure prompt builders) -> exams.py (files -> documents; exam_check.py: every
problem of an exam directory as file:LINE, run before a model is loaded) -> runner.py
(documents -> backend requests -> predictions) -> report.py (summary, report, chart);
the model layer (subjectlm.backends: score_next, score_continuations, generate) answers
those requests and knows nothing about exams; compare.py pairs two runs; ppl.py is perplexity; stage.py is the recipe stage. One line per file:

    prompts.py         exam prompts exactly as each benchmark's official code writes them
    prompts_cla3.py    C-Eval prompts as Chinese-LLaMA-Alpaca-3's scripts wrote them (--prompt_style cla3)
    exams.py           exam directories (C-Eval, CMMLU, MMLU layouts) -> ExamDoc
    exam_check.py      everything wrong with an exam directory, before a model is loaded
    runner.py          `eval exam`: ExamConfig, answer every question, predictions.jsonl (resumable)
    cloze.py           cloze scoring: each option's text as a continuation, four ways to pick one
    cla3.py            --prompt_style cla3: the old scripts' one-token generation, reproduced
    extract.py         the answer letter in a chain-of-thought completion
    legacy_outputs.py  the old scripts' flags and output files, kept for their users
    report.py          summary.json, report.md, the category chart, the test-split submission
    compare.py         `eval compare`: two exam runs question by question, McNemar test
    qa.py              closed-book QA: questions, prompts, scores of an answer against its reference
    qa_runner.py       `eval qa`: answer, score, compare with a base model
    qa_compare.py      two QA runs question by question
    ppl.py             `eval ppl`: held-out perplexity with a sliding window
    stage.py           the recipe's eval stage (tuned and starting model, compared)
"""
