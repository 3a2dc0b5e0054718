"""Judging by a person: a one-page web app on 127.0.0.1 showing a prompt and two anonymous answers.

The page shows the prompt (and the reference answer, folded, when there is one), the two answers
side by side as "A" and "B" on sides drawn at random, and four buttons: A better, B better, tie,
both bad (keys 1/2/3/4 or a/b/t/x). Each vote is appended to battles.jsonl with judge "human" at
once, so closing the page or stopping the server loses nothing: the next start (or a reload)
continues with the first pair not yet judged. Model names appear only on /results.

Standard library only (http.server): one page, three JSON routes, no framework needed.
"""

from __future__ import annotations

import json
import secrets
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from subjectlm.arena.config import JudgeConfig
from subjectlm.arena.prompts import WINNERS
from subjectlm.arena.records import BATTLES_FILE, append_jsonl, battle_record, load_battles, pending_pairs

HOST = "127.0.0.1"  # never another interface: the page has no login
JUDGE = "human"


class HumanSession:
    """The queue of pairs still to judge, and the token of the one on screen."""

    def __init__(self, output_dir: str | Path, seed: int = 0, models: list[str] | tuple[str, ...] = ()):
        self.output_dir = Path(output_dir)
        self.lock = threading.Lock()
        self.jobs = pending_pairs(self.output_dir, JUDGE, both_orders=False, models=models, seed=seed)
        # Pairs judged before, among the same models, so that "n of N" counts across restarts.
        already = {(b.get("prompt_id"), frozenset((b["model_a"], b["model_b"])))
                   for b in load_battles(self.output_dir) if b.get("judge") == JUDGE
                   and (not models or {b["model_a"], b["model_b"]} <= set(models))}
        self.judged = len(already)
        self.total = self.judged + len(self.jobs)
        # A fresh token per pair: a vote counts only for the pair on screen (no double votes).
        self.tokens = [secrets.token_hex(8) for _ in self.jobs]

    def current(self) -> dict[str, Any]:
        with self.lock:
            if not self.jobs:
                return {"done": True, "n": self.judged, "total": self.total}
            job = self.jobs[0]
            prompt = job["prompt"]
            return {"done": False, "token": self.tokens[0], "n": self.judged + 1, "total": self.total,
                    "prompt": prompt["prompt"], "reference": prompt.get("reference"),
                    "category": prompt.get("category"), "answer_a": job["answer_a"], "answer_b": job["answer_b"]}

    def vote(self, token: str, winner: str) -> bool:
        """Record the vote for the pair on screen; False for a stale token or a bad winner."""
        if winner not in WINNERS:
            return False
        with self.lock:
            if not self.jobs or token != self.tokens[0]:
                return False
            append_jsonl(self.output_dir / BATTLES_FILE, battle_record(self.jobs[0], winner, JUDGE))
            self.jobs.pop(0)
            self.tokens.pop(0)
            self.judged += 1
            return True


def results_page(output_dir: Path) -> str:
    from subjectlm.arena.results import compute_results, results_html

    if not (output_dir / BATTLES_FILE).is_file():
        return "<!doctype html><html><body><h1>Arena results</h1><p>No battles yet.</p></body></html>"
    return results_html(compute_results(output_dir, judges=[JUDGE], n_bootstrap=200))


def make_handler(session: HumanSession):
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: str, kind: str) -> None:
            data = body.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", f"{kind}; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def _json(self, obj: Any, status: int = HTTPStatus.OK) -> None:
            self._send(status, json.dumps(obj, ensure_ascii=False), "application/json")

        def do_GET(self):  # noqa: N802 (http.server's name)
            path = self.path.split("?")[0]
            if path == "/":
                self._send(HTTPStatus.OK, PAGE, "text/html")
            elif path == "/api/next":
                self._json(session.current())
            elif path == "/results":
                self._send(HTTPStatus.OK, results_page(session.output_dir), "text/html")
            else:
                self._send(HTTPStatus.NOT_FOUND, "not found", "text/plain")

        def do_POST(self):  # noqa: N802
            if self.path != "/api/vote":
                return self._send(HTTPStatus.NOT_FOUND, "not found", "text/plain")
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                ok = session.vote(str(body.get("token", "")), str(body.get("winner", "")))
            except (ValueError, AttributeError):
                ok = False
            self._json({**session.current(), "accepted": ok}, HTTPStatus.OK if ok else HTTPStatus.CONFLICT)

        def log_message(self, format, *args):  # keep the terminal for the URL and progress
            pass

    return Handler


