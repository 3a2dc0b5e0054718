"""Multiple-choice exams (C-Eval, CMMLU, MMLU): `eval exam` and `eval compare`.

prompts.py (pure prompt builders) -> directory.py (files -> documents; check.py: every problem
of an exam directory as file:LINE, run before a model is loaded) -> runner.py (documents ->
backend requests -> predictions) -> report.py (summary, report, chart); compare.py pairs two
runs. One line per file:

    prompts.py     exam prompts exactly as each benchmark's official code writes them
    directory.py   exam directories (C-Eval, CMMLU, MMLU layouts) -> ExamDoc
    check.py       everything wrong with an exam directory, before a model is loaded
    runner.py      `eval exam`: ExamConfig, answer every question, predictions.jsonl (resumable)
    scoring.py     the scoring table: letter, chain-of-thought and cloze scorers (compat.cla3 adds its own)
    cloze.py       cloze scoring: each option's text as a continuation, four ways to pick one
    extract.py     the answer letter in a chain-of-thought completion
    report.py      summary.json, report.md, the category chart, the test-split submission
    compare.py     `eval compare`: two exam runs question by question, McNemar test
"""
