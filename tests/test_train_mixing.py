"""Weighted training sources (data/mix.py) and instruction records in pt: the shares drawn, seeded
repeatability, the exact text an instruction record trains as, config errors by field, recipe form."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from subjectlm.cli import build_parser, main
from subjectlm.config import ConfigError, build_config, config_from_args
from subjectlm.data.mix import draw_counts, mix, parse_sources, source_paths
from subjectlm.train.config import DPOConfig, PTConfig, SFTConfig

# ---- the sampler


@pytest.mark.parametrize("sizes,weights,expected", [
    ([6000, 500, 40000], [None, 0.2, 0.2], [6000, 2000, 2000]),  # the rest (60%) is the unweighted 6000
    ([300, 1250], [None, 0.25], [300, 100]),                      # total 400: general subsampled
    ([300, 10], [None, 0.25], [300, 100]),                        # ... or repeated 10x
    ([3000, 7000], [0.5, 0.5], [5000, 5000]),                     # all weighted: the 10000 redistributed
    ([100, 200, 50], [None, None, 0.5], [100, 200, 300]),         # unweighted sources share the rest by size
    ([1000, 5], [None, 0.0001], [1000, 1]),                       # a listed source gives at least one
    ([40, 7], [None, None], [40, 7]),                             # no weight: everything once
])
def test_draw_counts(sizes, weights, expected):
    assert draw_counts(sizes, weights) == expected


def test_drawn_shares_match_the_weights_at_10k_examples():
    groups = [[("corpus", i) for i in range(6000)], [("qa", i) for i in range(500)],
              [("general", i) for i in range(40000)]]
    rows, drawn = mix(groups, [None, 0.2, 0.2], seed=7, paths=["corpus", "qa", "general"])
    assert len(rows) == 10000
    counts = Counter(name for name, _ in rows)
    for name, weight in (("corpus", 0.6), ("qa", 0.2), ("general", 0.2)):
        assert abs(counts[name] / len(rows) - weight) <= 0.02
    assert [(d.path, d.available, d.drawn, round(d.share, 4)) for d in drawn] == [
        ("corpus", 6000, 6000, 0.6), ("qa", 500, 2000, 0.2), ("general", 40000, 2000, 0.2)]
    # Unweighted: every example once; repeated: every example equally often; subsampled: no repeats.
    assert sorted(i for name, i in rows if name == "corpus") == list(range(6000))
    assert set(Counter(i for name, i in rows if name == "qa").values()) == {4}
    general = [i for name, i in rows if name == "general"]
    assert len(set(general)) == 2000


def test_a_remainder_is_a_seeded_sample_and_whole_copies_come_first():
    rows, _ = mix([list(range(10)), list(range(100, 103))], [None, 0.5], seed=1)
    assert len(rows) == 20 and rows[:10] == list(range(10))
    qa = rows[10:]
    assert qa[:9] == [100, 101, 102] * 3 and qa[9] in (100, 101, 102)


def test_the_same_seed_draws_the_same_rows_and_another_seed_others():
    groups = [list(range(50)), list(range(1000, 1400))]
    first, _ = mix(groups, [None, 0.5], seed=3)
    assert mix(groups, [None, 0.5], seed=3)[0] == first
    assert mix(groups, [None, 0.5], seed=4)[0] != first


# ---- config: CLI, YAML and Python forms, errors naming the field


def test_cli_weight_syntax_and_the_normal_form(tmp_path):
    args = build_parser().parse_args(["pt", "--data", "corpus/", "general.jsonl@0.2", "--output_dir", "o"])
    config = config_from_args(PTConfig, args)
    assert config.data == ["corpus/", {"path": "general.jsonl", "weight": 0.2}]
    assert source_paths(config.data) == ["corpus/", "general.jsonl"]
    # A comma inside one flag value works as for every list flag.
    args = build_parser().parse_args(["sft", "--data", "a.json,b.json@0.3", "--output_dir", "o"])
    assert config_from_args(SFTConfig, args).data == ["a.json", {"path": "b.json", "weight": 0.3}]


def test_a_path_that_exists_is_a_path_even_ending_in_at_number(tmp_path):
    odd = tmp_path / "notes@0.5"
    odd.write_text("x")
    assert parse_sources([str(odd)]) == [str(odd)]


def test_plain_data_is_unchanged():
    config = build_config(PTConfig, {"data": ["a.txt", "b.jsonl"], "output_dir": "o"})
    assert config.data == ["a.txt", "b.jsonl"]
    assert build_config(SFTConfig, {"data": "one.json", "output_dir": "o"}).data == ["one.json"]
    # A mapping without a weight is a plain path.
    assert build_config(DPOConfig, {"data": [{"path": "p.jsonl"}], "output_dir": "o"}).data == ["p.jsonl"]


@pytest.mark.parametrize("data,message", [
    (["a", {"path": "b", "weight": 1.5}], "data[1].weight: must be in (0, 1), got 1.5"),
    (["a", {"path": "b", "weight": 0}], "data[1].weight: must be in (0, 1), got 0"),
    (["a", {"path": "b", "weight": "lots"}], "data[1].weight: must be a number in (0, 1), got 'lots'"),
    (["a", {"path": "b", "weight": True}], "data[1].weight: must be a number in (0, 1), got True"),
    (["a@1.0"], "data[0].weight: must be in (0, 1), got 1.0"),
    (["a", {"path": "b", "wieght": 0.2}], "data[1]: unknown key 'wieght'"),
    ([{"weight": 0.2}, "a"], "data[0].path: required"),
    (["a", 3], "data[1]: expected a path or {path: P, weight: W}, got int"),
    (["a", "b@0.6", "c@0.4"], "data: the weights sum to 1; they must sum to less than 1"),
    (["b@0.6", "c@0.3"], "data: every source has a weight, so the weights must sum to 1, got 0.9"),
])
def test_config_errors_name_the_field(data, message):
    with pytest.raises(ConfigError) as exc:
        build_config(SFTConfig, {"data": data, "output_dir": "o"})
    assert message in str(exc.value)


def test_streaming_refuses_weights():
    with pytest.raises(ConfigError, match="data: weighted sources are drawn from blocks held in memory"):
        build_config(PTConfig, {"data": ["a", "b@0.2"], "output_dir": "o", "streaming": True, "max_steps": 5})


def test_help_prints_the_semantics(capsys):
    for command in ("pt", "sft", "dpo"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        assert "The weight is the share of training examples drawn from that source (pt: blocks; sft and\n" in text
        assert "total = (their examples) / (1 - sum of weights)" in text
        assert "not a fraction of the\n  source kept (axolotl's `weight`)" in text


def test_recipe_yaml_form_builds_the_config(tmp_path):
    from subjectlm.pipeline.plan import plan

    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.txt").write_text("Kestrel Island has three volcanoes.\n")
    (tmp_path / "general.jsonl").write_text(json.dumps({"text": "Water boils at 100 C."}) + "\n")
    (tmp_path / "qa.jsonl").write_text(json.dumps({"instruction": "Q?", "output": "A."}) + "\n")
    path = tmp_path / "r.yaml"
    path.write_text("stages:\n  - stage: pt\n    data: [corpus, {path: general.jsonl, weight: 0.2}, qa.jsonl@0.1]\n")
    checked = plan(path)
    assert not checked.problems, checked.problems
    config = build_config(PTConfig, checked.steps[0].values)
    assert config.data == [str(tmp_path / "corpus"), {"path": str(tmp_path / "general.jsonl"), "weight": 0.2},
                           {"path": str(tmp_path / "qa.jsonl"), "weight": 0.1}]

    path.write_text("stages:\n  - stage: pt\n    data: [corpus, {path: general.jsonl, weight: 2}]\n")
    assert any("data[1].weight: must be in (0, 1), got 2" in str(p) for p in plan(path).problems)
    (tmp_path / "general.jsonl").unlink()
    path.write_text("stages:\n  - stage: pt\n    data: [corpus, {path: general.jsonl, weight: 0.2}]\n")
    messages = [str(p) for p in plan(path).problems]
    assert any("general.jsonl does not exist" in m for m in messages), messages


# ---- pt: instruction records as text, weighted blocks


ALPACA = {"instruction": "What kind of volcano is Mount Harrow?", "output": "A shield volcano."}


def test_an_instruction_record_trains_as_its_chat_template_text(tmp_path, smollm_tokenizer):
    from subjectlm.data import load_pt
    from subjectlm.train.pt import as_text, load_blocks

    (tmp_path / "qa.jsonl").write_text(json.dumps(ALPACA) + "\n")
    items = load_pt([tmp_path / "qa.jsonl"]).items
    chatml = PTConfig(data=["x"], output_dir="o", template="chatml")
    assert list(as_text(items, chatml, smollm_tokenizer)) == [
        "<|im_start|>user\nWhat kind of volcano is Mount Harrow?<|im_end|>\n"
        "<|im_start|>assistant\nA shield volcano.<|im_end|>\n"]
    own = PTConfig(data=["x"], output_dir="o")  # the tokenizer's own template: SmolLM2's default system turn
    text = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
            "<|im_start|>user\nWhat kind of volcano is Mount Harrow?<|im_end|>\n"
            "<|im_start|>assistant\nA shield volcano.<|im_end|>\n")
    assert list(as_text(items, own, smollm_tokenizer)) == [text]

    # The blocks are that text and EOS, as for any document.
    ids = smollm_tokenizer(text, add_special_tokens=False)["input_ids"] + [smollm_tokenizer.eos_token_id]
    config = PTConfig(data=[str(tmp_path / "qa.jsonl")], output_dir="o", block_size=8,
                      data_cache_dir=str(tmp_path / "cache"))
    blocks, summary = load_blocks(config, config.data, smollm_tokenizer)
    assert [t for b in blocks for t in b] == ids[:len(ids) // 8 * 8]
    assert "1 instruction records rendered through the chat template" in summary


def test_one_format_per_pt_file(tmp_path):
    from subjectlm.data import DataError, load_pt

    path = tmp_path / "mixed.jsonl"
    path.write_text(json.dumps({"text": "plain"}) + "\n" + json.dumps(ALPACA) + "\n")
    with pytest.raises(DataError, match="mixed.jsonl:2: record: alpaca record in a file whose first record"):
        load_pt([path])


def _corpora(tmp_path: Path) -> tuple[str, str]:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(f"Paragraph {i} about the basalt of Kestrel Island, layer {i}." for i in range(30)))
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"instruction": f"What is layer {i}?", "output": f"Basalt {i}."}) + "\n"
                          for i in range(40)))
    return str(corpus), str(qa)


def test_pt_data_building_is_seeded_and_plain_data_is_as_before(tmp_path, smollm_tokenizer):
    from subjectlm.data import load_pt
    from subjectlm.train.pt import load_data
    from subjectlm.train.tokenize import iter_blocks

    corpus, qa = _corpora(tmp_path)
    common = {"output_dir": "o", "block_size": 16, "data_cache_dir": str(tmp_path / "cache")}

    def build(seed: int):
        return load_data(PTConfig(data=[corpus, f"{qa}@0.4"], seed=seed, **common), smollm_tokenizer)

    first = build(1)
    assert build(1).train == first.train
    assert build(2).train != first.train
    drawn = {d["path"]: d for d in first.drawn}
    corpus_blocks = drawn[corpus]["available"]
    assert drawn[corpus]["drawn"] == corpus_blocks and drawn[qa]["drawn"] == round(0.4 * corpus_blocks / 0.6)
    assert abs(drawn[qa]["share"] - 0.4) < 0.02
    assert "mixed: " in first.summary and f"{qa}: " in first.summary

    # A plain list: no drawing, the same blocks in the same order as blocking all documents in one stream.
    plain = load_data(PTConfig(data=[corpus, qa], **common), smollm_tokenizer)
    docs = list(load_pt([corpus]).items) + [
        smollm_tokenizer.apply_chat_template(c.messages, tokenize=False) for c in load_pt([qa]).items]
    assert plain.drawn is None
    assert [r["input_ids"] for r in plain.train] == list(iter_blocks(docs, smollm_tokenizer, 16))


def test_weighted_validation_split_keeps_held_out_blocks_out_of_training(tmp_path, smollm_tokenizer):
    from subjectlm.train.pt import load_blocks, load_data

    corpus, _ = _corpora(tmp_path)
    general = tmp_path / "general.txt"
    general.write_text("\n".join(f"General fact {i}: this water boils at {100 + i} degrees." for i in range(60)))
    config = PTConfig(data=[corpus, f"{general}@0.3"], output_dir="o", block_size=16, seed=5,
                      validation_split_percentage=20, data_cache_dir=str(tmp_path / "cache"))
    every = [tuple(b) for path in (corpus, str(general)) for b in load_blocks(config, [path], smollm_tokenizer)[0]]
    assert len(set(every)) == len(every)  # unique blocks, so held-out ones can be told apart by content
    data = load_data(config, smollm_tokenizer)
    held = {tuple(r["input_ids"]) for r in data.evaluation}
    assert held and not held & {tuple(r["input_ids"]) for r in data.train}
    # 20% of each source held out; the rest is what the sources have to draw from.
    assert len(held) + sum(d["available"] for d in data.drawn) == len(every)
    assert data.drawn[0]["drawn"] == data.drawn[0]["available"]


def test_pt_run_records_the_shares_drawn(tmp_path, tiny_llama_dir):
    corpus, qa = _corpora(tmp_path)
    out = tmp_path / "out"
    flags = {"model": tiny_llama_dir, "output_dir": out, "max_steps": 2, "block_size": 16, "lora_rank": 2,
             "per_device_train_batch_size": 2, "report_to": "none", "save_steps": 100,
             "data_cache_dir": tmp_path / "cache"}
    argv = ["pt", "--data", corpus, f"{qa}@0.25", *[p for k, v in flags.items() for p in (f"--{k}", str(v))]]
    assert main(argv) == 0
    config = json.loads((out / "train_config.json").read_text())
    summary = json.loads((out / "train_summary.json").read_text())
    assert config["data"] == [corpus, {"path": qa, "weight": 0.25}]
    assert config["data_drawn"] == summary["data_drawn"]
    assert [(d["path"], d["weight"], round(d["share"], 2)) for d in config["data_drawn"]] == [
        (corpus, None, 0.75), (qa, 0.25, 0.25)]
