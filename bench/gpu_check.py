"""The GPU paths, proven in one command (issue #17): one line per path, PASS / FAIL / SKIP, the figure that
proves it, and the time.

    python bench/gpu_check.py --prepare          # here, once: copy what the device needs into .device/
    python bench/gpu_check.py --dry-run          # anywhere (CI, make test): arguments, imports, CLI flags
    python bench/gpu_check.py                    # on a CUDA machine: every path, within --budget seconds

Paths: pt, sft and dpo for 20 steps in bf16 (sft with selective and with full checkpointing, packed) against
the same run in fp32 on the same GPU; the exam on 5 real C-Eval subjects (letter scoring, and cloze when
`subjectlm eval exam` has --scoring); shared-prefix log-probs against full prompts (<= 1e-3 in bf16,
<= 1e-4 in fp32) and their speed; merge --verify; export gguf f16 + q8_0 with verify; the server answering
the openai client; `accelerate launch --num_processes 1` with an FSDP and a DeepSpeed ZeRO-2 config.
A path whose library is absent on the machine says SKIP and which one.

Every path runs as its own process (the `subjectlm` CLI, or this file with --worker), so the budget is
enforced by killing it; a path that would start with less than a minimum left says SKIP. Results go to
OUT/gpu_check.json (all lines and figures) and OUT/gpu_check.md (a table), rewritten after every line;
OUT is --out, else $OUT, else bench/results/. bench/GPU.md says how to run it on the device machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
DEVICE_DIR = REPO / ".device"  # ignored by git; travels with `carry: [".device"]`
SHARED_CEVAL = REPO.parent / "shared" / "ceval-exam"
SUBJECTS = ("computer_network", "logic", "college_physics", "high_school_biology", "modern_chinese_history")
STEPS = 20
DIST_STEPS = 5
BF16_LOSS_TOLERANCE = 0.02  # relative difference of the final loss, bf16 mixed precision vs fp32
PREFIX_TOLERANCE = {"bf16": 1e-3, "fp32": 1e-4}  # max |log p| difference, shared prefix vs full prompt
MIN_SECONDS = 20  # a path is not started with less than this left of the budget
# Libraries the device image may lack, and which paths need them (bench/GPU.md: carried as wheels).
NEEDS = {"dpo": ("trl",), "export": ("gguf", "llama_cpp"), "serve": ("fastapi", "uvicorn", "openai"),
         "deepspeed": ("deepspeed",), "train": ("datasets",)}


# What the device image lacks or has in another version than this venv, carried as wheels (bench/GPU.md).
# Pinned to the versions installed here, so the device runs what the tests ran. deepspeed publishes only an
# sdist: its pure-Python wheel is built here (ops compile on the device at first use). llama-cpp-python is
# an sdist too, but the wheel `make install` built is tagged py3-none-linux_x86_64 (it loads llama.cpp through
# ctypes), so pip's cache of it travels as it is; without it the export line SKIPs.
DEVICE_WHEELS = ("transformers", "huggingface-hub", "peft", "datasets", "dill", "multiprocess", "trl", "gguf",
                 "fastapi", "starlette", "pydantic", "pydantic-core", "typing-inspection", "annotated-types",
                 "uvicorn", "openai", "jiter", "distro", "sniffio", "hjson", "diskcache")
BUILT_WHEELS = ("deepspeed",)
WHEEL_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
                   "manylinux1_x86_64")


class Skip(Exception):
    """The path cannot run here; the message says why."""


class Fail(Exception):
    """The path ran and did not prove what it should; the message is the evidence."""


@dataclasses.dataclass
class Line:
    name: str
    status: str  # PASS | FAIL | SKIP
    figure: str
    seconds: float

    def text(self) -> str:
        return f"{self.status:<4}  {self.name:<26} {self.seconds:6.1f}s  {self.figure}"


# ---- the plan: every CLI call this script makes, built in one place (dry-run parses each one)


@dataclasses.dataclass
class Ctx:
    work: Path
    default: str = ""  # the default model, or a random-weight model of its shape (see build_models)
    default_label: str = ""
    tiny: str = ""
    scoring: bool = False  # `eval exam --scoring` exists
    device: str = "cuda"
    quick: bool = False  # --tiny-only: a check of this script (a few questions per subject)

    def out(self, name: str) -> str:
        return str(self.work / name)


def train_argv(ctx: Ctx, kind: str, name: str, bf16: bool, checkpointing: str | None, model: str | None = None,
               steps: int = STEPS) -> list[str]:
    data = {"pt": "examples/data/corpus", "sft": "examples/data/sft", "dpo": "examples/data/dpo"}[kind]
    argv = [kind, "--model", model or ctx.default, "--data", str(REPO / data), "--output_dir", ctx.out(name),
            "--max_steps", str(steps), "--per_device_train_batch_size", "4", "--learning_rate", "2e-4",
            "--warmup_steps", "0", "--logging_steps", "1", "--save_steps", "1000", "--report_to", "none",
            "--seed", "0", "--overwrite_output_dir", "--bf16", "true" if bf16 else "false"]
    argv += {"pt": ["--block_size", "128"], "sft": ["--max_seq_length", "256", "--packing", "true"],
             "dpo": ["--max_length", "256", "--per_device_train_batch_size", "2"]}[kind]
    if checkpointing:
        argv += ["--gradient_checkpointing", "--gradient_checkpointing_mode", checkpointing]
    return argv


def exam_argv(ctx: Ctx, scoring: str) -> list[str]:
    argv = ["eval", "exam", "--model", ctx.default, "--data", str(DEVICE_DIR / "ceval"), "--subjects",
            ",".join(SUBJECTS), "--shots", "5", "--backend", "hf", "--dtype", "bf16", "--device", ctx.device,
            "--batch_size", "8", "--output_dir", ctx.out(f"exam-{scoring}"), "--overwrite"]
    return argv + (["--scoring", scoring] if ctx.scoring else [])


def merge_argv(ctx: Ctx) -> list[str]:
    return ["merge", "--base", ctx.default, "--lora", ctx.out("sft-fp32"), "--output_dir", ctx.out("merged"),
            "--verify", "--overwrite"]


def export_argv(ctx: Ctx) -> list[str]:
    return ["export", "gguf", "--model", ctx.out("merged"), "--output", ctx.out("gguf/model.gguf"),
            "--outtype", "f16", "--quantize", "q8_0", "--verify", "--overwrite"]


def serve_argv(ctx: Ctx, port: int) -> list[str]:
    return ["serve", "--model", ctx.default, "--backend", "hf", "--port", str(port)]


def cli_calls(ctx: Ctx) -> list[list[str]]:
    """Every subjectlm command line the real run uses (for --dry-run to parse)."""
    calls = [train_argv(ctx, k, f"{k}-x", bf16, ck) for k in ("pt", "sft", "dpo")
             for bf16, ck in ((False, None), (True, "selective"), (True, "full"))]
    calls += [exam_argv(ctx, "letter"), merge_argv(ctx), export_argv(ctx), serve_argv(ctx, 8000)]
    if ctx.scoring:
        calls.append(exam_argv(ctx, "cloze"))
    return calls


ACCELERATE_CONFIGS = {
    "fsdp": {
        "compute_environment": "LOCAL_MACHINE", "distributed_type": "FSDP", "mixed_precision": "bf16",
        "num_machines": 1, "num_processes": 1, "machine_rank": 0, "use_cpu": False,
        "fsdp_config": {"fsdp_version": 1, "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
                        "fsdp_sharding_strategy": "FULL_SHARD", "fsdp_state_dict_type": "FULL_STATE_DICT",
                        "fsdp_use_orig_params": True, "fsdp_sync_module_states": True,
                        "fsdp_offload_params": False, "fsdp_backward_prefetch": "BACKWARD_PRE",
                        "fsdp_cpu_ram_efficient_loading": False},
    },
    "deepspeed": {
        "compute_environment": "LOCAL_MACHINE", "distributed_type": "DEEPSPEED", "mixed_precision": "bf16",
        "num_machines": 1, "num_processes": 1, "machine_rank": 0, "use_cpu": False,
        "deepspeed_config": {"zero_stage": 2, "offload_optimizer_device": "none", "offload_param_device": "none",
                             "gradient_accumulation_steps": 1, "gradient_clipping": 1.0, "zero3_init_flag": False},
    },
}


def write_accelerate_config(ctx: Ctx, name: str) -> Path:
    import yaml

    path = ctx.work / f"accelerate-{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(ACCELERATE_CONFIGS[name], sort_keys=False))
    return path


# ---- running things under the budget


class Budget:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def timeout(self, cap: float) -> float:
        left = self.left()
        if left < MIN_SECONDS:
            raise Skip(f"time budget spent ({max(left, 0):.0f}s left)")
        return min(cap, left)


def child_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
    # The checkout's src first: the device machine runs the tree as it travelled, not an installed copy.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH", "")) if p)
    return env


def run(argv: list[str], budget: Budget, cap: float, log: Path) -> str:
    """Run a command (killed at the budget); its output is kept in `log`; a non-zero exit is a Fail."""
    try:
        proc = subprocess.run(argv, cwd=REPO, env=child_env(), capture_output=True, text=True,
                              timeout=budget.timeout(cap))
    except subprocess.TimeoutExpired as exc:
        def text(part) -> str:  # TimeoutExpired keeps bytes even under text=True
            return part.decode(errors="replace") if isinstance(part, bytes) else part or ""

        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"$ {' '.join(argv)}\n{text(exc.stdout)}\n--- stderr\n{text(exc.stderr)}")
        raise Fail(f"killed after {exc.timeout:.0f}s (time budget)") from None
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(f"$ {' '.join(argv)}\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    if proc.returncode != 0:
        tail = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()][-1:] or ["no output"]
        raise Fail(f"exit {proc.returncode}: {tail[0][:200]}")
    return proc.stdout


def subjectlm(argv: list[str], budget: Budget, cap: float, ctx: Ctx, name: str) -> str:
    return run([sys.executable, "-m", "subjectlm", *argv], budget, cap, ctx.work / "logs" / f"{name}.log")


def worker(mode: str, budget: Budget, cap: float, ctx: Ctx, *extra: str) -> dict:
    out = run([sys.executable, str(Path(__file__).resolve()), "--worker", mode, "--work", str(ctx.work), *extra],
              budget, cap, ctx.work / "logs" / f"worker-{mode}.log")
    return json.loads(out.strip().splitlines()[-1])


def missing(*modules: str) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def need(*modules: str) -> None:
    absent = missing(*modules)
    if absent:
        raise Skip(f"not installed here: {', '.join(absent)} (carry the wheels: bench/GPU.md)")


# ---- the paths


def final_loss(ctx: Ctx, name: str) -> float:
    summary = json.loads((ctx.work / name / "train_summary.json").read_text())
    loss = summary.get("final_loss")
    if loss is None or not math.isfinite(loss):
        raise Fail(f"final loss {loss}")
    return float(loss)


def check_train(kind: str, name: str, bf16: bool, checkpointing: str | None, ctx: Ctx, budget: Budget) -> str:
    need(*NEEDS["train"], *(NEEDS["dpo"] if kind == "dpo" else ()))
    subjectlm(train_argv(ctx, kind, name, bf16, checkpointing), budget, 180, ctx, name)
    loss = final_loss(ctx, name)
    if not bf16:
        return f"fp32 loss {loss:.4f} after {STEPS} steps ({ctx.default_label})"
    base = ctx.work / f"{kind}-fp32" / "train_summary.json"
    if not base.is_file():
        raise Fail(f"bf16 loss {loss:.4f}; no fp32 run to compare with")
    ref = final_loss(ctx, f"{kind}-fp32")
    rel = abs(loss - ref) / abs(ref)
    figure = f"bf16 loss {loss:.4f} vs fp32 {ref:.4f}: rel diff {rel:.2%} (limit {BF16_LOSS_TOLERANCE:.0%})"
    if rel > BF16_LOSS_TOLERANCE:
        raise Fail(figure)
    return figure


def check_exam(scoring: str, ctx: Ctx, budget: Budget) -> str:
    if not (DEVICE_DIR / "ceval").is_dir():
        raise Skip(f"{DEVICE_DIR / 'ceval'} missing: run `python bench/gpu_check.py --prepare` first")
    if scoring != "letter" and not ctx.scoring:
        raise Skip("`subjectlm eval exam` has no --scoring flag in this checkout")
    start = time.monotonic()
    subjectlm(exam_argv(ctx, scoring), budget, 240, ctx, f"exam-{scoring}")
    seconds = time.monotonic() - start
    summary = json.loads((ctx.work / f"exam-{scoring}" / "summary.json").read_text())
    count, accuracy = summary.get("count"), summary.get("macro")
    if not count or accuracy is None:
        raise Fail(f"no questions scored: count {count}, macro accuracy {accuracy}")
    return (f"{len(SUBJECTS)} C-Eval subjects, {count} questions, {summary.get('primary_mode', scoring)} accuracy "
            f"{accuracy:.3f} ({ctx.default_label}), {count / seconds:.1f} questions/s including load")


def check_prefix(dtype: str, ctx: Ctx, budget: Budget, results: dict) -> str:
    if not (DEVICE_DIR / "ceval").is_dir():
        raise Skip(f"{DEVICE_DIR / 'ceval'} missing: run `python bench/gpu_check.py --prepare` first")
    if not results:  # one worker measures both dtypes; its failure is both lines' failure
        try:
            cap = 240 if ctx.device.startswith("cuda") else 900  # a CPU tries the script, slowly
            results.update(worker("prefix", budget, cap, ctx, "--model", ctx.default, "--device", ctx.device,
                                  *(["--tiny-only"] if ctx.quick else [])))
        except Fail as exc:
            results["failed"] = str(exc)
    if "failed" in results:
        raise Fail(results["failed"])
    got = results[dtype]
    figure = (f"max |dlogp| {got['max_diff']:.2e} over {got['questions']} questions (limit {PREFIX_TOLERANCE[dtype]:.0e}); "
              f"{got['qps']:.1f} questions/s shared-prefix vs {got['full_qps']:.1f} full prompts")
    if got["max_diff"] > PREFIX_TOLERANCE[dtype]:
        raise Fail(figure)
    return figure


def check_merge(ctx: Ctx, budget: Budget) -> str:
    if not (ctx.work / "sft-fp32" / "adapter_config.json").is_file():
        raise Skip("no sft adapter (the sft-fp32 path did not finish)")
    out = subjectlm(merge_argv(ctx), budget, 180, ctx, "merge")
    lines = [ln.strip() for ln in out.splitlines() if "verif" in ln.lower() or "diff" in ln.lower()]
    return lines[-1][:160] if lines else out.strip().splitlines()[0][:160]


def check_export(ctx: Ctx, budget: Budget) -> str:
    need(*NEEDS["export"])
    if not (ctx.work / "merged" / "config.json").is_file():
        raise Skip("no merged model (the merge path did not finish)")
    out = subjectlm(export_argv(ctx), budget, 180, ctx, "export")
    rows = [" ".join(ln.split()) for ln in out.splitlines() if ".gguf" in ln and "|" in ln]
    return "; ".join(rows)[:240] or out.strip().splitlines()[-1][:200]


def check_serve(ctx: Ctx, budget: Budget) -> str:
    need(*NEEDS["serve"])
    import urllib.request

    port = 18000 + os.getpid() % 1000
    log = (ctx.work / "logs" / "serve.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "subjectlm", *serve_argv(ctx, port)], cwd=REPO, env=child_env(),
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + budget.timeout(120)
        while True:
            if server.poll() is not None:
                raise Fail(f"server exited {server.returncode} (see {log.name})")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise Fail("server did not answer /v1/models in time") from None
                time.sleep(1)
        from openai import OpenAI

        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused")
        model = client.models.list().data[0].id
        start = time.monotonic()
        reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "What is 2 + 2?"}],
                                               max_tokens=32, temperature=0)
        seconds = time.monotonic() - start
        text = reply.choices[0].message.content or ""
        tokens = reply.usage.completion_tokens if reply.usage else 0
        if not tokens:
            raise Fail(f"empty reply: {reply}")
        return f"openai client: {tokens} tokens in {seconds:.2f}s, reply {text[:40]!r}"
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def check_accelerate(name: str, ctx: Ctx, budget: Budget) -> str:
    need("accelerate", *NEEDS["train"], *NEEDS.get(name, ()))
    config = write_accelerate_config(ctx, name)
    argv = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), "--num_processes", "1",
            "-m", "subjectlm", *train_argv(ctx, "sft", f"accelerate-{name}", True, None, ctx.tiny, DIST_STEPS)]
    run(argv, budget, 240, ctx.work / "logs" / f"accelerate-{name}.log")
    loss = final_loss(ctx, f"accelerate-{name}")
    return f"{DIST_STEPS} sft steps on the tiny model under accelerate ({name}), loss {loss:.4f}"


def paths(ctx: Ctx, budget: Budget) -> list[tuple[str, Callable[[], str]]]:
    prefix: dict = {}
    plan: list[tuple[str, Callable[[], str]]] = []
    plan.append(("prefix-logprobs-bf16", lambda: check_prefix("bf16", ctx, budget, prefix)))
    plan.append(("prefix-logprobs-fp32", lambda: check_prefix("fp32", ctx, budget, prefix)))
    for kind, variants in (("sft", ((False, None), (True, "selective"), (True, "full"))),
                           ("pt", ((False, None), (True, "selective"))),
                           ("dpo", ((False, None), (True, "selective")))):
        for bf16, ck in variants:
            name = f"{kind}-{'bf16' if bf16 else 'fp32'}" + (f"-{ck}" if ck else "")
            plan.append((name, lambda k=kind, n=name, b=bf16, c=ck: check_train(k, n, b, c, ctx, budget)))
    plan.append(("exam-letter", lambda: check_exam("letter", ctx, budget)))
    plan.append(("exam-cloze", lambda: check_exam("cloze", ctx, budget)))
    plan.append(("merge-verify", lambda: check_merge(ctx, budget)))
    plan.append(("export-f16-q8_0-verify", lambda: check_export(ctx, budget)))
    plan.append(("serve-openai-client", lambda: check_serve(ctx, budget)))
    plan.append(("accelerate-fsdp", lambda: check_accelerate("fsdp", ctx, budget)))
    plan.append(("accelerate-deepspeed-zero2", lambda: check_accelerate("deepspeed", ctx, budget)))
    return plan


# ---- workers (run as subprocesses of this script)


def tokenizer_source() -> Path | None:
    """Where the SmolLM2 tokenizer and config come from: the prepared default model, or .device/smollm2."""
    from subjectlm.models import default_model_dir, is_model_dir

    if is_model_dir(default_model_dir()) and (default_model_dir() / "model.safetensors").is_file():
        return default_model_dir()
    return DEVICE_DIR / "smollm2" if (DEVICE_DIR / "smollm2" / "config.json").is_file() else None


def worker_build_models(work: Path, tiny_only: bool) -> dict:
    """The default model when it is here; else a random-weight model of its exact shape (its config and
    tokenizer travel, its 540 MB of weights cannot). Plus a 2-layer tiny model for the accelerate paths."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    source = tokenizer_source()
    if source is None:
        raise SystemExit("no default model and no .device/smollm2: run `python bench/gpu_check.py --prepare`")
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    models = {"default": "", "default_label": ""}
    if tiny_only:
        pass
    elif (source / "model.safetensors").is_file():
        models["default"], models["default_label"] = str(source), "default model SmolLM2-135M-Instruct"
    else:
        target = work / "models" / "smollm2-shape"
        if not (target / "config.json").is_file():
            torch.manual_seed(0)
            model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(str(source)))
            model.to(torch.float32).save_pretrained(target, safe_serialization=True)
            tokenizer.save_pretrained(target)
            for extra in ("chat_template.jinja", "generation_config.json"):
                if (source / extra).is_file():
                    shutil.copy(source / extra, target / extra)
        models["default"] = str(target)
        models["default_label"] = "SmolLM2-135M shape, random weights (the real weights do not travel)"
    tiny = work / "models" / "tiny-llama"
    if not (tiny / "config.json").is_file():
        torch.manual_seed(0)
        config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                             tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                             eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        AutoModelForCausalLM.from_config(config).save_pretrained(tiny, safe_serialization=True)
        tokenizer.save_pretrained(tiny)
    models["tiny"] = str(tiny)
    return models


