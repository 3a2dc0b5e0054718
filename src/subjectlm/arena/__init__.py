"""The arena: pairwise comparison of models' free answers, judged blind by a person or a judge model.

Multiple-choice exams show what a model knows; the arena shows how well it answers. The
method is Chatbot Arena's, run locally on a user's own subject prompts:

    config.py           typed configs of the three actions: generate, judge, results
    records.py          the arena folder's files: prompts, model specs, answers, battles (JSON lines)
    generate.py         every model answers every prompt (cached per model and prompt)
    prompts.py          the judging prompt (a pure function) and the verdict parser
    judge_model.py      a judge model compares two answers, in both orders
    judge_human.py      a local web page where a person compares two anonymous answers
    judge_reference.py  no model: the answer closer to the prompt's reference wins
    ratings.py          win rates, online Elo and Bradley-Terry with bootstrap intervals
    results.py          results.json, leaderboard.md and results.html
    recipe_stage.py     the recipe stage (model judge)

Everything lives in one output folder O: prompts.jsonl, models.json, answers/<model>.jsonl,
battles.jsonl (one line per judgement) and the results files.
"""
