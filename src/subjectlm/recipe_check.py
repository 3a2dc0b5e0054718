"""Compatibility: `run --dry-run` is subjectlm.pipeline.plan (plan() is the old check_recipe())."""

from subjectlm.pipeline.execute import require_valid_plan as require_valid_recipe
from subjectlm.pipeline.plan import Plan as RecipeCheck, PlannedStage, plan as check_recipe

__all__ = ["PlannedStage", "RecipeCheck", "check_recipe", "require_valid_recipe"]
