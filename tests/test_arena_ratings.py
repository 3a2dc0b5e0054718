"""Ratings: golden Elo steps, Bradley-Terry against its closed form, and a synthetic log with a known order."""

import math

import numpy as np
import pytest

from subjectlm.arena.ratings import bradley_terry, encode, online_elo, rate, to_elo_scale, win_rate_matrix


def _battle(a, b, winner, category="all"):
    return {"prompt_id": "p", "model_a": a, "model_b": b, "winner": winner, "judge": "test", "category": category}


def test_online_elo_golden_steps():
    # x beats y from 1000/1000: expected 0.5, so each moves K * 0.5 = 2 points.
    r = online_elo(np.array([0]), np.array([1]), np.array([1.0]), 2)
    assert r.tolist() == [1002.0, 998.0]
    # then y (as A) beats x: expected for y = 1 / (1 + 10 ** (4 / 400)).
    r = online_elo(np.array([0, 1]), np.array([1, 0]), np.array([1.0, 1.0]), 2)
    step = 4 * (1 - 1 / (1 + 10 ** (4 / 400)))
    assert r == pytest.approx([1002 - step, 998 + step], abs=1e-9)
    # A rows x battles stack runs every row as its own log.
    stacked = online_elo(np.array([[0, 1], [0, 1]]), np.array([[1, 0], [1, 0]]), np.array([[1.0, 1.0], [0.5, 0.5]]), 2)
    assert stacked[0] == pytest.approx(r) and stacked[1] == pytest.approx([1000, 1000])


def test_bradley_terry_two_models_closed_form():
    # 3 points to 1: the MLE gap is ln 3 (shrunk a hair by the weak prior), i.e. 191 Elo points.
    theta = bradley_terry(np.array([[0.0, 3.0], [1.0, 0.0]]))
    assert theta.sum() == pytest.approx(0, abs=1e-12)
    assert theta[0] - theta[1] == pytest.approx(math.log(3), abs=2e-3)
    assert to_elo_scale(theta)[0] - to_elo_scale(theta)[1] == pytest.approx(400 * math.log10(3), abs=0.5)
    # A model that never lost keeps a finite rating.
    assert np.isfinite(bradley_terry(np.array([[0.0, 5.0], [0.0, 0.0]]))).all()


def test_win_rate_matrix_counts_ties_and_both_bad_as_half():
    battles = [_battle("x", "y", "A"), _battle("y", "x", "tie"), _battle("x", "y", "both-bad"), _battle("y", "x", "A")]
    a, b, s = encode(battles, ["x", "y"])
    m = win_rate_matrix(a, b, s, 2)
    assert m[0, 1] == pytest.approx((1 + 0.5 + 0.5 + 0) / 4) and m[1, 0] == pytest.approx(0.5)
    assert np.isnan(m[0, 0])


def _synthetic(n=1500, seed=1):
    """Battles drawn from known Bradley-Terry strengths weak < mid < strong, 10% ties."""
    rng = np.random.default_rng(seed)
    models = ["weak", "mid", "strong"]
    theta = {"weak": 0.0, "mid": 0.8, "strong": 1.6}
    out = []
    for _ in range(n):
        i, j = rng.choice(3, 2, replace=False)
        a, b = models[i], models[j]
        p = 1 / (1 + math.exp(-(theta[a] - theta[b])))
        winner = "tie" if rng.random() < 0.1 else ("A" if rng.random() < p else "B")
        out.append(_battle(a, b, winner, category="even" if len(out) % 2 else "odd"))
    return out


def test_known_order_recovered_with_separated_intervals():
    result = rate(_synthetic(), ["mid", "strong", "weak"], n_bootstrap=300, seed=0)
    board = result["leaderboard"]
    assert [r["model"] for r in board] == ["strong", "mid", "weak"]
    assert result["n_battles"] == 1500
    for key in ("bt", "elo"):
        values = [r[key] for r in board]
        assert values == sorted(values, reverse=True)
        for upper, lower in zip(board, board[1:]):
            # the intervals separate: the better model's lower bound is above the next one's upper bound
            assert upper[f"{key}_ci"][0] > lower[f"{key}_ci"][1], (key, upper, lower)
        for r in board:
            assert r[f"{key}_ci"][0] <= r[key] <= r[f"{key}_ci"][1]
    # The true gap is 0.8 in theta (139 Elo points) per step; ties dilute it a little.
    gaps = [board[0]["bt"] - board[1]["bt"], board[1]["bt"] - board[2]["bt"]]
    assert all(80 < g < 170 for g in gaps) and 200 < sum(gaps) < 290, gaps
    assert sum(r["bt"] for r in board) / 3 == pytest.approx(1000, abs=0.1)
    matrix = result["win_rate_matrix"]
    assert matrix["models"] == ["strong", "mid", "weak"]
    assert matrix["matrix"][0][2] > matrix["matrix"][0][1] > 0.5 > matrix["matrix"][1][0]


def test_bootstrap_is_reproducible_and_empty_log_is_flat():
    battles = _synthetic(200)
    assert rate(battles, ["weak", "mid", "strong"], 50, seed=3) == rate(battles, ["weak", "mid", "strong"], 50, seed=3)
    empty = rate([], ["x", "y"], 10)
    assert [r["bt"] for r in empty["leaderboard"]] == [1000.0, 1000.0]
    assert empty["n_battles"] == 0 and empty["leaderboard"][0]["win_rate"] is None
