"""Answers: model specs, caching per (model, prompt), settings kept per name, prompts merged by id."""

import json

import pytest

from subjectlm.arena.config import GenerateConfig
from subjectlm.arena.generate import parse_model_spec, run_generate
from subjectlm.arena.records import load_answers, load_models, load_prompts, prompt_id
from subjectlm.config import ConfigError
from subjectlm.data.errors import DataError

PROMPTS = [
    {"id": "q1", "prompt": "How old is the Corran Gabbro?", "category": "recall", "reference": "4.2 million years."},
    {"id": "q2", "prompt": "Why is Kestrel Island tilting?", "category": "reasoning"},
    {"prompt": "Name the hottest spring.", "category": "recall", "reference": ""},
]


def write_prompts(path, rows=PROMPTS):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_parse_model_spec():
    base = GenerateConfig(output_dir="o", models=["x=default"], temperature=0.7, max_new_tokens=64)
    spec = parse_model_spec("hot=default@temperature=1.2@top_p=0.95", base)
    assert (spec.name, spec.path, spec.temperature, spec.top_p, spec.max_new_tokens, spec.seed) == (
        "hot", "default", 1.2, 0.95, 64, 0)
    assert parse_model_spec("greedy=/m/x@temperature=0", base).settings()["do_sample"] is False
    for bad in ("nopath", "=default", "a b=default", "x=default@temp=1", "x=default@temperature=-1"):
        with pytest.raises(ConfigError):
            parse_model_spec(bad, base)


def test_load_prompts_ids_and_problems(tmp_path):
    prompts = load_prompts(write_prompts(tmp_path / "p.jsonl"))
    assert [p["id"] for p in prompts] == ["q1", "q2", prompt_id("Name the hottest spring.")]
    assert prompts[2]["reference"] is None and prompts[1]["category"] == "reasoning"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "prompt": "x"}\n{"id": "a", "prompt": "y"}\n{"prompt": ""}\nnot json\n')
    with pytest.raises(DataError) as err:
        load_prompts(bad)
    assert [p.line for p in err.value.problems] == [2, 3, 4]


def test_generate_caches_per_model_and_prompt(tmp_path, tiny_llama_dir, tiny_qwen2_dir):
    out = tmp_path / "arena"
    prompts = write_prompts(tmp_path / "p.jsonl")
    config = dict(output_dir=str(out), prompts=str(prompts), max_new_tokens=5, batch_size=2)
    first = run_generate(GenerateConfig(models=[f"cold={tiny_llama_dir}@temperature=0", f"hot={tiny_llama_dir}@temperature=1.5"], **config))
    assert first == {"prompts": 3, "models": {"cold": {"generated": 3, "cached": 0}, "hot": {"generated": 3, "cached": 0}}}
    cold = load_answers(out, "cold")
    assert sorted(cold) == sorted(p["id"] for p in load_prompts(prompts))
    assert all(0 < r["tokens"] <= 5 and isinstance(r["answer"], str) for r in cold.values())
    recorded = load_models(out)
    assert recorded["hot"] == {"path": str(tiny_llama_dir), "temperature": 1.5, "top_p": 0.9, "max_new_tokens": 5,
                               "seed": 0, "do_sample": True}
    # Adding a model generates only its answers; the others come from the cache.
    second = run_generate(GenerateConfig(models=[f"cold={tiny_llama_dir}@temperature=0", f"qwen={tiny_qwen2_dir}"], **config))
    assert second["models"] == {"cold": {"generated": 0, "cached": 3}, "qwen": {"generated": 3, "cached": 0}}
    # A new prompt: only it is generated (the folder keeps the old ones; no --prompts needed later).
    more = write_prompts(tmp_path / "more.jsonl", [{"id": "q4", "prompt": "Describe the Skerry Fault."}])
    third = run_generate(GenerateConfig(output_dir=str(out), models=[f"cold={tiny_llama_dir}@temperature=0"],
                                        prompts=str(more), max_new_tokens=5))
    assert third == {"prompts": 4, "models": {"cold": {"generated": 1, "cached": 3}}}
    assert run_generate(GenerateConfig(output_dir=str(out), models=[f"hot={tiny_llama_dir}@temperature=1.5"],
                                       max_new_tokens=5))["models"]["hot"] == {"generated": 1, "cached": 3}
    # The same name with other settings is refused ...
    with pytest.raises(ConfigError, match="already answered"):
        run_generate(GenerateConfig(models=[f"hot={tiny_llama_dir}@temperature=0.3"], **config))
    # ... unless overwritten; sampling is seeded, so regenerating the same settings gives the same answers.
    before = load_answers(out, "hot")
    again = run_generate(GenerateConfig(models=[f"hot={tiny_llama_dir}@temperature=1.5"], overwrite=True, **config))
    assert again["models"]["hot"] == {"generated": 4, "cached": 0}
    assert {k: v["answer"] for k, v in load_answers(out, "hot").items()} == {k: v["answer"] for k, v in before.items()}
    # An id whose text changed is an error, not a silent mix of two prompts.
    changed = write_prompts(tmp_path / "changed.jsonl", [{"id": "q1", "prompt": "Something else"}])
    with pytest.raises(ConfigError, match="q1"):
        run_generate(GenerateConfig(output_dir=str(out), models=[f"cold={tiny_llama_dir}@temperature=0"],
                                    prompts=str(changed), max_new_tokens=5))


