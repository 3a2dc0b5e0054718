"""Recipe freshness: a stage's key is its resolved config plus a fingerprint of everything it reads.

A changed data file, or an upstream stage that ran again (its outputs have new mtimes), changes
the key of every stage that reads it, and through their new outputs everything downstream, and
nothing else. Fingerprints, by what a path key holds:

    training data (pt/sft/dpo data, validation_file, ppl_data)   files_fingerprint: names + contents of
                                                                 the data files, as the tokenizer cache
    other data (an exam folder, prompts, QA)                     every file's name, size and contents
    models, adapters, tokenizers (gigabytes)                     manifest: every file's name, size, mtime (ns)
    the embedded default model                                   its name (fixed by the installed package)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from subjectlm.models import DEFAULT_MODEL_ALIASES

MODEL_KEYS = {"model", "base", "base_model"}
OUTPUT_KEYS = {"output_dir", "output"}  # written by the stage; every other path key is read
# Read keys fingerprinted by content (files a person edits); the rest (models, adapters, tokenizers:
# gigabytes) by a manifest of file names, sizes and mtimes, which any re-run of their stage changes.
CONTENT_KEYS = {"data", "validation_file", "ppl_data", "prompts", "qa_data"}
TRAINING_STAGES = {"pt", "sft", "dpo"}


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


def fingerprint(stage_kind: str, key: str, value: Any) -> Any:
    """What a stage reads through one path key, reduced to a hash that changes when it does.

    Training data (and held-out text) as the tokenizer cache keys it (`files_fingerprint`: the
    data files' names and contents); other data (an exam folder, prompts, QA) by every file's
    content; models and adapters by their file manifest (name, size, mtime in ns), cheap for
    gigabytes and changed by any re-run of the stage that wrote them. The embedded default
    model is its name (it is fixed by the installed package)."""
    from subjectlm.data import files_fingerprint
    from subjectlm.data.errors import DataFileNotFoundError

    if isinstance(value, list):
        return [fingerprint(stage_kind, key, v) for v in value]
    if not isinstance(value, str) or not value:
        return value
    if key in MODEL_KEYS and value in DEFAULT_MODEL_ALIASES:
        return value
    path = Path(value)
    if not path.exists():
        return "missing"
    if key in CONTENT_KEYS:
        if key in ("validation_file", "ppl_data") or (key == "data" and stage_kind in TRAINING_STAGES):
            try:
                return files_fingerprint([path])[:16]
            except DataFileNotFoundError:
                return "no data files"
        return _tree_hash(path, by_content=True)
    return _tree_hash(path, by_content=False)


def input_fingerprints(stage_kind: str, values: dict[str, Any], path_keys: set[str]) -> dict[str, Any]:
    """Fingerprints of the path keys a stage reads."""
    return {k: fingerprint(stage_kind, k, v) for k, v in sorted(values.items())
            if k in path_keys and k not in OUTPUT_KEYS}


def stage_key(values: dict[str, Any], inputs: dict[str, Any]) -> str:
    payload = {"config": values, "inputs": inputs}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def outputs_exist(result: dict[str, Any]) -> bool:
    return all(Path(result[k]).exists() for k in ("model", "adapter") if result.get(k))


def why_run(previous: dict[str, Any] | None, key: str, inputs: dict[str, Any], force: bool) -> str | None:
    """None when a finished stage can be skipped; otherwise the reason it runs."""
    if force:
        return "--force"
    if not previous:
        return "not run before"
    if previous.get("hash") == key:
        return None if outputs_exist(previous.get("result", {})) else "its outputs are missing"
    changed = [k for k, v in inputs.items() if (previous.get("inputs") or {}).get(k) != v]
    return f"changed: {', '.join(changed)}" if changed and previous.get("inputs") else "its config changed"
