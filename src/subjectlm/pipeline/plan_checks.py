"""Checks across the whole plan, after every stage is planned: what no single stage can see (for
example, whether an exam's questions turn up in the data trained on before it).

A check is `check(plan) -> (lines, problems)`: its lines are printed under "across the plan:" in
`run --dry-run`, its problems (errors or warnings) join the plan's findings, so that `run` refuses
an error before the first stage as it does any other. Each PlannedStage has the values its config
is built from (`values`), what it reads (`reads`), the data trained on by it (`trained_on`) and
what it hands on (`outputs`); append a check to PLAN_CHECKS.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from subjectlm.data.errors import Problem
from subjectlm.pipeline.leakage_check import leakage_check

if TYPE_CHECKING:
    from subjectlm.pipeline.plan import Plan

PlanCheck = Callable[["Plan"], tuple[list[str], list[Problem]]]

PLAN_CHECKS: list[PlanCheck] = [
    leakage_check,  # every evaluation stage's items against the data trained on before it
]
