"""The thresholds the report's verdict block judges by, set in a recipe's eval stage:

    - stage: eval
      verdict: {alpha: 0.01, general_max_drop: 1.0}   # stricter than the defaults below

Each verdict line prints the thresholds it was judged by, so a reader never has to look them up.
The lines themselves are built by subjectlm.report.verdict from what the stages wrote.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from subjectlm.config import ConfigError, build_config, check_options, option


@dataclasses.dataclass(kw_only=True)
class VerdictThresholds:
    alpha: float = option(0.05, min=0.0, help="significance level: an exam change counts when its exact McNemar p "
                                              "is below it; a QA change when its 95% bootstrap interval excludes 0")
    knowledge_max_ppl_ratio: float = option(0.9, min=0.0, help="held-out subject text: tuned / start perplexity at "
                                                                 "most this counts as knowledge gained")
    general_max_drop: float = option(2.0, min=0.0, help="general exams: a drop in accuracy (points) larger than this "
                                                         "and significant at alpha says the ability was not kept")
    general_max_ppl_ratio: float = option(1.1, min=0.0, help="general text: tuned / start perplexity above this says "
                                                              "the ability was not kept")
    max_leaked: int = option(0, min=0, help="evaluation items the overlap check may flag before the exam counts as "
                                            "dependent on the training data")
    export_max_kld: float = option(0.05, min=0.0, help="each GGUF: mean KL divergence (nats) from the HF model at "
                                                        "most this")
    export_min_top1: float = option(0.9, min=0.0, help="each GGUF: top-1 agreement with the HF model at least this")

    def __post_init__(self):
        check_options(self)
        if self.alpha >= 1:
            raise ConfigError(f"verdict: alpha: must be below 1, got {self.alpha}", key="verdict")


def thresholds_from(values: Any, source: str = "verdict") -> VerdictThresholds:
    """A recipe's `verdict:` mapping (None or empty: the defaults); an unknown key is an error naming it."""
    if values in (None, {}):
        return VerdictThresholds()
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: must be a mapping of thresholds, e.g. {{alpha: 0.01}}", key="verdict")
    try:
        return build_config(VerdictThresholds, values, source)
    except ConfigError as exc:  # the recipe points at the `verdict:` key, not at the threshold's name
        raise ConfigError(str(exc), key="verdict") from None