def worker_prefix(model: str, device: str, quick: bool) -> dict:
    """Shared-prefix log-probs against one plain forward per full prompt, in bf16 and fp32 on CUDA."""
    import torch

    from subjectlm.backends.hf import HFBackend
    from subjectlm.eval.exam import prompts as P
    from subjectlm.eval.exam.directory import read_exam

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    fmt, exams = read_exam(DEVICE_DIR / "ceval", "ceval", "val", list(SUBJECTS))
    style = P.style(fmt)
    out = {}
    for dtype in ("bf16", "fp32"):
        backend = HFBackend(model, dtype=dtype, device=device, batch_size=8).scorer
        worst, questions, shared_s, full_s = 0.0, 0, 0.0, 0.0
        for exam in exams:
            docs = exam.docs[:3] if quick else exam.docs
            texts = [P.prompt(style, exam.info.name, exam.dev[:5], d) for d in docs]
            conts = P.continuations(style)
            backend.score_next(texts[:1], conts)  # warm-up (kernels, allocator)
            sync()
            start = time.perf_counter()
            reused = backend.score_next(texts, conts)
            sync()
            shared_s += time.perf_counter() - start
            start = time.perf_counter()
            for text, got in zip(texts, reused):
                ids = backend.continuation_ids(text, conts)
                tokens = torch.tensor([backend.encode(text)], device=backend.model.device)
                with torch.inference_mode():
                    logits = backend.model(input_ids=tokens).logits[0, -1].float()
                want = torch.log_softmax(logits, -1)[ids].tolist()
                worst = max(worst, max(abs(a - b) for a, b in zip(got, want)))
                questions += 1
            sync()
            full_s += time.perf_counter() - start
        out[dtype] = {"max_diff": worst, "questions": questions, "qps": questions / shared_s,
                      "full_qps": questions / full_s}
        del backend
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return out


