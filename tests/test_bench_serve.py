"""bench/serve_throughput.py's pure parts: percentile, the table, the last line and the missing-baseline path.

No server is started and nothing is timed (the bench itself measures).
"""

from pathlib import Path

import pytest

from conftest import bench_script


@pytest.fixture(scope="module")
def bench():
    with bench_script("serve_throughput") as module:
        yield module


def test_percentile_interpolates_between_ranks(bench):
    values = [4.0, 1.0, 3.0, 2.0]
    assert bench.percentile(values, 0) == 1.0
    assert bench.percentile(values, 100) == 4.0
    assert bench.percentile(values, 50) == 2.5
    assert bench.percentile(values, 95) == pytest.approx(3.85)
    assert bench.percentile([7.0], 95) == 7.0
    with pytest.raises(ValueError):
        bench.percentile([], 50)


def test_summarize_is_tokens_over_wall_time(bench):
    r = bench.summarize([1.0, 2.0, 3.0], completion_tokens=90, wall=4.5)
    assert r == {"requests": 3, "tokens": 90, "tok_s": 20.0, "p50": 2.0, "p95": pytest.approx(2.9)}


def _result(tok_s):
    return {"requests": 32, "tokens": 1024, "tok_s": tok_s, "p50": 1.0, "p95": 2.0}


def test_last_line_compares_at_sixteen_clients(bench):
    results = {("hf batched", 16): _result(90.0), ("hf serial", 16): _result(30.0),
               ("hf batched", 4): _result(1.0), ("hf serial", 4): _result(100.0),
               ("llamacpp", 16): _result(50.0), ("llama_cpp.server", 16): _result(40.0)}
    assert bench.last_line(results) == "serve_batch_speedup_16=3.00 llamacpp_ratio_vs_llama_cpp_server=1.25"


def test_last_line_says_na_for_a_side_not_measured(bench):
    results = {("hf batched", 16): _result(45.0), ("hf serial", 16): _result(30.0)}
    assert bench.last_line(results) == "serve_batch_speedup_16=1.50 llamacpp_ratio_vs_llama_cpp_server=n/a"


def test_table_has_one_row_per_configuration(bench):
    lines = bench.table({("hf serial", 1): _result(12.34), ("llamacpp", 16): _result(5.0)}).splitlines()
    assert lines[0].split() == ["server", "clients", "requests", "tokens", "tok/s", "p50", "s", "p95", "s"]
    assert lines[1].split() == ["hf", "serial", "1", "32", "1024", "12.3", "1.00", "2.00"]
    assert lines[2].split() == ["llamacpp", "16", "32", "1024", "5.0", "1.00", "2.00"]


def test_missing_baseline_drops_only_llama_cpp_server(bench, monkeypatch):
    gguf = Path("/models/x.gguf")
    assert list(bench.server_commands(gguf)) == ["hf batched", "hf serial", "llamacpp", "llama_cpp.server"]
    assert list(bench.server_commands(gguf, baseline=False)) == ["hf batched", "hf serial", "llamacpp"]
    assert list(bench.server_commands(None)) == ["hf batched", "hf serial"]
    line = bench.baselines.missing("no_such_module_for_the_bench")
    assert line.startswith("baseline missing: no_such_module_for_the_bench not installed; ")
    assert "pip install no_such_module_for_the_bench" in line


def test_both_llama_cpp_servers_get_the_same_context_and_threads(bench):
    commands = bench.server_commands(Path("/models/x.gguf"))
    ours, theirs = commands["llamacpp"], commands["llama_cpp.server"]
    assert ours[ours.index("--n_ctx") + 1] == theirs[theirs.index("--n_ctx") + 1] == str(bench.N_CTX)
    threads, threads_batch = bench.llama_threads()
    assert theirs[theirs.index("--n_threads") + 1] == str(threads)
    assert theirs[theirs.index("--n_threads_batch") + 1] == str(threads_batch)
    assert commands["hf batched"][-1] == "16" and commands["hf serial"][-1] == "1"
