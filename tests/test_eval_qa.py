"""Closed-book QA: normalisation and scores (numbers worked out by hand), statistics, the reference's
log-likelihood against a direct computation, and `eval qa` end to end on tiny models (with resume)."""

import json

import pytest

from subjectlm.cli import main
from subjectlm.data.errors import DataError
from subjectlm.eval.qa import items as Q
from subjectlm.scoring import text as T
from subjectlm.scoring.stats import bootstrap_mean_ci, paired_bootstrap_ci, paired_comparison, sign_test

# --- normalisation and text scores --------------------------------------------------------------


@pytest.mark.parametrize("text, normalised", [
    ("The Corran Gabbro, 4.2 million years!", "corran gabbro 42 million years"),
    ("An island — a VOLCANO's flank", "island volcanos flank"),
    ("科伦辉长岩，距今420万年。", "科伦辉长岩距今420万年"),
    ("《哈罗山》：层状火山！", "哈罗山层状火山"),
    ("ＡＢＣ！ 1,486 m", "abc 1486 m"),  # full-width letters and punctuation (NFKC)
    ("  theatre   then\tthe end ", "theatre then end"),  # articles only as whole words
])
def test_normalize_text(text, normalised):
    assert T.normalize_text(text) == normalised


def test_answer_tokens_split_cjk_by_character_and_other_text_by_word():
    assert T.answer_tokens("科伦辉长岩，距今420万年。") == ["科", "伦", "辉", "长", "岩", "距", "今", "420", "万", "年"]
    assert T.answer_tokens("火山口（Blackmouth Crater）") == ["火", "山", "口", "blackmouth", "crater"]
    assert T.answer_tokens("The Sundering Sea.") == ["sundering", "sea"]


def test_token_f1_english():
    # answer: stratovolcano about 1414 m high (5); reference: stratovolcano is 1486 m high (5); shared 3
    assert T.token_f1("A stratovolcano, about 1,414 m high.", "The stratovolcano is 1,486 m high") == pytest.approx(0.6)
    assert T.token_f1("Sundering Sea", "the Sundering Sea.") == 1.0
    assert T.token_f1("shield volcano", "stratovolcano") == 0.0


def test_token_f1_chinese():
    # 哈罗山是一座层状火山: 10 characters (山 twice); 层状火山: 4; shared 层 状 火 山 = 4
    # precision 4/10, recall 4/4: F1 = 2·0.4·1 / 1.4 = 4/7
    assert T.token_f1("哈罗山是一座层状火山。", "层状火山") == pytest.approx(4 / 7)
    # 分裂海 vs 位于分裂海: shared 3; precision 3/5, recall 1: F1 = 1.2/1.6 = 0.75
    assert T.token_f1("位于分裂海", "分裂海。") == pytest.approx(0.75)


def test_token_f1_empty_after_normalisation():
    assert T.token_f1("", "the sea") == 0.0
    assert T.token_f1("!!", "？") == 1.0  # both nothing: SQuAD counts that as a match


def test_exact_and_contains():
    assert T.exact_match("The Sundering Sea.", "sundering sea")
    assert not T.exact_match("In the Sundering Sea", "Sundering Sea")
    assert T.contains_match("It lies in the Sundering Sea, far north.", "Sundering Sea")
    assert not T.contains_match("the seas", "sea")  # words, not substrings
    assert T.contains_match("它位于分裂海。", "分裂海")
    assert not T.contains_match("分裂", "分裂海")


def test_key_fact_recall():
    facts = ["Corran Gabbro", "4.2 million", "Corran Head"]
    assert T.key_fact_recall("The Corran Gabbro is 4.2 million years old.", facts) == pytest.approx(2 / 3)
    assert T.key_fact_recall("anything", []) is None
    assert T.key_fact_recall("科伦辉长岩距今420万年", ["科伦辉长岩", "420万年", "科伦角"]) == pytest.approx(2 / 3)
    assert T.answer_scores("The Sundering Sea.", "Sundering Sea", ["Sundering"]) == {
        "exact": 1.0, "contains": 1.0, "f1": 1.0, "key_fact_recall": 1.0}


