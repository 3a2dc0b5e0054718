"""Weighted training sources: `data: [corpus/, {path: general.jsonl, weight: 0.2}]`.

The weight of a source is the share of the training examples (pt: blocks; sft/dpo: examples)
drawn from it. Sources without a weight are taken whole, each example once, as a plain list is;
they make up the rest of the mixture, so the total is their size divided by (1 - the weights' sum).
A weighted source smaller than its share is repeated (whole copies, then a seeded sample for the
remainder), a larger one is subsampled (seeded, without replacement). This is LLaMA-Factory's
`interleave_over`/`interleave_under` idea (the weight is a share of the result), not axolotl's
`weight` (a fraction of the source kept). When every source has a weight they must sum to 1 and the
total is the sources' combined size, redistributed. Text (`WEIGHTS_HELP`) is printed by `--help`.

    parse_sources(value)  -> the config's normalized `data` list (errors name `data[i].weight`)
    parse_source(item)    -> one Source (a recipe checker or fingerprint looks at items one by one)
    sources(data)         -> [Source(path, weight)]      is_weighted(data), source_paths(data)
    draw_counts(sizes, weights) -> how many examples each source gives
    mix(groups, weights, seed)  -> (mixed rows, [Drawn per source])
"""

from __future__ import annotations

import dataclasses
import math
import random
import re
from pathlib import Path
from typing import Any, Sequence, TypeVar

from subjectlm.config import ConfigError

T = TypeVar("T")

WEIGHTS_HELP = """\
weighted sources (--data, `data:`):
  A source is a file or folder. Give it a weight with `PATH@W` on the command line
  (--data corpus/ general.jsonl@0.2) or `{path: PATH, weight: W}` in YAML; W is in (0, 1).
  A path that exists as written is always a path, even if it ends in @<number>.
  The weight is the share of training examples drawn from that source (pt: blocks; sft and
  dpo: examples), as LLaMA-Factory's interleave_over/under mean it, not a fraction of the
  source kept (axolotl's `weight`). Sources without a weight are used whole, each example
  once, and together make up the rest: total = (their examples) / (1 - sum of weights).
  A weighted source smaller than its share is repeated (whole copies, then a seeded sample),
  a larger one is subsampled (seeded by --seed, without replacement). If every source has a
  weight, the weights must sum to 1 and the total is all sources' examples together.
  Without any weight (a path or a list of paths) nothing is resampled: every example once.
  The examples drawn per source are printed and kept in train_summary.json and
  train_config.json (data_drawn).
  pt also reads instruction records (alpaca, sharegpt, messages; one format per file):
  each is rendered as text through the chat template (--template) and trained as a document."""

# `PATH@W`: a weight written after the last @ (a number such as 0.2, .25 or 2e-1)
_WEIGHTED = re.compile(r"^(?P<path>.+)@(?P<weight>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)$")
_KEYS = ("path", "weight")


@dataclasses.dataclass(frozen=True)
class Source:
    path: str
    weight: float | None = None  # None: used whole, shares the rest


@dataclasses.dataclass(frozen=True)
class Drawn:
    """What one source gave the mixture."""
    path: str
    weight: float | None
    available: int  # examples (pt: blocks) the source has
    drawn: int  # examples taken into training (repeats counted)
    share: float  # drawn / all drawn

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "weight": self.weight, "available": self.available, "drawn": self.drawn,
                "share": round(self.share, 6)}


def _weight(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{where}.weight: must be a number in (0, 1), got {value!r}")
    try:
        weight = float(value)
    except ValueError:
        raise ConfigError(f"{where}.weight: must be a number in (0, 1), got {value!r}") from None
    if not 0 < weight < 1 or math.isnan(weight):
        raise ConfigError(f"{where}.weight: must be in (0, 1), got {value}")
    return weight


def parse_source(item: Any, where: str = "data") -> Source:
    """One item of `data`: a path, `PATH@W`, or {path: P, weight: W}."""
    if isinstance(item, Path):
        item = str(item)
    if isinstance(item, str):
        match = _WEIGHTED.match(item)
        if match and not Path(item).exists():
            return Source(match["path"], _weight(match["weight"], where))
        if not item:
            raise ConfigError(f"{where}: empty path")
        return Source(item)
    if isinstance(item, dict):
        unknown = [k for k in item if k not in _KEYS]
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r}; a source is a path or {{path: P, weight: W}}")
        path = item.get("path")
        if isinstance(path, Path):
            path = str(path)
        if not isinstance(path, str) or not path:
            raise ConfigError(f"{where}.path: required (the file or folder), got {path!r}")
        weight = item.get("weight")
        return Source(path, None if weight is None else _weight(weight, where))
    raise ConfigError(f"{where}: expected a path or {{path: P, weight: W}}, got {type(item).__name__}")


