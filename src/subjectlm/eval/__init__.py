"""Validation: exams (C-Eval, CMMLU, MMLU), closed-book QA, perplexity, before/after comparison.

    exam/                 `eval exam` and `eval compare`: multiple-choice exams, question by question
    qa/                   `eval qa`: closed-book questions answered and scored against a reference
    ppl.py                `eval ppl`: held-out perplexity with a sliding window
    general.py            general exams and text: what the tuning cost (the eval stage's general_data)
    verdict_thresholds.py the thresholds the report's verdict judges by (the eval stage's `verdict`)
    recipe_stage.py       the recipe's eval stage (tuned and starting model, compared)

The model layer (subjectlm.backends: score_next, score_continuations, generate) answers the
requests these modules build and knows nothing about exams or questions. Chinese-LLaMA-Alpaca-3's
scripts (their flags, prompts, scoring and files) are reproduced above this layer, in subjectlm.compat.cla3.
"""