# ---- prepare (here, before a device run) and dry-run (anywhere)


def download_wheels(target: Path) -> None:
    """pip download (an ordinary PyPI client) of DEVICE_WHEELS for the device's CPython 3.12 on x86-64."""
    from importlib.metadata import PackageNotFoundError, version

    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    platforms = [arg for p in WHEEL_PLATFORMS for arg in ("--platform", p)]
    for name in DEVICE_WHEELS:
        try:
            spec = f"{name}=={version(name)}"
        except PackageNotFoundError:
            spec = name
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                               "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(target),
                               spec], capture_output=True, text=True)
        print(f"wheel {spec}: {'ok' if proc.returncode == 0 else 'FAILED ' + proc.stderr.strip()[-200:]}")
    for name in BUILT_WHEELS:  # needs torch at build time: --no-build-isolation builds against this venv's
        proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                               str(target), name], capture_output=True, text=True, env=dict(os.environ, DS_BUILD_OPS="0"))
        print(f"wheel {name} (built): {'ok' if proc.returncode == 0 else 'FAILED ' + proc.stderr.strip()[-200:]}")
    try:
        llama = f"llama_cpp_python-{version('llama-cpp-python')}-py3-none-linux_x86_64.whl"
    except PackageNotFoundError:
        llama = "llama_cpp_python-*-py3-none-linux_x86_64.whl"
    cached = sorted((Path.home() / ".cache" / "pip" / "wheels").rglob(llama))
    if cached:
        shutil.copy(cached[-1], target)
    print(f"wheel llama-cpp-python (from pip's cache of the local build): {'ok' if cached else 'not found: export SKIPs'}")


