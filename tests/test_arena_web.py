"""The human judging page: its session logic directly, then the real page in headless Chromium.

The browser test needs Debian's chromium (`apt-get install chromium`) and the playwright Python
package (the `dev` extra); it never downloads a browser and is skipped when either is missing.
"""

import json
import threading
import urllib.request

from subjectlm.arena.config import JudgeConfig
from subjectlm.arena.judge_human import HumanSession, make_server
from subjectlm.arena.records import load_battles

PROMPTS = [{"id": f"q{i}", "prompt": f"Question number {i}?", "category": "recall",
            "reference": "The reference." if i == 1 else None} for i in (1, 2)]
MODELS = ("zebra-model", "otter-model", "heron-model")  # names that must not appear while judging


def make_arena(path):
    (path / "answers").mkdir(parents=True)
    (path / "prompts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in PROMPTS))
    (path / "models.json").write_text(json.dumps({m: {"path": "default"} for m in MODELS}))
    for m in MODELS:
        (path / "answers" / f"{m}.jsonl").write_text("".join(
            json.dumps({"id": p["id"], "model": m, "answer": f"Answer {p['id']} by {m[:5].upper()}"}) + "\n"
            for p in PROMPTS))
    return path


def test_session_votes_resume_and_reject_stale_tokens(tmp_path):
    out = make_arena(tmp_path / "a")
    session = HumanSession(out, seed=1)
    first = session.current()
    assert (first["n"], first["total"], first["done"]) == (1, 6, False)
    assert not any(m in json.dumps(first) for m in MODELS)
    assert session.vote(first["token"], "A")
    assert not session.vote(first["token"], "B")  # a double submit counts once
    assert not session.vote(session.current()["token"], "nonsense")
    second = session.current()
    assert session.vote(second["token"], "both-bad")
    battles = load_battles(out)
    assert [b["winner"] for b in battles] == ["A", "both-bad"] and {b["judge"] for b in battles} == {"human"}
    # A new session (server restart) continues where this one stopped, on the same sides.
    again = HumanSession(out, seed=1)
    assert (again.current()["n"], again.current()["total"]) == (3, 6)
    assert again.current()["answer_a"] == session.current()["answer_a"]


def _serve(out):
    server, session = make_server(JudgeConfig(output_dir=str(out), judge="human", port=0))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def test_server_routes(tmp_path):
    out = make_arena(tmp_path / "a")
    server, url = _serve(out)
    try:
        assert server.server_address[0] == "127.0.0.1"
        page = urllib.request.urlopen(url + "/").read().decode()
        assert "Which answer is better?" in page and not any(m in page for m in MODELS)
        item = json.loads(urllib.request.urlopen(url + "/api/next").read())
        request = urllib.request.Request(url + "/api/vote", method="POST", headers={"Content-Type": "application/json"},
                                         data=json.dumps({"token": item["token"], "winner": "tie"}).encode())
        after = json.loads(urllib.request.urlopen(request).read())
        assert after["accepted"] and after["n"] == 2
        results = urllib.request.urlopen(url + "/results").read().decode()
        assert "id=winrate" in results and sum(m in results for m in MODELS) == 2
    finally:
        server.shutdown()
        server.server_close()


def test_judging_page_in_chromium(tmp_path, browser):
    out = make_arena(tmp_path / "a")
    server, url = _serve(out)
    try:
        page = browser.new_page()
        page.goto(url + "/")
        progress = page.locator("#progress")
        progress.wait_for()
        page.wait_for_function("document.getElementById('progress').textContent === '1 of 6'")
        assert not any(m in page.content() for m in MODELS)
        shown = []  # (answer on the left, answer on the right) of each judged pair
        # 1: click "A is better"
        shown.append((page.inner_text("#answer-a"), page.inner_text("#answer-b")))
        page.click("#btn-a")
        page.wait_for_function("document.getElementById('progress').textContent === '2 of 6'")
        # 2: key "2" (B is better)
        shown.append((page.inner_text("#answer-a"), page.inner_text("#answer-b")))
        page.keyboard.press("2")
        page.wait_for_function("document.getElementById('progress').textContent === '3 of 6'")
        # 3: key "x" (both bad)
        shown.append((page.inner_text("#answer-a"), page.inner_text("#answer-b")))
        page.keyboard.press("x")
        page.wait_for_function("document.getElementById('progress').textContent === '4 of 6'")
        battles = load_battles(out)
        assert [b["winner"] for b in battles] == ["A", "B", "both-bad"]
        for b, (left, right) in zip(battles, shown):
            # the left answer is model_a's: the record names the models the person saw, in their places
            assert left.endswith(b["model_a"][:5].upper()) and right.endswith(b["model_b"][:5].upper())

        # Reload: the page resumes at the fourth pair; a vote by click still works.
        page.reload()
        page.wait_for_function("document.getElementById('progress').textContent === '4 of 6'")
        page.click("#btn-tie")
        page.wait_for_function("document.getElementById('progress').textContent === '5 of 6'")
        assert [b["winner"] for b in load_battles(out)] == ["A", "B", "both-bad", "tie"]

        # The results page names the models and shows the heat map.
        page.click("#results-link")
        page.wait_for_selector("#winrate")
        text = page.inner_text("body")
        assert "Arena results" in text and "4 battles" in text
        assert all(m in text for m in {b["model_a"] for b in load_battles(out)})
        cells = page.locator("#winrate td.cell")
        assert cells.count() == 9
    finally:
        server.shutdown()
        server.server_close()
