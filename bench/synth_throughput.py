"""Teacher throughput: our Teacher against distilabel, through the same stand-in OpenAI-compatible server.

The server is tests/standin_teacher.py, run in this process on 127.0.0.1 (a free port): SLOTS requests
served at once (more wait for a slot, as on vLLM or llama.cpp's server), each taking LATENCY seconds, every
reply the same WORDS-word text. So the most any client can get is SLOTS / LATENCY completions per second.
Each side runs in its own subprocess against a fresh server with the same settings, one after the other,
and asks for the same N completions of the same N prompts (one user message each, max_tokens 128,
temperature 0.7). Each child times its own work, from before it opens its client to the last completion
in hand (interpreter start and imports not counted):

  ours        open_teacher(URL, concurrency=2 x SLOTS, cache in a fresh temp dir) and one `ask` of all N
              requests: every reply appended to the cache and fsynced, as in a real run. Twice the slots:
              the server queues what its slots cannot take yet (as vLLM and llama.cpp's server do), so a
              slot never idles for the client's round trip between one reply and the next request; with
              exactly SLOTS in flight every such round trip is a slot's idle time (on a loaded 2-core
              machine ~50 ms per 0.2 s request: utilization ~0.75). `--concurrency` sets it.
  distilabel  distilabel 1.5.3 as its users run it: a Pipeline LoadDataFromDicts >> TextGeneration over
              OpenAILLM(base_url=URL) with its defaults (input_batch_size 50), pipeline.run(use_cache=False);
              the pipeline's worker processes start inside the timed span, as they do for a user.
              `--distilabel llm` times OpenAILLM.generate_outputs over all N inputs at once instead
              (its fastest path: every request in flight together, no pipeline).

Last line:  synth_speedup_vs_distilabel=X.XX teacher_utilization=Y.YY
  speedup = distilabel seconds / our seconds;  utilization = our completions/s / (SLOTS / LATENCY).

Run: .venv/bin/python bench/synth_throughput.py [--n 400] [--slots 8] [--latency 0.2] [--distilabel pipeline|llm]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import baselines

ROOT = Path(__file__).resolve().parents[1]
MAX_TOKENS = 128
TEMPERATURE = 0.7
WORDS = 60


def prompts(n: int) -> list[str]:
    return [f"Write three facts about specimen {i} of the Kestrel Island basalt." for i in range(n)]


def utilization(n: int, seconds: float, slots: int, latency: float) -> float:
    """Completions per second over the most the server's slots allow."""
    return (n / seconds) / (slots / latency)


def last_line(ours_s: float, distilabel_s: float | None, util: float) -> str:
    speedup = f"{distilabel_s / ours_s:.2f}" if distilabel_s else "nan"
    return f"synth_speedup_vs_distilabel={speedup} teacher_utilization={util:.2f}"


# ---- the children (each prints one JSON line: seconds, completions)

def child_ours(url: str, n: int, concurrency: int) -> dict:
    from subjectlm.synth.teacher import TeacherRequest, open_teacher

    requests = [TeacherRequest([{"role": "user", "content": p}], max_tokens=MAX_TOKENS, temperature=TEMPERATURE)
                for p in prompts(n)]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        teacher = open_teacher(url, "standin", None, concurrency, Path(tmp) / "cache.jsonl", progress=False)
        replies = teacher.ask(requests)
        seconds = time.perf_counter() - start
        teacher.close()
    return {"seconds": seconds, "completions": sum(r.ok for r in replies)}


def child_distilabel(url: str, n: int, mode: str) -> dict:
    import logging

    from distilabel.models import OpenAILLM

    logging.disable(logging.WARNING)
    llm_args = {"model": "standin", "base_url": url, "api_key": "unused", "max_retries": 0, "timeout": 600}
    generation = {"max_new_tokens": MAX_TOKENS, "temperature": TEMPERATURE}
    if mode == "llm":
        start = time.perf_counter()
        llm = OpenAILLM(**llm_args)
        llm.load()
        outputs = llm.generate_outputs(inputs=[[{"role": "user", "content": p}] for p in prompts(n)],
                                       num_generations=1, **generation)
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "completions": sum(bool(o["generations"][0]) for o in outputs)}

    from distilabel.pipeline import Pipeline
    from distilabel.steps import LoadDataFromDicts
    from distilabel.steps.tasks import TextGeneration

    with tempfile.TemporaryDirectory() as tmp:
        with Pipeline(name="synth-throughput", cache_dir=tmp) as pipeline:
            load = LoadDataFromDicts(data=[{"instruction": p} for p in prompts(n)])
            generate = TextGeneration(llm=OpenAILLM(**llm_args, generation_kwargs=generation))
            load >> generate
        start = time.perf_counter()
        distiset = pipeline.run(use_cache=False)
        seconds = time.perf_counter() - start
    rows = distiset["default"]["train"]
    return {"seconds": seconds, "completions": sum(bool(g) for g in rows["generation"])}


# ---- the parent

def run_side(side: str, args: argparse.Namespace) -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    from standin_teacher import Reply, StandinTeacher

    text = " ".join(["basalt"] * WORDS)
    with StandinTeacher(lambda request: Reply(text), slots=args.slots, latency=args.latency,
                        max_requests=args.n * 3, max_seconds=args.timeout) as server:
        command = [sys.executable, __file__, "--child", side, "--url", server.url, "--n", str(args.n),
                   "--concurrency", str(args.concurrency), "--distilabel", args.distilabel]
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout, cwd=ROOT)
        if done.returncode != 0:
            raise SystemExit(f"{side} failed:\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        result.update(sent=server.total, peak=server.peak)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=400, help="completions per side")
    parser.add_argument("--slots", type=int, default=8, help="requests the stand-in serves at once")
    parser.add_argument("--latency", type=float, default=0.2, help="seconds each request takes on the stand-in")
    parser.add_argument("--concurrency", type=int, default=None, help="our requests in flight (default: 2 x --slots)")
    parser.add_argument("--distilabel", choices=("pipeline", "llm"), default="pipeline")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds a side may take")
    parser.add_argument("--child", choices=("ours", "distilabel"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.concurrency = args.concurrency or 2 * args.slots
    if args.child:
        out = (child_ours(args.url, args.n, args.concurrency) if args.child == "ours"
               else child_distilabel(args.url, args.n, args.distilabel))
        print(json.dumps(out))
        return 0

    print(f"stand-in server: {args.slots} slots x {args.latency} s -> at most {args.slots / args.latency:.1f} "
          f"completions/s; {args.n} completions per side")
    results = {"ours": run_side("ours", args)}
    absent = baselines.missing("distilabel", "openai")
    if absent:
        print(absent)
    else:
        results[f"distilabel ({args.distilabel})"] = run_side("distilabel", args)
    print(f"{'side':<24} {'seconds':>8} {'compl/s':>8} {'util':>6} {'ok':>5} {'sent':>5} {'peak':>5}")
    for name, r in results.items():
        util = utilization(r["completions"], r["seconds"], args.slots, args.latency)
        print(f"{name:<24} {r['seconds']:>8.2f} {r['completions'] / r['seconds']:>8.1f} {util:>6.2f} "
              f"{r['completions']:>5} {r['sent']:>5} {r['peak']:>5}")
    ours = results["ours"]
    other = next((r for name, r in results.items() if name != "ours"), None)
    print(last_line(ours["seconds"], other["seconds"] if other else None,
                    utilization(ours["completions"], ours["seconds"], args.slots, args.latency)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
