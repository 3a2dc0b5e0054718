"""Compatibility: the recipe lives in subjectlm.pipeline (pipeline/__init__.py lists its modules)."""

from subjectlm.pipeline.execute import StageOutcome, run_recipe
from subjectlm.pipeline.recipe import RECIPE_KEYS, Recipe, Stage, load_recipe
from subjectlm.pipeline.recipe_yaml import RecipeError, read_recipe_yaml
from subjectlm.pipeline.stages import STAGE_KINDS

__all__ = ["RECIPE_KEYS", "STAGE_KINDS", "Recipe", "RecipeError", "Stage", "StageOutcome", "load_recipe",
           "read_recipe_yaml", "run_recipe"]