def prepare(wheels: bool = False) -> None:
    """Copy into .device/ what the device machine needs and cannot reach: 5 C-Eval subjects from ../shared,
    the default model's config and tokenizer (its weights are too large to travel), and with `wheels` the
    Python packages it lacks."""
    if not SHARED_CEVAL.is_dir():
        raise SystemExit(f"{SHARED_CEVAL} not found: the C-Eval copy comes from ../shared")
    target = DEVICE_DIR / "ceval"
    shutil.rmtree(target, ignore_errors=True)
    for split in ("dev", "val"):
        (target / split).mkdir(parents=True)
        for subject in SUBJECTS:
            shutil.copy(SHARED_CEVAL / split / f"{subject}_{split}.csv", target / split)
    mapping = json.loads((SHARED_CEVAL / "subject_mapping.json").read_text(encoding="utf-8"))
    (target / "subject_mapping.json").write_text(json.dumps({s: mapping[s] for s in SUBJECTS}, ensure_ascii=False,
                                                            indent=1), encoding="utf-8")
    from subjectlm.models import resolve_model

    model = resolve_model("default")
    shape = DEVICE_DIR / "smollm2"
    shutil.rmtree(shape, ignore_errors=True)
    shape.mkdir(parents=True)
    for name in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json", "chat_template.jinja"):
        if (model / name).is_file():
            shutil.copy(model / name, shape / name)
    if wheels:
        download_wheels(DEVICE_DIR / "wheels")
    size = sum(p.stat().st_size for p in DEVICE_DIR.rglob("*") if p.is_file())
    print(f"prepared {DEVICE_DIR}: {len(SUBJECTS)} C-Eval subjects, SmolLM2 config + tokenizer, {size / 2**20:.1f} MiB")