def _parse(value: Any) -> list[Source]:
    items = [value] if isinstance(value, (str, dict, Path)) else list(value or [])
    found = [parse_source(item, f"data[{i}]") for i, item in enumerate(items)]
    weights = [s.weight for s in found if s.weight is not None]
    if weights:
        total = sum(weights)
        if len(weights) == len(found) and abs(total - 1) > 1e-6:
            raise ConfigError(f"data: every source has a weight, so the weights must sum to 1, got {total:g}")
        if len(weights) < len(found) and total >= 1:
            raise ConfigError(f"data: the weights sum to {total:g}; they must sum to less than 1, because "
                              "the sources without a weight make up the rest")
    return found


def parse_sources(value: Any) -> list[str | dict[str, Any]]:
    """The config's `data` in its normal form: a plain path stays a string (so a plain list is unchanged),
    a weighted source becomes {"path": P, "weight": W}. Errors name the item: `data[1].weight: ...`."""
    return [s.path if s.weight is None else {"path": s.path, "weight": s.weight} for s in _parse(value)]


def sources(data: Any) -> list[Source]:
    return _parse(data)


def is_weighted(data: Any) -> bool:
    return any(s.weight is not None for s in _parse(data))


def source_paths(data: Any) -> list[str]:
    """Every path a `data` value names, weights dropped (what a stage reads)."""
    return [s.path for s in _parse(data)]


def draw_counts(sizes: Sequence[int], weights: Sequence[float | None]) -> list[int]:
    """Examples to draw from each source (see the module docstring); every source gives at least one."""
    given = [w for w in weights if w is not None]
    if not given:
        return list(sizes)
    unweighted = [n for n, w in zip(sizes, weights) if w is None]
    total = sum(unweighted) / (1 - sum(given)) if unweighted else sum(sizes)
    return [n if w is None else max(1, round(w * total)) for n, w in zip(sizes, weights)]


def draw_indices(size: int, count: int, rng: random.Random) -> list[int]:
    """`count` indices into a source of `size`: whole passes in order, then a seeded sample (in order)."""
    repeats, extra = divmod(count, size)
    return list(range(size)) * repeats + sorted(rng.sample(range(size), extra))


def mix(groups: Sequence[Sequence[T]], weights: Sequence[float | None], seed: int,
        paths: Sequence[str] = ()) -> tuple[list[T], list[Drawn]]:
    """The training rows drawn from each source's rows, sources in order (the Trainer shuffles), and what
    each gave. The same groups, weights and seed always give the same rows."""
    sizes = [len(g) for g in groups]
    if not all(sizes):
        empty = sizes.index(0)
        raise ConfigError(f"data[{empty}]: {paths[empty] if paths else 'the source'} gave no training examples")
    counts = draw_counts(sizes, weights)
    rng = random.Random(seed)
    rows: list[T] = []
    for group, count in zip(groups, counts):
        rows += [group[i] for i in draw_indices(len(group), count, rng)]
    total = sum(counts)
    names = list(paths) or [f"source {i}" for i in range(len(groups))]
    drawn = [Drawn(p, w, n, c, c / total) for p, w, n, c in zip(names, weights, sizes, counts)]
    return rows, drawn


def describe(drawn: Sequence[Drawn], unit: str) -> str:
    """One line: what each source gave, e.g. `corpus: 300 of 300 blocks (75.0%); general.txt: 100 of
    1250 blocks, subsampled (25.0%, weight 0.25)`."""
    parts = []
    for d in drawn:
        how = "" if d.drawn == d.available else (
            ", subsampled" if d.drawn < d.available else f", repeated x{d.drawn / d.available:.2f}")
        weight = "" if d.weight is None else f", weight {d.weight:g}"
        parts.append(f"{d.path}: {d.drawn} of {d.available} {unit}{how} ({100 * d.share:.1f}%{weight})")
    return "mixed: " + "; ".join(parts)
