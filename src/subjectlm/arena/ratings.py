"""Ratings from a battle log: win-rate matrix, online Elo and Bradley-Terry, with bootstrap intervals.

A battle is (model_a, model_b, score of A): 1 if A won, 0 if B won, 0.5 for a tie. "both bad"
is a tie too, as Chatbot Arena counts it: neither answer is preferred.

Online Elo is the rating Chatbot Arena's first leaderboard published: start every model at
1000 and walk the log in order, moving the two ratings of each battle by K * (score - expected)
with expected = 1 / (1 + 10 ** ((R_b - R_a) / 400)) and K = 4. The small K keeps one battle from
moving a rating much, but the result depends on the order of the log; the bootstrap (battles
drawn with replacement, so also reordered) shows how much.

Bradley-Terry is the order-free model behind the later leaderboard: P(i beats j) =
sigmoid(theta_i - theta_j), fitted by maximum likelihood (ties as half a win each way) with a
weak L2 prior (`BT_PRIOR`) so that a model that never lost keeps a finite rating. theta is put
on the Elo scale: 1000 + 400 * theta / ln(10), centred so the mean rating is 1000.

Intervals are percentile bootstrap intervals: resample the battles `n_bootstrap` times and take
the (1 - ci) / 2 and (1 + ci) / 2 quantiles of each model's rating.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

ELO_BASE = 1000.0
ELO_SCALE = 400.0  # a 400-point gap means 10:1 odds
ELO_K = 4.0
BT_PRIOR = 1e-3  # L2 weight on theta (natural-log units); tiny next to any real battle count
SCORES = {"A": 1.0, "B": 0.0, "tie": 0.5, "both-bad": 0.5}


def encode(battles: Sequence[dict[str, Any]], models: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Battle records -> index of A, index of B, score of A (records of unknown models dropped)."""
    index = {m: i for i, m in enumerate(models)}
    rows = [(index[b["model_a"]], index[b["model_b"]], SCORES[b["winner"]]) for b in battles
            if b["model_a"] in index and b["model_b"] in index and b["model_a"] != b["model_b"]]
    if not rows:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0)
    a, b, s = zip(*rows)
    return np.array(a), np.array(b), np.array(s, dtype=float)