def dry_run(ctx: Ctx) -> list[str]:
    """Everything that can be checked without a GPU: imports, every CLI call parses, configs load."""
    from subjectlm.cli import build_parser

    problems = []
    for module, names in (("subjectlm.backends.hf", ("HFBackend",)), ("subjectlm.backends.score_hf", ("HFScorer",)),
                          ("subjectlm.eval.exam.prompts", ("prompt", "continuations", "style")),
                          ("subjectlm.eval.exam.directory", ("read_exam",)),
                          ("subjectlm.models", ("default_model_dir", "is_model_dir", "resolve_model"))):
        try:
            imported = importlib.import_module(module)
            problems += [f"{module}.{n} is gone" for n in names if not hasattr(imported, n)]
        except ImportError as exc:
            problems.append(f"import {module}: {exc}")
    for argv in cli_calls(ctx):
        try:
            build_parser().parse_args(argv)
        except SystemExit:
            problems.append(f"`subjectlm {' '.join(argv[:3])} ...` does not parse: {' '.join(argv)}")
    if missing("accelerate"):
        problems.append("accelerate is not installed")
    else:
        from accelerate.commands.config.config_args import ClusterConfig

        for name in ACCELERATE_CONFIGS:
            try:
                ClusterConfig.from_yaml_file(str(write_accelerate_config(ctx, name)))
            except Exception as exc:  # noqa: BLE001 - any rejection of the file is the finding
                problems.append(f"accelerate does not load the {name} config: {exc}")
    return problems


