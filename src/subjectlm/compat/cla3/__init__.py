"""Chinese-LLaMA-Alpaca-3's scripts/ceval/eval.py, reproduced for `eval exam`. One line per file:

    flags.py     its flags (--few_shot, --do_test, --do_save_csv, --prompt_style, ...), translated into an
                 ExamConfig before it is built; no --data: the old layout in the working directory
    prompts.py   its C-Eval prompts, byte for byte (--prompt_style cla3)
    scorer.py    its one-token generation with repetition penalty and temperature: the scoring table's
                 letter entry under --prompt_style cla3
    outputs.py   its take{K}/ files (summary.json, submission.json, {subject}_test.csv), from our predictions
    run.py       `eval exam` with these flags: notes, scorer, run_exam, then its files
    recipe_stage.py  the recipe's eval stage with these keys: EvalStageConfig + OldScriptFlags, run, take{K}/
"""
