"""Validation: exams (C-Eval, CMMLU, MMLU), perplexity, before/after comparison.

prompts.py (pure prompt builders) -> exams.py (files -> documents; exam_check.py: every
problem of an exam directory as file:LINE, run before a model is loaded) -> runner.py
(documents -> backend requests -> predictions) -> report.py (summary, report, chart);
backends/ answer requests and know nothing about exams; compare.py pairs two runs;
ppl.py is perplexity; stage.py is the recipe stage.
"""