def has_scoring_flag() -> bool:
    from subjectlm.cli import build_parser

    parser = build_parser()
    for action in parser._subparsers._group_actions:  # subjectlm -> eval -> exam
        evaluate = action.choices["eval"]
        for sub in evaluate._subparsers._group_actions:
            return "--scoring" in sub.choices["exam"].format_help()
    return False


# ---- output


def write_outputs(out: Path, lines: list[Line], meta: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    doc = {**meta, "lines": [dataclasses.asdict(ln) for ln in lines]}
    tmp = out / ".gpu_check.json.tmp"
    tmp.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    tmp.replace(out / "gpu_check.json")
    rows = [f"| {ln.name} | {ln.status} | {ln.figure.replace('|', '/')} | {ln.seconds:.1f} |" for ln in lines]
    head = f"GPU check, {meta.get('date')}, {meta.get('gpu')}, torch {meta.get('torch')}, {meta.get('model')}\n\n"
    table = "| path | result | figure | seconds |\n| --- | --- | --- | --- |\n" + "\n".join(rows) + "\n"
    tmp = out / ".gpu_check.md.tmp"
    tmp.write_text(head + table)
    tmp.replace(out / "gpu_check.md")


def machine() -> dict:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "gpu": gpu, "torch": torch.__version__,
            "cuda": torch.version.cuda}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="check arguments, imports and CLI flags; no GPU needed")
    ap.add_argument("--prepare", action="store_true", help="copy the C-Eval subjects and SmolLM2 files into .device/")
    ap.add_argument("--wheels", action="store_true", help="with --prepare: also download the wheels the device lacks")
    ap.add_argument("--budget", type=float, default=480.0, help="seconds for the whole check (default 480 = 8 min)")
    ap.add_argument("--out", type=Path, default=None, help="where gpu_check.json/.md go (default: $OUT or bench/results)")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder for models and runs (default: a fresh one)")
    ap.add_argument("--only", nargs="+", metavar="PATH", help="run only these paths (names as printed)")
    ap.add_argument("--device", default="cuda", help="cuda (default); `cpu` only to try the script itself, slowly")
    ap.add_argument("--tiny-only", action="store_true",
                    help="use the 2-layer tiny model for every path: a quick check of this script, proves nothing")
    ap.add_argument("--worker", choices=("build-models", "prefix"), help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.budget < MIN_SECONDS:
        ap.error(f"--budget: at least {MIN_SECONDS} seconds")
    sys.path.insert(0, str(REPO / "src"))
    work = args.work or Path(os.environ.get("TMPDIR", "/tmp")) / f"subjectlm-gpu-check-{os.getpid()}"
    if args.worker:
        result = (worker_build_models(work, args.tiny_only) if args.worker == "build-models"
                  else worker_prefix(args.model, args.device, args.tiny_only))
        print(json.dumps(result))
        return 0
    if args.prepare:
        prepare(args.wheels)
        return 0
    ctx = Ctx(work=work, default="default", tiny="tiny-model", scoring=has_scoring_flag(), device=args.device,
              quick=args.tiny_only)
    names = [name for name, _ in paths(ctx, Budget(args.budget))]
    unknown = [n for n in args.only or () if n not in names]
    if unknown:
        ap.error(f"--only: unknown path(s) {', '.join(unknown)}; paths: {', '.join(names)}")
    if args.dry_run:
        ctx.work.mkdir(parents=True, exist_ok=True)
        problems = dry_run(ctx)
        shutil.rmtree(ctx.work, ignore_errors=True)
        for problem in problems:
            print(f"dry-run: {problem}", file=sys.stderr)
        print(f"dry-run: {len(names)} paths, {len(cli_calls(ctx))} CLI calls parsed, "
              f"--scoring {'present' if ctx.scoring else 'absent'}: {'FAIL' if problems else 'ok'}")
        return 1 if problems else 0

    out = args.out or Path(os.environ.get("OUT") or REPO / "bench" / "results")
    budget = Budget(args.budget)
    meta = machine()
    lines: list[Line] = []

    def record(line: Line) -> None:
        lines.append(line)
        print(line.text(), flush=True)
        write_outputs(out, lines, meta)

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        for name in names:
            record(Line(name, "SKIP", "no CUDA device on this machine", 0.0))
        return 0
    start = time.monotonic()
    try:
        models = worker("build-models", budget, 180, ctx, *(["--tiny-only"] if args.tiny_only else []))
    except (Fail, Skip) as exc:
        record(Line("build-models", "FAIL", str(exc), time.monotonic() - start))
        return 1
    ctx.default, ctx.default_label, ctx.tiny = models["default"], models["default_label"], models["tiny"]
    if args.tiny_only:
        ctx.default, ctx.default_label = ctx.tiny, "tiny random model (--tiny-only: a check of the script)"
    meta["model"] = ctx.default_label
    for name, check in paths(ctx, budget):
        if args.only and name not in args.only:
            continue
        start = time.monotonic()
        try:
            status, figure = "PASS", check()
        except Skip as exc:
            status, figure = "SKIP", str(exc)
        except Fail as exc:
            status, figure = "FAIL", str(exc)
        except Exception as exc:  # noqa: BLE001 - a broken path is a FAIL line, and the next path still runs
            status, figure = "FAIL", f"{type(exc).__name__}: {exc}"[:240]
        record(Line(name, status, figure, time.monotonic() - start))
    print(f"{sum(ln.status == 'PASS' for ln in lines)} PASS, {sum(ln.status == 'FAIL' for ln in lines)} FAIL, "
          f"{sum(ln.status == 'SKIP' for ln in lines)} SKIP in {args.budget - budget.left():.0f}s; "
          f"table: {out / 'gpu_check.md'}")
    return 1 if any(ln.status == "FAIL" for ln in lines) else 0


if __name__ == "__main__":
    sys.exit(main())
