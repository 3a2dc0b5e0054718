"""Compatibility: a stage's freshness key is subjectlm.pipeline.freshness (path roles on the config fields)."""

from subjectlm.pipeline.freshness import fingerprint, input_fingerprints, outputs_exist, stage_key, why_run

__all__ = ["fingerprint", "input_fingerprints", "outputs_exist", "stage_key", "why_run"]
