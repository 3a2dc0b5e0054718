"""Freshness: a stage's key is its resolved config plus a fingerprint of everything it reads.

A changed data file, or an upstream stage that ran again (its outputs have new mtimes), changes
the key of every stage that reads it, and through their new outputs everything downstream, and
nothing else. How a path is fingerprinted is declared on its config field (`option(path=ROLE)`,
config.PathRole):

    fingerprint="data"       files_fingerprint: names + contents of the data files, as the tokenizer cache
    fingerprint="content"    every file's name, size and contents (an exam folder, prompts, QA)
    fingerprint="manifest"   every file's name, size, mtime (ns): models, adapters, tokenizers (gigabytes)
    model=True, `default`    its name (the embedded model is fixed by the installed package)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from subjectlm.config import PathRole
from subjectlm.models import DEFAULT_MODEL_ALIASES
from subjectlm.pipeline.result import StageResult
from subjectlm.pipeline.state import StageRecord
from subjectlm.pipeline.values import paths_in


def _tree_hash(path: Path, by_content: bool) -> str:
    """Names and sizes of every file under `path`, with either contents or mtimes (ns)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()
                                                  and not any(part.startswith(".") for part in p.relative_to(path).parts))
    for file in files:
        stat = file.stat()
        digest.update(f"{file.relative_to(path) if file != path else file.name}\0{stat.st_size}\0".encode())
        if by_content:
            with open(file, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        else:
            digest.update(str(stat.st_mtime_ns).encode())
    return digest.hexdigest()[:16]


def fingerprint(role: PathRole, value: Any) -> Any:
    """What a stage reads through one path field, reduced to a hash that changes when it does (a list
    item by item; a weighted `{path:, weight:}` source by its path)."""
    from subjectlm.data import files_fingerprint
    from subjectlm.data.errors import DataFileNotFoundError

    if isinstance(value, list):
        return [fingerprint(role, v) for v in value]
    if isinstance(value, dict) or (isinstance(value, str) and paths_in(value) != [value]):
        found = paths_in(value)
        return fingerprint(role, found[0]) if found else value
    if not isinstance(value, str) or not value:
        return value
    if role.model and value in DEFAULT_MODEL_ALIASES:
        return value
    path = Path(value)
    if not path.exists():
        return "missing"
    if role.fingerprint == "data":
        try:
            return files_fingerprint([path])[:16]
        except DataFileNotFoundError:
            return "no data files"
    return _tree_hash(path, by_content=role.fingerprint == "content")


def input_fingerprints(values: dict[str, Any], roles: dict[str, PathRole]) -> dict[str, Any]:
    """Fingerprints of the path fields a stage reads."""
    return {k: fingerprint(roles[k], v) for k, v in sorted(values.items()) if k in roles and not roles[k].writes}


def stage_key(values: dict[str, Any], inputs: dict[str, Any]) -> str:
    payload = {"config": values, "inputs": inputs}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def outputs_exist(result: StageResult) -> bool:
    return all(path.exists() for path in result.outputs().values())


def why_run(previous: StageRecord | None, key: str, inputs: dict[str, Any], force: bool) -> str | None:
    """None when a finished stage can be skipped; otherwise the reason it runs."""
    if force:
        return "--force"
    if previous is None:
        return "not run before"
    if previous.hash == key:
        return None if outputs_exist(previous.result) else "its outputs are missing"
    changed = [k for k, v in inputs.items() if previous.inputs.get(k) != v]
    return f"changed: {', '.join(changed)}" if changed and previous.inputs else "its config changed"