def score_matrix(a: np.ndarray, b: np.ndarray, s: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """W[i, j] = points i scored against j; N[i, j] = battles between i and j (symmetric)."""
    wins = np.zeros((n, n))
    np.add.at(wins, (a, b), s)
    np.add.at(wins, (b, a), 1.0 - s)
    counts = np.zeros((n, n))
    np.add.at(counts, (a, b), 1.0)
    return wins, counts + counts.T


def _score_stack(a: np.ndarray, b: np.ndarray, s: np.ndarray, n: int) -> np.ndarray:
    """score_matrix's W for every row of 2-D (rounds x battles) arrays: (rounds x n x n)."""
    rounds = a.shape[0]
    offset = (np.arange(rounds) * n * n)[:, None]
    flat = np.bincount((offset + a * n + b).ravel(), weights=s.ravel(), minlength=rounds * n * n)
    flat += np.bincount((offset + b * n + a).ravel(), weights=(1.0 - s).ravel(), minlength=rounds * n * n)
    return flat.reshape(rounds, n, n)


def win_rate_matrix(a, b, s, n: int) -> np.ndarray:
    """Row model's points per battle against the column model (ties count half); NaN where none."""
    wins, counts = score_matrix(a, b, s, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, wins / np.maximum(counts, 1), np.nan)


def online_elo(a, b, s, n: int, k: float = ELO_K, base: float = ELO_BASE, scale: float = ELO_SCALE) -> np.ndarray:
    """Sequential Elo over battles in the given order. a, b, s may be 2-D (rounds x battles):
    every row is then its own log and the result is (rounds x n)."""
    a2, b2, s2 = np.atleast_2d(a), np.atleast_2d(b), np.atleast_2d(s)
    ratings = np.full((a2.shape[0], n), float(base))
    rows = np.arange(a2.shape[0])
    for t in range(a2.shape[1]):
        ia, ib = a2[:, t], b2[:, t]
        expected = 1.0 / (1.0 + 10.0 ** ((ratings[rows, ib] - ratings[rows, ia]) / scale))
        step = k * (s2[:, t] - expected)
        ratings[rows, ia] += step
        ratings[rows, ib] -= step
    return ratings[0] if np.ndim(a) == 1 else ratings


def bradley_terry(wins: np.ndarray, prior: float = BT_PRIOR, iterations: int = 100) -> np.ndarray:
    """Maximum-likelihood theta (natural-log odds units, mean 0) from a points matrix.

    `wins` may be a stack (rounds x n x n): all rounds are fitted at once by Newton's method,
    which for a handful of models needs a few small linear solves instead of an optimizer per
    round. Steps are clipped to 1 per iteration: the negative log-likelihood is convex, so a
    bounded step only slows the first iterations, never stops convergence.
    """
    stack = np.asarray(wins, float)
    single = stack.ndim == 2
    stack = stack[None] if single else stack
    rounds, n, _ = stack.shape
    games = stack + stack.transpose(0, 2, 1)
    theta = np.zeros((rounds, n))
    eye = np.eye(n)
    for _ in range(iterations):
        diff = theta[:, :, None] - theta[:, None, :]
        p = 1.0 / (1.0 + np.exp(-diff))  # P(i beats j)
        # gradient of  -sum_ij W_ij log p_ij + prior/2 |theta|^2
        grad = -(stack * (1.0 - p)).sum(axis=2) + (stack.transpose(0, 2, 1) * p).sum(axis=2) + prior * theta
        curv = games * p * (1.0 - p)
        hess = -curv + eye * (curv.sum(axis=2) + prior)[:, :, None]
        step = np.clip(np.linalg.solve(hess, grad[:, :, None])[:, :, 0], -1.0, 1.0)
        theta = theta - step
        if np.max(np.abs(step)) < 1e-10:
            break
    theta = theta - theta.mean(axis=1, keepdims=True)
    return theta[0] if single else theta


def to_elo_scale(theta: np.ndarray, base: float = ELO_BASE, scale: float = ELO_SCALE) -> np.ndarray:
    return base + theta * scale / math.log(10.0)


def rate(battles: Sequence[dict[str, Any]], models: Sequence[str], n_bootstrap: int = 1000, ci: float = 0.95,
         elo_k: float = ELO_K, seed: int = 0) -> dict[str, Any]:
    """All ratings of `models` from `battles`: one entry per model plus the win-rate matrix."""
    models = list(models)
    n = len(models)
    a, b, s = encode(battles, models)
    wins, counts = score_matrix(a, b, s, n)
    elo = online_elo(a, b, s, n, k=elo_k)
    theta = bradley_terry(wins)
    bt = to_elo_scale(theta)
    lo_q, hi_q = (1 - ci) / 2 * 100, (1 + ci) / 2 * 100
    elo_ci = bt_ci = np.full((2, n), np.nan)
    if len(a):
        rng = np.random.default_rng(seed)
        elo_rounds, bt_rounds = [], []
        for start in range(0, n_bootstrap, 100):  # 100 rounds at a time bounds the index arrays' memory
            idx = rng.integers(0, len(a), size=(min(100, n_bootstrap - start), len(a)))
            elo_rounds.append(online_elo(a[idx], b[idx], s[idx], n, k=elo_k))
            bt_rounds.append(to_elo_scale(bradley_terry(_score_stack(a[idx], b[idx], s[idx], n))))
        elo_ci = np.percentile(np.concatenate(elo_rounds), [lo_q, hi_q], axis=0)
        bt_ci = np.percentile(np.concatenate(bt_rounds), [lo_q, hi_q], axis=0)
    played = counts.sum(axis=1)
    table = []
    for i, m in enumerate(models):
        battles_i = int(played[i])
        won = float(wins[i].sum())
        table.append({
            "model": m, "battles": battles_i,
            "win_rate": round(won / battles_i, 4) if battles_i else None,
            "bt": round(float(bt[i]), 1), "bt_ci": [round(float(x), 1) for x in bt_ci[:, i]],
            "elo": round(float(elo[i]), 1), "elo_ci": [round(float(x), 1) for x in elo_ci[:, i]],
        })
    order = sorted(range(n), key=lambda i: -table[i]["bt"])
    matrix = win_rate_matrix(a, b, s, n)
    return {
        "n_battles": int(len(a)),
        "leaderboard": [table[i] for i in order],
        "win_rate_matrix": {"models": [models[i] for i in order],
                            "matrix": [[None if np.isnan(matrix[i, j]) else round(float(matrix[i, j]), 4)
                                        for j in order] for i in order]},
    }
