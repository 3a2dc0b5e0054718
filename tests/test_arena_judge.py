"""Judging by a model (local tiny model, fake OpenAI-compatible endpoint), then results and the CLI."""

import argparse
import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from subjectlm.arena.config import JudgeConfig, ResultsConfig
from subjectlm.arena.judge_model import ENDINGS, LocalJudge, endpoint_url, run_model_judge
from subjectlm.arena.prompts import VERDICT_PREFILL, WINNERS
from subjectlm.arena.records import load_battles, pending_pairs
from subjectlm.arena.results import run_results
from subjectlm.backends.spec import ModelSpec

PROMPTS = [
    {"id": "q1", "prompt": "How old is the Corran Gabbro?", "category": "recall", "reference": "4.2 million years."},
    {"id": "q2", "prompt": "Why is Kestrel Island tilting?", "category": "reasoning", "reference": None},
]
ANSWERS = {
    "alpha": {"q1": "About 4.2 million years.", "q2": "The north rises and the south sinks."},
    "beta": {"q1": "It is very old.", "q2": "Because of wind."},
    "gamma": {"q1": "Ten years.", "q2": "I do not know."},
}


def make_arena(path, models=("alpha", "beta", "gamma")):
    """An arena folder as `generate` leaves it, written by hand (no model needed)."""
    (path / "answers").mkdir(parents=True)
    (path / "prompts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in PROMPTS))
    (path / "models.json").write_text(json.dumps({m: {"path": f"/models/{m}", "temperature": 0.7} for m in models}))
    for m in models:
        (path / "answers" / f"{m}.jsonl").write_text(
            "".join(json.dumps({"id": pid, "model": m, "answer": text}) + "\n" for pid, text in ANSWERS[m].items()))
    return path


def test_pending_pairs_orders(tmp_path):
    out = make_arena(tmp_path / "a")
    both = pending_pairs(out, "model:x", both_orders=True)
    assert len(both) == 2 * 3 * 2  # prompts x pairs x orders
    assert {(j["prompt"]["id"], j["model_a"], j["model_b"]) for j in both} == {
        (p, a, b) for p in ("q1", "q2") for a in ANSWERS for b in ANSWERS if a != b}
    once = pending_pairs(out, "human", both_orders=False, seed=5)
    assert len(once) == 6 and once == pending_pairs(out, "human", both_orders=False, seed=5)
    assert {frozenset((j["model_a"], j["model_b"])) for j in once} == {
        frozenset(p) for p in (("alpha", "beta"), ("alpha", "gamma"), ("beta", "gamma"))}
    assert len(pending_pairs(out, "model:x", both_orders=True, models=["alpha", "beta"])) == 4


def test_local_judge_score_mode_writes_both_orders(tmp_path, tiny_llama_dir):
    out = make_arena(tmp_path / "a", models=("alpha", "beta"))
    config = JudgeConfig(output_dir=str(out), judge=f"model:{tiny_llama_dir}")
    assert run_model_judge(config) == {"judged": 4, "unparsed": 0}
    battles = load_battles(out)
    assert len(battles) == 4
    for b in battles:
        assert b["winner"] in WINNERS and b["judge"] == f"model:{tiny_llama_dir}" and b["mode"] == "score"
        assert sum(b["probs"].values()) == pytest.approx(1, abs=1e-3)
        assert b["winner"] == max(b["probs"], key=b["probs"].get)
        assert b["category"] == {"q1": "recall", "q2": "reasoning"}[b["prompt_id"]]
    assert sorted((b["prompt_id"], b["model_a"], b["model_b"]) for b in battles) == [
        ("q1", "alpha", "beta"), ("q1", "beta", "alpha"), ("q2", "alpha", "beta"), ("q2", "beta", "alpha")]
    # Resumable: nothing left to judge; a new model adds only its pairs.
    assert run_model_judge(config)["judged"] == 0


def test_score_equals_unpadded_log_probs(tiny_llama_dir):
    """The batched, right-padded scoring gives each verdict ending its own sequence log-probability."""
    import torch

    judge = LocalJudge(ModelSpec(str(tiny_llama_dir), dtype="auto"))
    messages = [{"role": "user", "content": "Which is better? A: x B: y"}]
    probs = judge.score(messages)
    prefix = judge._chat(messages) + VERDICT_PREFILL
    p_ids = judge.tokenizer(prefix, add_special_tokens=False)["input_ids"]
    totals = {}
    for winner, ending in ENDINGS.items():
        ids = judge.tokenizer(prefix + ending, add_special_tokens=False)["input_ids"]
        start = next(i for i in range(len(ids)) if i >= len(p_ids) or ids[i] != p_ids[i])
        with torch.no_grad():
            logp = torch.log_softmax(judge.model(torch.tensor([ids])).logits[0].float(), -1)
        totals[winner] = sum(float(logp[i - 1, ids[i]]) for i in range(start, len(ids)))
    norm = math.log(sum(math.exp(t) for t in totals.values()))
    for winner in WINNERS:
        assert probs[winner] == pytest.approx(math.exp(totals[winner] - norm), abs=1e-4)


def test_local_judge_generate_mode_falls_back_to_scores(tmp_path, tiny_llama_dir):
    out = make_arena(tmp_path / "a", models=("alpha", "beta"))
    config = JudgeConfig(output_dir=str(out), judge=f"model:{tiny_llama_dir}", judge_mode="generate",
                         max_new_tokens=4, limit=2)
    result = run_model_judge(config)
    assert result["judged"] == 2
    for b in load_battles(out):
        assert b["winner"] in WINNERS and isinstance(b["reply"], str)
        # a random tiny model names no verdict: its verdict is read from the scores instead
        assert b["mode"] == ("generate" if b["parsed"] else "generate+score")


class FakeOpenAI(BaseHTTPRequestHandler):
    requests: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeOpenAI.requests.append((self.path, self.headers.get("Authorization"), body))
        user = body["messages"][1]["content"]
        # prefers the answer mentioning "4.2"; says nothing useful about q2
        if "[Question]\nHow old" in user:
            a_text = user.split("[Answer A]\n")[1].split("\n\n")[0]
            content = "Verdict: [[A]] it gives the age." if "4.2" in a_text else "Verdict: [[B]] B gives the age."
        else:
            content = "Hmm, hard to say."
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_endpoint_judge_and_results(tmp_path, monkeypatch):
    assert endpoint_url("http://h:1") == "http://h:1/v1/chat/completions"
    assert endpoint_url("http://h:1/v1/") == "http://h:1/v1/chat/completions"
    assert endpoint_url("http://h:1/x/chat/completions") == "http://h:1/x/chat/completions"
    out = make_arena(tmp_path / "a")
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("ARENA_TEST_KEY", "sk-test")
    FakeOpenAI.requests = []
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        config = JudgeConfig(output_dir=str(out), judge=f"model:{url}", judge_model_name="judge-x",
                             api_key_env="ARENA_TEST_KEY")
        assert run_model_judge(config) == {"judged": 12, "unparsed": 6}
    finally:
        server.shutdown()
        server.server_close()
    path, auth, body = FakeOpenAI.requests[0]
    assert path == "/v1/chat/completions" and auth == "Bearer sk-test"
    assert body["model"] == "judge-x" and body["temperature"] == 0 and body["max_tokens"] == 96
    assert "[Reference answer]\n4.2 million years." in body["messages"][1]["content"]
    battles = load_battles(out)
    q1 = [b for b in battles if b["prompt_id"] == "q1"]
    # alpha (the "4.2" answer) wins all 4 of its q1 battles, in either position
    assert all(({"A": b["model_a"], "B": b["model_b"]}[b["winner"]] == "alpha") for b in q1 if "alpha" in (b["model_a"], b["model_b"]))
    assert all(b["winner"] == "tie" and b["parsed"] is False for b in battles if b["prompt_id"] == "q2")

    result = run_results(ResultsConfig(output_dir=str(out), n_bootstrap=100))
    board = result["overall"]["leaderboard"]
    assert board[0]["model"] == "alpha" and board[0]["battles"] == 8
    assert board[0]["win_rate"] == pytest.approx((4 + 2) / 8)  # 4 wins on q1, 4 ties on q2
    judge = result["judges"][f"model:{url}"]
    assert judge["battles"] == 12 and judge["pairs_in_both_orders"] == 6
    # beta vs gamma on q1 (neither says 4.2): the fake says "B" in both orders, a position-biased
    # pair, so 5 of the 6 pairs agree; the first answer won 2 of the 6 decided battles.
    assert judge["order_agreement"] == pytest.approx(5 / 6, abs=1e-4)
    assert judge["first_position_win_rate"] == pytest.approx(2 / 6, abs=1e-4)
    assert set(result["categories"]) == {"recall", "reasoning"}
    assert result["categories"]["reasoning"]["leaderboard"][0]["win_rate"] == 0.5
    md = (out / "leaderboard.md").read_text()
    assert "| 1 | alpha |" in md and "## Category: recall (6 battles)" in md
    page = (out / "results.html").read_text()
    assert 'id=winrate' in page and "alpha" in page and "background:#" in page
    assert json.loads((out / "results.json").read_text())["overall"]["n_battles"] == 12


def _parser():
    from subjectlm.commands.arena import add_arena_parser

    parser = argparse.ArgumentParser(prog="subjectlm eval")
    add_arena_parser(parser.add_subparsers())
    return parser


def test_cli_actions(tmp_path, capsys):
    from subjectlm.errors import UserError

    parser = _parser()
    for action in ("generate", "judge", "results"):
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args(["arena", action, "--help"])
        assert exit_.value.code == 0
    out = make_arena(tmp_path / "a")
    with open(out / "battles.jsonl", "w") as f:
        for winner in ("A", "A", "B", "tie"):
            f.write(json.dumps({"prompt_id": "q1", "category": "recall", "model_a": "alpha", "model_b": "beta",
                                "winner": winner, "judge": "human"}) + "\n")
    args = parser.parse_args(["arena", "results", str(out), "--n_bootstrap", "20"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "| 1 | alpha |" in printed and (out / "results.html").is_file()
    args = parser.parse_args(["arena", "judge", str(out), "--judge", "robot"])
    with pytest.raises(UserError, match="judge"):
        args.func(args)
    args = parser.parse_args(["arena", "results", str(tmp_path / "empty")])
    with pytest.raises(UserError, match="battles.jsonl"):
        args.func(args)


def test_judging_needs_answers_of_two_models(tmp_path):
    from subjectlm.config import ConfigError

    with pytest.raises(ConfigError, match="generate"):
        pending_pairs(tmp_path, "human", both_orders=False)
    out = make_arena(tmp_path / "a", models=("alpha",))
    with pytest.raises(ConfigError, match="two models"):
        pending_pairs(out, "human", both_orders=False)