def make_server(config: JudgeConfig) -> tuple[ThreadingHTTPServer, HumanSession]:
    session = HumanSession(config.output_dir, config.seed, config.models)
    server = ThreadingHTTPServer((HOST, config.port), make_handler(session))
    server.daemon_threads = True
    return server, session


def serve(config: JudgeConfig) -> dict[str, Any]:
    """Serve the judging page until Ctrl-C; returns how many pairs are judged."""
    server, session = make_server(config)
    url = f"http://{HOST}:{server.server_address[1]}/"
    print(f"judging page: {url}  ({session.judged} of {session.total} pairs judged; Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return {"judged": session.judged, "total": session.total}


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Arena: which answer is better?</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1200px;padding:0 1em;color:#222}
#prompt{background:#f4f4f8;padding:1em;border-radius:6px;white-space:pre-wrap}
.answers{display:flex;gap:1em;margin:1em 0}
.answer{flex:1;border:1px solid #ccc;border-radius:6px;padding:1em;white-space:pre-wrap;min-height:6em}
.answer h3{margin-top:0}
.buttons button{font-size:1.05em;padding:.5em 1em;margin-right:.5em}
#progress{float:right;color:#555}
#category{color:#555;margin-bottom:.4em}
kbd{border:1px solid #aaa;border-radius:3px;padding:0 .3em;font-size:.85em}
</style></head><body>
<div id="progress"></div>
<h1>Which answer is better?</h1>
<div id="item">
  <div id="category"></div>
  <div id="prompt"></div>
  <details id="ref-box"><summary>Reference answer</summary><div id="reference"></div></details>
  <div class="answers">
    <div class="answer"><h3>Answer A</h3><div id="answer-a"></div></div>
    <div class="answer"><h3>Answer B</h3><div id="answer-b"></div></div>
  </div>
  <div class="buttons">
    <button id="btn-a" data-winner="A">A is better <kbd>1</kbd>/<kbd>a</kbd></button>
    <button id="btn-b" data-winner="B">B is better <kbd>2</kbd>/<kbd>b</kbd></button>
    <button id="btn-tie" data-winner="tie">Tie <kbd>3</kbd>/<kbd>t</kbd></button>
    <button id="btn-bad" data-winner="both-bad">Both bad <kbd>4</kbd>/<kbd>x</kbd></button>
  </div>
</div>
<div id="done" hidden><p>All pairs are judged.</p></div>
<p><a id="results-link" href="/results">Results (shows the model names)</a></p>
<script>
const KEYS = {"1": "A", "a": "A", "2": "B", "b": "B", "3": "tie", "t": "tie", "4": "both-bad", "x": "both-bad"};
let current = null, busy = false;
function show(item) {
  current = item;
  document.getElementById("progress").textContent =
    item.done ? `${item.n} of ${item.total} judged` : `${item.n} of ${item.total}`;
  document.getElementById("item").hidden = item.done;
  document.getElementById("done").hidden = !item.done;
  if (item.done) return;
  document.getElementById("category").textContent = item.category ? "Category: " + item.category : "";
  document.getElementById("prompt").textContent = item.prompt;
  document.getElementById("ref-box").hidden = !item.reference;
  document.getElementById("reference").textContent = item.reference || "";
  document.getElementById("answer-a").textContent = item.answer_a;
  document.getElementById("answer-b").textContent = item.answer_b;
}
async function load() { show(await (await fetch("/api/next")).json()); }
async function vote(winner) {
  if (busy || !current || current.done) return;
  busy = true;
  try {
    const r = await fetch("/api/vote", {method: "POST", headers: {"Content-Type": "application/json"},
                                        body: JSON.stringify({token: current.token, winner: winner})});
    show(await r.json());
  } finally { busy = false; }
}
document.querySelectorAll("button[data-winner]").forEach(b => b.addEventListener("click", () => vote(b.dataset.winner)));
document.addEventListener("keydown", e => {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const w = KEYS[e.key.toLowerCase()];
  if (w) { e.preventDefault(); vote(w); }
});
load();
</script>
</body></html>
"""