def test_prompts_exact_strings():
    assert Q.plain_prompt("  What kind of volcano is Mount Harrow? ") == \
        "Question: What kind of volcano is Mount Harrow?\nAnswer:"
    assert Q.plain_continuation(" A stratovolcano. ") == " A stratovolcano."
    assert Q.qa_messages(" 哈罗山是什么火山？ ") == [{"role": "user", "content": "哈罗山是什么火山？"}]
    assert Q.PLAIN_STOP == "\nQuestion:"


# --- data ---------------------------------------------------------------------------------------

QA_ROWS = [
    {"id": "qa1", "question": "Which rock is the oldest on Kestrel Island?", "reference": "The Corran Gabbro.",
     "key_facts": ["Corran Gabbro"]},
    {"id": "qa2", "question": "In which sea does Kestrel Island lie?", "reference": "The Sundering Sea."},
    {"id": "qa3", "question": "哈罗山是什么火山？", "reference": "层状火山。", "key_facts": ["层状火山"]},
    {"question": "What kind of fault is the Skerry Fault, and how fast does it slip?",
     "reference": "A right-lateral strike-slip fault slipping 2.1 mm per year.", "key_facts": ["strike-slip", "2.1 mm"]},
]


def write_qa(path, rows=QA_ROWS):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_read_qa_file(tmp_path):
    items = Q.read_qa_file(write_qa(tmp_path / "qa.jsonl"))
    assert [i.id for i in items[:3]] == ["qa1", "qa2", "qa3"]
    assert items[3].id == Q.question_id(QA_ROWS[3]["question"]) and items[3].id.startswith("q-")
    assert items[0].key_facts == ("Corran Gabbro",) and items[1].key_facts == ()
    assert items[2].source == f"{tmp_path / 'qa.jsonl'}:3"


