"""The arena's results: ratings overall and per category, judge statistics, and three files.

    results.json     everything, for programs
    leaderboard.md   ratings tables for people (and READMEs)
    results.html     the same with the win-rate matrix as a heat map (also served by the judging page)
"""

from __future__ import annotations

import html
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Sequence

from subjectlm.arena.config import ResultsConfig
from subjectlm.arena.ratings import ELO_BASE, rate
from subjectlm.arena.records import load_battles, load_models
from subjectlm.io import write_json, write_text


def judge_stats(battles: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per judge: battles, how often the first-shown answer won, and for pairs judged in both
    orders how often the two verdicts agree (a judge without position bias agrees always)."""
    stats: dict[str, Any] = {}
    by_judge: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for b in battles:
        by_judge[b.get("judge", "?")].append(b)
    for judge, rows in sorted(by_judge.items()):
        counts = Counter(b["winner"] for b in rows)
        decided = counts["A"] + counts["B"]
        orders: dict[tuple, dict[tuple[str, str], str]] = defaultdict(dict)
        for b in rows:
            # the verdict as "which model won", so both orders of one pair can be compared
            winner = {"A": b["model_a"], "B": b["model_b"]}.get(b["winner"], b["winner"])
            orders[(b.get("prompt_id"), frozenset((b["model_a"], b["model_b"])))][(b["model_a"], b["model_b"])] = winner
        both = [list(v.values()) for v in orders.values() if len(v) == 2]
        stats[judge] = {
            "battles": len(rows), "winners": dict(sorted(counts.items())),
            "first_position_win_rate": round(counts["A"] / decided, 4) if decided else None,
            "pairs_in_both_orders": len(both),
            "order_agreement": round(sum(x == y for x, y in both) / len(both), 4) if both else None,
        }
    return stats


def compute_results(output_dir: str | Path, judges: Sequence[str] = (), n_bootstrap: int = 1000, ci: float = 0.95,
                    elo_k: float = 4.0, seed: int = 0) -> dict[str, Any]:
    output_dir = Path(output_dir)
    battles = [b for b in load_battles(output_dir) if not judges or b.get("judge") in judges]
    recorded = load_models(output_dir)
    models = sorted({b["model_a"] for b in battles} | {b["model_b"] for b in battles})
    categories = sorted({b.get("category") or "all" for b in battles})
    result: dict[str, Any] = {
        "settings": {"judges": list(judges) or "all", "n_bootstrap": n_bootstrap, "ci": ci, "elo_k": elo_k,
                     "elo_base": ELO_BASE, "seed": seed},
        "models": {m: recorded.get(m, {}) for m in models},
        "judges": judge_stats(battles),
        "overall": rate(battles, models, n_bootstrap, ci, elo_k, seed),
        "categories": {},
    }
    if len(categories) > 1:
        for category in categories:
            subset = [b for b in battles if (b.get("category") or "all") == category]
            present = sorted({b["model_a"] for b in subset} | {b["model_b"] for b in subset})
            result["categories"][category] = rate(subset, present, n_bootstrap, ci, elo_k, seed)
    return result


def _ci(pair: list[float]) -> str:
    return "–" if any(x != x for x in pair) else f"{pair[0]:.0f}–{pair[1]:.0f}"


def _table_md(rated: dict[str, Any], ci: float) -> list[str]:
    pct = f"{ci:.0%}"
    lines = [f"| rank | model | Bradley–Terry | {pct} CI | Elo (online) | {pct} CI | win rate | battles |",
             "|---:|---|---:|---|---:|---|---:|---:|"]
    for rank, row in enumerate(rated["leaderboard"], 1):
        win = "–" if row["win_rate"] is None else f"{row['win_rate']:.1%}"
        lines.append(f"| {rank} | {row['model']} | {row['bt']:.0f} | {_ci(row['bt_ci'])} | {row['elo']:.0f} | "
                     f"{_ci(row['elo_ci'])} | {win} | {row['battles']} |")
    return lines


def leaderboard_md(result: dict[str, Any]) -> str:
    ci = result["settings"]["ci"]
    overall = result["overall"]
    lines = ["# Arena leaderboard", "",
             f"{overall['n_battles']} battles; judges: {', '.join(result['judges']) or 'none'}. "
             f"Ratings on the Elo scale (mean {ELO_BASE:.0f}); intervals from {result['settings']['n_bootstrap']} "
             "bootstrap rounds. Win rate counts ties as half.", ""]
    lines += _table_md(overall, ci)
    matrix = overall["win_rate_matrix"]
    if matrix["models"]:
        lines += ["", "## Win rate of row against column", "",
                  "| | " + " | ".join(matrix["models"]) + " |", "|---|" + "---:|" * len(matrix["models"])]
        for name, row in zip(matrix["models"], matrix["matrix"]):
            lines.append(f"| {name} | " + " | ".join("–" if v is None else f"{v:.0%}" for v in row) + " |")
    for category, rated in result["categories"].items():
        lines += ["", f"## Category: {category} ({rated['n_battles']} battles)", ""] + _table_md(rated, ci)
    lines += ["", "## Judges", "", "| judge | battles | first answer won | pairs in both orders | orders agree |",
              "|---|---:|---:|---:|---:|"]
    for judge, st in result["judges"].items():
        first = "–" if st["first_position_win_rate"] is None else f"{st['first_position_win_rate']:.0%}"
        agree = "–" if st["order_agreement"] is None else f"{st['order_agreement']:.0%}"
        lines.append(f"| {judge} | {st['battles']} | {first} | {st['pairs_in_both_orders']} | {agree} |")
    return "\n".join(lines) + "\n"


def _heat(value: float | None) -> str:
    """Background colour of a win rate: red below 0.5, white at 0.5, green above."""
    if value is None:
        return "#eeeeee"
    if value >= 0.5:
        t = (value - 0.5) * 2
        r, g, b = 255 - int(t * 155), 255 - int(t * 55), 255 - int(t * 155)
    else:
        t = (0.5 - value) * 2
        r, g, b = 255 - int(t * 35), 255 - int(t * 155), 255 - int(t * 155)
    return f"#{r:02x}{g:02x}{b:02x}"


def _table_html(rated: dict[str, Any], ci: float) -> str:
    e = html.escape
    rows = "".join(
        f"<tr><td>{rank}</td><td class=name>{e(r['model'])}</td><td>{r['bt']:.0f}</td><td>{_ci(r['bt_ci'])}</td>"
        f"<td>{r['elo']:.0f}</td><td>{_ci(r['elo_ci'])}</td>"
        f"<td>{'–' if r['win_rate'] is None else format(r['win_rate'], '.1%')}</td><td>{r['battles']}</td></tr>"
        for rank, r in enumerate(rated["leaderboard"], 1))
    return (f"<table class=board><tr><th>rank</th><th>model</th><th>Bradley–Terry</th><th>{ci:.0%} CI</th>"
            f"<th>Elo (online)</th><th>{ci:.0%} CI</th><th>win rate</th><th>battles</th></tr>{rows}</table>")


def _matrix_html(matrix: dict[str, Any]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(m)}</th>" for m in matrix["models"])
    body = "".join(
        f"<tr><th>{e(name)}</th>" + "".join(
            f"<td class=cell style='background:{_heat(v)}'>{'–' if v is None else format(v, '.0%')}</td>" for v in row)
        + "</tr>" for name, row in zip(matrix["models"], matrix["matrix"]))
    return f"<table class=heat id=winrate><tr><th>row beats column</th>{head}</tr>{body}</table>"


def results_html(result: dict[str, Any]) -> str:
    ci = result["settings"]["ci"]
    overall = result["overall"]
    parts = [f"<h1>Arena results</h1><p>{overall['n_battles']} battles; judges: "
             f"{html.escape(', '.join(result['judges']) or 'none')}. Ratings on the Elo scale (mean {ELO_BASE:.0f}), "
             f"{ci:.0%} bootstrap intervals. Win rate counts ties and 'both bad' as half.</p>",
             _table_html(overall, ci), "<h2>Win rate matrix</h2>", _matrix_html(overall["win_rate_matrix"])]
    for category, rated in result["categories"].items():
        parts += [f"<h2>Category: {html.escape(category)} ({rated['n_battles']} battles)</h2>", _table_html(rated, ci),
                  _matrix_html(rated["win_rate_matrix"])]
    style = ("body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}"
             ".name{text-align:left}.cell{min-width:4em;text-align:center}")
    return ("<!doctype html><html><head><meta charset=utf-8><title>Arena results</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n")


def run_results(config: ResultsConfig) -> dict[str, Any]:
    output_dir = Path(config.output_dir)
    if not (output_dir / "battles.jsonl").is_file():
        from subjectlm.config import ConfigError
        raise ConfigError(f"output_dir: {output_dir} has no battles.jsonl yet: run `subjectlm eval arena judge` first")
    result = compute_results(output_dir, config.judges, config.n_bootstrap, config.ci, config.elo_k, config.seed)
    write_json(output_dir / "results.json", result)
    write_text(output_dir / "leaderboard.md", leaderboard_md(result))
    write_text(output_dir / "results.html", results_html(result))
    return result
