"""`subjectlm run RECIPE.yaml`: a recipe's stages in order, each feeding the next.

    recipe.py        Recipe, Stage: the YAML as typed objects (recipe_yaml.py: reading it with lines)
    stages.py        the stage table: kind -> config dataclass, run function, inputs, outputs, data check
    result.py        StageResult, Dataset: what a stage hands on (model, adapter, named data sets)
    values.py        a stage's config values: paths resolved, `{from:, output:}` references, pipeline inputs
    state.py         PipelineState (what the next stage takes), StageRecord (pipeline_state.json)
    freshness.py     a stage's key: its config and the fingerprint of each path it reads (by the field's role)
    plan.py          plan(): the one walk `run --dry-run` prints and `run` executes
    stage_checks.py, data_checks.py, plan_checks.py   what the dry run checks: per stage, its data, the whole plan
    execute.py       run_recipe(): the plan executed, each finished stage recorded

Nothing is imported here, so that a stage module can import pipeline.result without loading the rest.
"""