def test_read_qa_file_reports_every_bad_record(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join([
        json.dumps({"id": "a", "question": "Q?", "reference": "R"}),
        json.dumps({"id": "b", "question": "Q?"}),
        json.dumps({"id": "a", "question": "Q2?", "reference": "R2"}),
        json.dumps({"id": "c", "question": "Q?", "reference": "R", "key_facts": "R"}),
        json.dumps({"id": "d", "question": "Q?", "reference": "？！"}),
        '{"id": "e", "question": "Q?", "refer',
    ]) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        Q.read_qa_file(path)
    assert [str(p) for p in info.value.problems] == [
        f"{path}:2: reference: missing or empty (a non-empty string is required)",
        f"{path}:3: id: 'a' is also used at {path}:1",
        f"{path}:4: key_facts: must be a list of non-empty strings",
        f"{path}:5: reference: only punctuation: nothing left to score",
        f"{path}:6: record: truncated JSON (the line ends before the record does)",
    ]


def write_exam(root):
    """A one-subject exam in the C-Eval layout: 1 dev question, 2 val questions, 1 test question (no answer)."""
    (root / "dev").mkdir(parents=True)
    (root / "val").mkdir()
    (root / "test").mkdir()
    (root / "subject_mapping.json").write_text(json.dumps({"geo": ["Geology", "地质", "STEM"]}), encoding="utf-8")
    head = "id,question,A,B,C,D,answer\n"
    (root / "dev" / "geo_dev.csv").write_text(head + "0,Oldest rock?,Basalt,Corran Gabbro,Tuff,Chalk,B\n")
    (root / "val" / "geo_val.csv").write_text(
        head + "0,Which sea surrounds the island?,North Sea,Sundering Sea,Red Sea,Dead Sea,B\n"
               "1,What kind of volcano is Mount Harrow?,Shield volcano,Cinder cone,Stratovolcano,Caldera,C\n")
    (root / "test" / "geo_test.csv").write_text("id,question,A,B,C,D\n0,How fast does the Skerry Fault slip?,1 mm,2.1 mm,5 mm,9 mm\n")
    return root


def test_items_from_exam(tmp_path):
    items, skipped = Q.items_from_exam(write_exam(tmp_path / "exam"))
    assert skipped == 0
    assert Q.items_from_exam(tmp_path / "exam", split="test") == ([], 1)  # a test split has no answers
    assert [(i.id, i.question, i.reference) for i in items] == [
        ("geo/0", "Which sea surrounds the island?", "Sundering Sea"),
        ("geo/1", "What kind of volcano is Mount Harrow?", "Stratovolcano")]


# --- statistics ---------------------------------------------------------------------------------


def test_sign_test_exact_binomial():
    # 8 up, 2 down: P(X <= 2) for X ~ Bin(10, 1/2) = (1 + 10 + 45) / 1024; two-sided: 112/1024
    assert sign_test([0] * 11, [1] * 8 + [-1] * 2 + [0]) == {"up": 8, "down": 2, "ties": 1, "p_value": 0.109375}
    assert sign_test([0] * 6, [1] * 6)["p_value"] == 2 / 64
    assert sign_test([0] * 10, [1] * 5 + [-1] * 5)["p_value"] == 1.0  # 2 * 638/1024 capped at 1
    assert sign_test([0.5, 0.5], [0.5, 0.5]) == {"up": 0, "down": 0, "ties": 2, "p_value": 1.0}


def test_paired_bootstrap_ci_hand_cases():
    same_shift = paired_bootstrap_ci([0.1, 0.2, 0.3, 0.4], [0.6, 0.7, 0.8, 0.9])
    assert same_shift["mean_diff"] == pytest.approx(0.5)
    assert same_shift["ci"] == pytest.approx([0.5, 0.5])  # every resample has the same mean
    # differences 0 and 1: resampled means are 0, 1/2, 1 with chances 1/4, 1/2, 1/4, so the
    # 2.5% and 97.5% quantiles are 0 and 1
    two = paired_bootstrap_ci([0, 0], [0, 1], n_bootstrap=2000)
    assert two["mean_diff"] == 0.5 and two["ci"] == [0.0, 1.0] and two["n"] == 2
    assert paired_bootstrap_ci([], [])["mean_diff"] is None
    with pytest.raises(ValueError):
        paired_bootstrap_ci([1], [1, 2])
    # reproducible from the seed; the interval holds the mean
    values = [0.1, -0.3, 0.7, 0.2, 0.0, 0.4, -0.1, 0.9]
    a, b = bootstrap_mean_ci(values, seed=3), bootstrap_mean_ci(values, seed=3)
    assert a == b and a["mean"] == pytest.approx(0.2375) and a["ci"][0] < a["mean"] < a["ci"][1]


def test_paired_comparison_means():
    c = paired_comparison([0.0, 0.5, 1.0], [1.0, 0.5, 1.0])
    assert c["mean_before"] == 0.5 and c["mean_after"] == pytest.approx(2.5 / 3)
    assert c["mean_diff"] == pytest.approx(1 / 3) and (c["up"], c["down"], c["ties"]) == (1, 0, 2)


# --- the model's side -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def qa_model(tiny_llama_dir):
    from subjectlm.backends.hf import HFBackend
    from subjectlm.eval.qa.runner import QAModel

    return QAModel(HFBackend(tiny_llama_dir, dtype="fp32", device="cpu"), chat="auto")


@pytest.mark.parametrize("chat", [True, False])
def test_reference_logprob_equals_direct_computation(qa_model, chat):
    """Batched, right-padded scoring equals one unpadded forward per item (fp32, 1e-4)."""
    import torch

    qa_model.chat = chat
    items = [Q.QAItem(r.get("id", "x"), r["question"], r["reference"]) for r in QA_ROWS]
    batched = qa_model.reference_logprobs(items)
    tok, model = qa_model.tokenizer, qa_model.model
    for item, (total, n) in zip(items, batched):
        if chat:
            prompt = tok.apply_chat_template([{"role": "user", "content": item.question}], tokenize=False,
                                             add_generation_prompt=True)
            context = tok(prompt, add_special_tokens=False)["input_ids"]
            whole = tok(prompt + item.reference, add_special_tokens=False)["input_ids"]
        else:
            prompt = f"Question: {item.question}\nAnswer:"
            context = tok(prompt)["input_ids"]
            whole = tok(prompt + " " + item.reference)["input_ids"]
        assert whole[:len(context)] == context  # no token spans the boundary in these texts
        with torch.no_grad():
            logprobs = torch.log_softmax(model(input_ids=torch.tensor([whole])).logits[0].float(), dim=-1)
        direct = sum(float(logprobs[i - 1, whole[i]]) for i in range(len(context), len(whole)))
        assert n == len(whole) - len(context)
        assert total == pytest.approx(direct, abs=1e-4)
    qa_model.chat = True


def test_batched_answers_equal_one_by_one(qa_model):
    items = [Q.QAItem(str(i), r["question"], r["reference"]) for i, r in enumerate(QA_ROWS)]
    together = qa_model.answers(items, max_new_tokens=6)
    alone = [qa_model.answers([item], max_new_tokens=6)[0] for item in items]
    assert together == alone
    assert all(a["answer_tokens"] <= 6 for a in together)


def _predictions(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_eval_qa_end_to_end_and_resume(tmp_path, tiny_llama_dir, capsys):
    data = write_qa(tmp_path / "qa.jsonl")
    out = tmp_path / "run"
    args = ["eval", "qa", "--model", str(tiny_llama_dir), "--data", str(data), "--output_dir", str(out),
            "--max_new_tokens", "6", "--batch_size", "1", "--dtype", "fp32"]
    assert main(args) == 0
    assert "4 questions: exact" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["predictions.jsonl", "report.md", "run_config.json", "summary.json"]
    first = _predictions(out / "predictions.jsonl")
    assert [r["id"] for r in first] == ["qa1", "qa2", "qa3", Q.question_id(QA_ROWS[3]["question"])]
    for r in first:
        assert set(T.answer_scores(r["answer"], r["reference"], r["key_facts"])) <= set(r)
        assert r["ref_logprob"] == pytest.approx(r["ref_logprob_sum"] / r["ref_tokens"]) and r["ref_logprob"] < 0
    assert first[1]["key_fact_recall"] is None and first[0]["key_fact_recall"] in (0.0, 1.0)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 4 and summary["n_with_key_facts"] == 3 and summary["chat"] is True
    assert summary["scores"]["f1"] == pytest.approx(sum(r["f1"] for r in first) / 4)
    assert summary["scores"]["key_fact_recall"] == pytest.approx(
        sum(r["key_fact_recall"] for r in first if r["key_facts"]) / 3)
    report = (out / "report.md").read_text()
    assert "| ref_logprob |" in report and "| qa1 |" in report

    # An existing output is refused without --resume / --overwrite.
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err

    # A crash after two answers, in the middle of writing the third: resume keeps two, redoes the rest.
    lines = (out / "predictions.jsonl").read_bytes().split(b"\n")
    (out / "predictions.jsonl").write_bytes(b"\n".join(lines[:2]) + b"\n" + lines[2][:25])
    (out / "summary.json").unlink()
    assert main(args + ["--resume"]) == 0
    assert _predictions(out / "predictions.jsonl") == first
    assert json.loads((out / "summary.json").read_text()) == summary

    # Resuming with other settings is refused.
    assert main(args[:-4] + ["--max_new_tokens", "7", "--resume"]) == 2
    assert "other settings" in capsys.readouterr().err


def test_eval_qa_with_base_model_compares(tmp_path, tiny_llama_dir, tiny_qwen2_dir, capsys):
    data = write_qa(tmp_path / "qa.jsonl")
    out = tmp_path / "run"
    assert main(["eval", "qa", "--model", str(tiny_llama_dir), "--base_model", str(tiny_qwen2_dir), "--data", str(data),
                 "--output_dir", str(out), "--max_new_tokens", "4", "--n_bootstrap", "200"]) == 0
    assert "sign test" in capsys.readouterr().out
    compared = json.loads((out / "compare.json").read_text())
    assert compared["n_common"] == 4 and compared["run_a"] == str(tiny_qwen2_dir)
    tuned, base = _predictions(out / "model" / "predictions.jsonl"), _predictions(out / "base" / "predictions.jsonl")
    diff = [t["ref_logprob"] - b["ref_logprob"] for t, b in zip(tuned, base)]
    ref = compared["scores"]["ref_logprob"]
    assert ref["mean_diff"] == pytest.approx(sum(diff) / 4)
    assert ref["ci"][0] <= ref["mean_diff"] <= ref["ci"][1]
    assert ref["up"] == sum(d > 0 for d in diff) and ref["down"] == sum(d < 0 for d in diff)
    assert compared["scores"]["key_fact_recall"]["n"] == 3
    assert "| ref_logprob | 4 |" in (out / "compare.md").read_text()
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"
    # `eval compare` on two `eval qa` runs gives the same comparison
    assert main(["eval", "compare", str(out / "base"), str(out / "model"), "--output_dir", str(tmp_path / "cmp")]) == 0
    again = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert again["n_bootstrap"] == 2000 and set(again["scores"]) == set(compared["scores"])
    for key in ("n", "mean_before", "mean_after", "mean_diff", "up", "down", "ties", "p_value"):
        assert again["scores"]["ref_logprob"][key] == ref[key]


def test_eval_qa_from_an_exam_directory(tmp_path, tiny_llama_dir, capsys):
    out = tmp_path / "run"
    assert main(["eval", "qa", "--model", str(tiny_llama_dir), "--data", str(write_exam(tmp_path / "exam")),
                 "--output_dir", str(out), "--max_new_tokens", "4", "--chat", "off"]) == 0
    assert main(["eval", "qa", "--data", str(tmp_path / "exam"), "--split", "test", "--output_dir", str(out / "t")]) == 2
    assert "1 exam question(s) without an answer" in capsys.readouterr().err  # and then nothing left to ask
    records = _predictions(out / "predictions.jsonl")
    assert [(r["id"], r["reference"]) for r in records] == [("geo/0", "Sundering Sea"), ("geo/1", "Stratovolcano")]
    assert json.loads((out / "summary.json").read_text())["chat"] is False


def test_eval_stage_runs_exam_and_qa_for_both_models(tmp_path, tiny_llama_dir, tiny_qwen2_dir):
    from subjectlm.eval.recipe_stage import EvalStageConfig, run

    config = EvalStageConfig(data=str(write_exam(tmp_path / "exam")), model=str(tiny_llama_dir),
                             base_model=str(tiny_qwen2_dir), shots=1, qa_data=str(write_qa(tmp_path / "qa.jsonl")),
                             qa_max_new_tokens=4, output_dir=str(tmp_path / "eval"))
    assert config.scoring == "both"
    result = run(config)
    assert set(result["qa"]) == {"exact", "contains", "f1", "key_fact_recall", "ref_logprob"}
    assert result["qa"]["ref_logprob"]["n"] == 4
    assert "QA over 4 questions: ref_logprob" in result["summary"]
    assert "letter" in result["summary"] and "cloze_acc_norm" in result["summary"] and "McNemar p=" in result["summary"]
    summary = json.loads((tmp_path / "eval" / "model" / "summary.json").read_text())
    assert "letter" in summary["modes"] and "cloze_acc_norm" in summary["modes"]
    assert (tmp_path / "eval" / "qa" / "compare.md").is_file()
    json.dumps(result)  # the recipe stores it in pipeline_state.json