def test_greedy_answers_match_plain_generate(tmp_path, tiny_llama_dir):
    """The batched, left-padded path gives each prompt the answer it gets alone."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "arena"
    prompts = write_prompts(tmp_path / "p.jsonl")
    run_generate(GenerateConfig(output_dir=str(out), models=[f"g={tiny_llama_dir}@temperature=0"],
                                prompts=str(prompts), max_new_tokens=6, batch_size=3))
    tok = AutoTokenizer.from_pretrained(str(tiny_llama_dir))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir)).eval()
    answers = load_answers(out, "g")
    for p in load_prompts(prompts):
        text = tok.apply_chat_template([{"role": "user", "content": p["prompt"]}], tokenize=False, add_generation_prompt=True)
        ids = tok(text, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            new = model.generate(**ids, do_sample=False, max_new_tokens=6, pad_token_id=tok.pad_token_id)[0, ids["input_ids"].shape[1]:]
        new = new.tolist()
        if tok.eos_token_id in new:
            new = new[: new.index(tok.eos_token_id)]
        assert answers[p["id"]]["answer"] == tok.decode(new, skip_special_tokens=True).strip()


def test_row_sampler_top_p_and_per_row_seeds():
    import torch

    from subjectlm.backends.sampling import make_row_sampler

    # probs 0.6 / 0.3 / 0.1: top_p 0.5 keeps only the first token, top_p 0.8 the first two.
    scores = torch.log(torch.tensor([[0.6, 0.3, 0.1]] * 2))
    sampler = make_row_sampler(1.0, 0.5, [1, 2], "cpu")
    for _ in range(20):
        assert sampler(None, scores).argmax(dim=-1).tolist() == [0, 0]
    sampler = make_row_sampler(1.0, 0.8, [1, 2], "cpu")
    drawn = {int(sampler(None, scores)[0].argmax()) for _ in range(200)}
    assert drawn == {0, 1}
    # A row's draws depend on its own seed only, not on its position in the batch.
    one = make_row_sampler(1.0, 1.0, [7], "cpu")
    two = make_row_sampler(1.0, 1.0, [3, 7], "cpu")
    flat = torch.zeros(1, 50)
    assert [int(one(None, flat).argmax()) for _ in range(30)] == [
        int(two(None, flat.expand(2, 50))[1].argmax()) for _ in range(30)]
