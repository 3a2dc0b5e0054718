"""bench/eval_speed.py's pure parts: the alternating rounds and how a side's rounds are joined.

Nothing is timed and no model is loaded (the bench itself measures).
"""

import pytest

from conftest import bench_script


@pytest.fixture(scope="module")
def bench():
    with bench_script("eval_speed") as module:
        yield module


def test_one_round_is_the_old_order(bench):
    assert bench.round_schedule(["a", "b", "c"], 1) == [(["a", "b", "c"], ("ours", "lmeval"))]


def test_rounds_deal_the_subjects_and_alternate_who_goes_first(bench):
    subjects = [f"s{i}" for i in range(5)]
    schedule = bench.round_schedule(subjects, 2)
    assert schedule == [(["s0", "s2", "s4"], ("ours", "lmeval")), (["s1", "s3"], ("lmeval", "ours"))]
    assert sorted(s for group, _ in bench.round_schedule(subjects, 3) for s in group) == subjects
    # more rounds than subjects: one subject a round, none empty
    assert [group for group, _ in bench.round_schedule(["x", "y"], 4)] == [["x"], ["y"]]
    assert bench.round_schedule(["x"], 0) == [(["x"], ("ours", "lmeval"))]


def test_merge_rounds_sums_time_keeps_peak_and_joins_questions(bench):
    first = {"seconds": 10.0, "rss_mb": 900.0, "predictions": {"a/0": 1}, "prompts": {"a/0": "p"}}
    second = {"seconds": 5.5, "rss_mb": 1200.0, "predictions": {"b/0": 2}, "prompts": {"b/0": "q"}}
    merged = bench.merge_rounds([first, second])
    assert merged == {"seconds": 15.5, "rss_mb": 1200.0, "round_seconds": [10.0, 5.5],
                      "predictions": {"a/0": 1, "b/0": 2}, "prompts": {"a/0": "p", "b/0": "q"}}
    lm = bench.merge_rounds([{"seconds": 1.0, "rss_mb": 1.0, "predictions": {}, "contexts": {}, "version": "0.4.13"}])
    assert lm["version"] == "0.4.13" and lm["contexts"] == {} and "prompts" not in lm


def test_table_prints_each_rounds_ratio(bench, capsys):
    ours = {"seconds": 30.0, "rss_mb": 1000.0, "round_seconds": [10.0, 20.0]}
    theirs = {"seconds": 180.0, "rss_mb": 9000.0, "round_seconds": [60.0, 120.0]}
    bench._table(ours, theirs, 30)
    assert "per round (ours s / lm-eval s = ratio): 10.0 / 60.0 = 6.00, 20.0 / 120.0 = 6.00" in capsys.readouterr().out
