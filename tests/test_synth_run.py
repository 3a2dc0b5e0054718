"""`subjectlm synth` end to end against the stand-in teacher (tests/standin_teacher.py) on 127.0.0.1.

The scripted teacher answers every prompt from its content (facts are the chunk's sentences, questions
shuffle the fact's words, ...) in every form a real one sends: plain, fenced and prose-wrapped JSON,
`<think>` blocks, reasoning_content; it also sends truncated and unparseable replies, 429s with
Retry-After, 500s, 503s that never stop, and slow replies. Planted in the corpus: a repeated paragraph,
an invented quote, a rewrite that copies its chunk, exam questions that repeat a training question.
"""

from __future__ import annotations

import csv
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from standin_teacher import Reply, StandinTeacher, json_reply, truncated
from subjectlm.cli import main
from subjectlm.synth import SynthConfig, run
from subjectlm.synth.dedup import overlapping

SECRET = "sk-test-7f3a9c1e5b"  # the API key: must reach the server and no file

DOC_MD = """# Kestrel Island
## Rocks
The Corran Gabbro is 4.2 million years old. It is exposed at Corran Head on the south coast.

The Greyvane Basalts erupted 3.1 million years ago. The Greyvane Basalts are up to 900 metres thick.

## Volcanoes
Mount Harrow rises to 1486 metres above sea level. Mount Harrow last erupted in 1968.

Blackmouth Crater is 640 metres across. Blackmouth Crater is 190 metres deep.
"""
DOC_TXT = """The Selkie Sandstone formed from wind-blown dune sand. The Selkie Sandstone is 40 metres thick at Corbie Bay.

The Ferrow River is 14 kilometres long. The Ferrow River drains the Ferrow Valley.

The Skerry Fault moved 1.4 metres in 1894. The Skerry earthquake had a magnitude of 6.2.

The Maddock Tuff is 60 metres thick. The Maddock Caldera is 9 kilometres wide.

The Gannet Flow is 7.3 kilometres long. The Gannet Flow reached Gannet Cove in 1857.

Port Ardle has 900 residents. Port Ardle lies on the east coast.
"""
DOC_JSONL = [
    "Mount Harrow rises to 1486 metres above sea level. Mount Harrow last erupted in 1968.",  # a repeat
    "Thorvald's survey of 1931 described kestrelite. Kestrelite is a green copper silicate.",
    "Ness Point lighthouse was built in 1884. Ness Point is the northern tip of the island.",
]


def write_corpus(root: Path) -> Path:
    corpus = root / "corpus"
    corpus.mkdir()
    (corpus / "a_island.md").write_text(DOC_MD, encoding="utf-8")
    (corpus / "b_notes.txt").write_text(DOC_TXT, encoding="utf-8")
    (corpus / "c_field.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in DOC_JSONL),
                                          encoding="utf-8")
    return corpus


# ---- the scripted teacher


def _shuffled(text: str, seed: int) -> str:
    words = text.rstrip(".").split()
    random.Random(f"{seed}:{text}").shuffle(words)
    return " ".join(words) + "?"


def _short(fact: str) -> str:
    numbers = [w.strip(".,") for w in fact.split() if any(ch.isdigit() for ch in w)]
    return numbers[0] if numbers else fact.rstrip(".").split()[-1]


def _field(prompt: str, name: str) -> str:
    return re.search(rf"^{name}: (.*)$", prompt, re.M).group(1)


class Script:
    """Replies from the prompt's content; HTTP trouble from the request's hash (the same in every run)."""

    def __init__(self):
        self.answered: Counter = Counter()  # request hash -> 200 replies sent

    def __call__(self, request) -> Reply:
        reply = self.reply(request)
        if reply.status == 200 and not reply.drop:
            self.answered[request.hash] += 1
        return reply

    def reply(self, request) -> Reply:
        prompt = request.prompt
        bucket = int(request.hash[:8], 16) % 9
        if "Greyvane" in prompt and prompt.startswith(("Rewrite", "List the entities", "Take pairs")):
            return Reply(status=503, retry_after=0.01)  # down for good: counted as http_503
        if request.seen == 1 and bucket == 0:
            return Reply(status=429, retry_after=0.05)
        if request.seen == 1 and bucket == 1:
            return Reply(status=500)
        delay = 0.2 if bucket == 2 else 0.0
        reply = self.content(prompt, bucket)
        reply.delay = delay
        return reply

    def content(self, prompt: str, bucket: int) -> Reply:
        form = {3: {"fence": True}, 4: {"think": "Let me think about {\"facts\": []} first."},
                5: {"prose": True}}.get(bucket, {})
        if "atomic facts" in prompt:
            text = prompt.split('"""\n')[1].split('\n"""')[0]
            if "Gannet Flow" in text:  # cut too early to repair
                return truncated({"facts": [{"fact": s, "quote": s} for s in re.split(r"(?<=\.) ", text)]}, 0.02)
            if "Thorvald" in text:  # cut inside the second fact: the first one is repaired
                return truncated({"facts": [{"fact": s, "quote": s} for s in re.split(r"(?<=\.) ", text)]}, 0.6)
            if "Port Ardle" in text:
                return Reply("I am sorry, I cannot produce JSON for this.")
            facts = [{"fact": s, "quote": s} for s in re.split(r"(?<=\.) ", text)]
            if "Blackmouth" in text:
                facts.append({"fact": "Blackmouth Crater holds a lake.", "quote": "Blackmouth Crater holds a lake"})
            return json_reply({"facts": facts}, **form)
        if prompt.startswith(("Rewrite", "List the entities", "Take pairs")):
            text = prompt.split('"""\n')[1].split('\n"""')[0]
            if prompt.startswith("Rewrite the text below as concise study notes") and "Corran" in text:
                return Reply(text)  # a copy of its chunk: a near-duplicate in pt/
            style = f"s{sum(map(ord, prompt.splitlines()[0])) % 997}"  # a word of its own per style
            body = " ".join(f"{w} {style}{i % 3}" for i, w in enumerate(text.split()))
            return Reply(f"<think>planning the {style} rewrite</think>{body}", reasoning="hidden")
        if "questions that each ask for this fact" in prompt:
            fact = _field(prompt, "Fact")
            n = int(re.search(r"Write (\d+) questions", prompt).group(1))
            questions = [_shuffled(fact, k) for k in range(n)]
            if "Ferrow" in fact or "Skerry" in fact:  # the exam's wording repeats a training question
                questions[-1] = questions[0].rstrip("?") + " ?!"
            return json_reply({"questions": questions, "answer": fact, "short_answer": _short(fact)}, **form)
        if "two or more of the facts" in prompt:
            facts = re.findall(r"^\d+\. (.*)$", prompt, re.M)
            return json_reply({"items": [{"question": f"What links {facts[0].split()[1]} and "
                                                      f"{facts[1].split()[1]} in this account?",
                                          "answer": f"{facts[0]} {facts[1]}"}]})
        if "three wrong answers" in prompt:
            short = _field(prompt, "Correct answer")
            if short == "1968":
                return json_reply({"distractors": ["1969", "1969", "1968"]})  # not distinct: the item is dropped
            if any(ch.isdigit() for ch in short):
                head = short.rstrip("0123456789")
                last = int(short[len(head):] or 0)
                return json_reply({"distractors": [f"{head}{last + k}" for k in (1, 2, 3)]}, **form)
            return json_reply({"distractors": [f"{short} rock", f"{short}stone", f"red {short}"]}, **form)
        if "wrong answer to the question" in prompt:
            answer = _field(prompt, "Correct answer")
            return json_reply({"wrong_answer": re.sub(r"\d", lambda m: str((int(m.group()) + 1) % 10), answer, count=1)
                               if re.search(r"\d", answer) else "It is not true that " + answer})
        if "Reword this question" in prompt:
            question = _field(prompt, "Question")
            return json_reply({"question": question if "Skerry" in question else _shuffled(question, 99)})
        return Reply(status=400, content=f"unexpected prompt: {prompt[:80]}")


def _config(corpus: Path, out: Path, url: str, **kw) -> SynthConfig:
    values = dict(data=[str(corpus)], output_dir=str(out), teacher=url, teacher_model="standin",
                  api_key_env="SYNTH_TEST_KEY", concurrency=4, max_retries=2, timeout=10, chunk_tokens=30,
                  rewrites=2, sft_questions=2, multi_fact_questions=1, control_fraction=0.2, dev_shots=1,
                  overlap_ngram=10, seed=0)
    values.update(kw)
    return SynthConfig(**values)


def _cli_args(config: SynthConfig) -> list[str]:
    args = []
    for key in ("data", "output_dir", "teacher", "teacher_model", "api_key_env", "concurrency", "max_retries",
                "timeout", "chunk_tokens", "rewrites", "sft_questions", "multi_fact_questions", "control_fraction",
                "dev_shots", "overlap_ngram", "seed"):
        value = getattr(config, key)
        args += [f"--{key}", *(value if isinstance(value, list) else [str(value)])]
    return args


OUTPUT_FILES = ("chunks.jsonl", "facts.jsonl", "pt/pt.jsonl", "sft/sft.jsonl", "dpo/dpo.jsonl", "qa.jsonl")


def _outputs(out: Path) -> dict[str, bytes]:
    files = {name: (out / name).read_bytes() for name in OUTPUT_FILES}
    files.update({str(p.relative_to(out)): p.read_bytes() for p in sorted((out / "exam").rglob("*")) if p.is_file()})
    return files


@pytest.fixture(scope="module")
def one_go(tmp_path_factory):
    """One uninterrupted run (in-process), shared by the tests that read its outputs."""
    root = tmp_path_factory.mktemp("synth")
    corpus = write_corpus(root)
    script = Script()
    old = os.environ.get("SYNTH_TEST_KEY")
    os.environ["SYNTH_TEST_KEY"] = SECRET
    try:
        with StandinTeacher(script, slots=4, max_requests=2000, max_seconds=240) as server:
            config = _config(corpus, root / "out", server.url)
            result = run(config)
            seen_headers = [r.headers.get("authorization") for r in server.requests]
            reword_asked = [r for r in server.requests if "Reword this question" in r.prompt]
    finally:
        if old is None:
            os.environ.pop("SYNTH_TEST_KEY")
        else:
            os.environ["SYNTH_TEST_KEY"] = old
    return {"root": root, "corpus": corpus, "out": root / "out", "result": result, "script": script,
            "headers": seen_headers, "reword_asked": reword_asked,
            "report": json.loads((root / "out" / "synth_report.json").read_text())}


def test_the_run_finishes_and_counts_every_failure_by_reason(one_go):
    report = one_go["report"]
    drops = report["drops"]
    assert drops["teacher facts: truncated_json"] == 1  # the Gannet Flow chunk, asked twice
    assert drops["teacher facts: invalid_json"] == 1  # Port Ardle: prose, no JSON
    assert drops["teacher rewrite: http_503"] == 2  # the Greyvane chunk's rewrites: the server never recovers
    retried = report["teacher"]["http_retries"]
    assert retried["http_429"] >= 1 and retried["http_500"] >= 1 and retried["http_503"] == 4
    assert report["teacher"]["reasked"] == 2
    counts = report["counts"]
    assert counts["documents"] == 5 and counts["chunks"] == 13
    assert counts["chunks after near-duplicates"] == 12
    assert report["split"]["control_chunks"] == 2 and report["split"]["taught_chunks"] == 10
    assert counts["pt records"] > counts["taught chunks"]
    assert counts["sft records"] > 0 and counts["dpo records"] > 0
    assert report["split"]["taught_questions"] > 0 and report["split"]["control_questions"] > 0
    assert report["teacher"]["tokens_in"] > 0 and report["teacher"]["tokens_out"] > 0
    assert 0 < report["grounding_rate"] < 1
    assert "Left out, by reason" in (one_go["out"] / "synth_report.md").read_text()


def test_an_invented_quote_is_dropped(one_go):
    assert one_go["report"]["drops"]["fact: quote not in chunk"] == 1
    facts = [json.loads(line) for line in (one_go["out"] / "facts.jsonl").read_text().splitlines()]
    assert not any("lake" in f["fact"] for f in facts)
    assert all(f["quote"] in f["fact"] or f["quote"] == f["fact"] for f in facts)


def test_planted_duplicates_are_removed(one_go):
    report = one_go["report"]
    assert report["drops"]["chunk: near-duplicate of an earlier chunk"] == 1  # the repeated Harrow paragraph
    assert report["near_duplicates_removed"]["pt"] == {"within": 1, "across": 0}  # a rewrite copying its chunk
    pt = [json.loads(line)["text"] for line in (one_go["out"] / "pt/pt.jsonl").read_text().splitlines()]
    assert len(pt) == len(set(pt))
    chunks = [json.loads(line) for line in (one_go["out"] / "chunks.jsonl").read_text().splitlines()]
    assert sum("Mount Harrow rises" in c["text"] for c in chunks) == 1


def test_no_control_text_reaches_the_training_outputs(one_go):
    out = one_go["out"]
    chunks = [json.loads(line) for line in (out / "chunks.jsonl").read_text().splitlines()]
    facts = [json.loads(line) for line in (out / "facts.jsonl").read_text().splitlines()]
    control = [c for c in chunks if c["category"] == "control"]
    assert len(control) == 2
    training = "".join((out / f).read_text() for f in ("pt/pt.jsonl", "sft/sft.jsonl", "dpo/dpo.jsonl"))
    decoded = " ".join(json.dumps(json.loads(line), ensure_ascii=False) for line in training.splitlines())
    for chunk in control:
        for sentence in re.split(r"(?<=\.) ", chunk["text"]):
            assert sentence.rstrip(".") not in decoded
    control_facts = [f for f in facts if f["category"] == "control"]
    assert control_facts and all(f["fact"].rstrip(".") not in decoded for f in control_facts)
    qa = [json.loads(line) for line in (out / "qa.jsonl").read_text().splitlines()]
    assert {q["category"] for q in qa} == {"taught", "control"}
    assert {q["id"] for q in qa if q["category"] == "control"} <= {f["id"] for f in control_facts}


def _exam_questions(exam: Path) -> list[str]:
    questions = []
    for path in sorted(exam.rglob("*.csv")):
        with open(path, newline="", encoding="utf-8") as handle:
            questions += [row["question"] for row in csv.DictReader(handle)]
    return questions


def _training_texts(out: Path) -> list[str]:
    texts = [json.loads(line)["text"] for line in (out / "pt/pt.jsonl").read_text().splitlines()]
    for line in (out / "sft/sft.jsonl").read_text().splitlines():
        texts += [m["content"] for m in json.loads(line)["messages"]]
    for line in (out / "dpo/dpo.jsonl").read_text().splitlines():
        record = json.loads(line)
        texts += [record["prompt"], record["chosen"], record["rejected"]]
    return texts


def test_planted_overlapping_exam_questions_are_reworded_once_or_dropped(one_go):
    # Planted: the exam question of the two Ferrow and the two Skerry facts repeats their first sft question
    # (+ " ?!"). All four are near-duplicates of it and all four are found whole: the Skerry ones (9 tokens:
    # under overlap_ngram=10, at least 8) anywhere, the shorter Ferrow ones as the sentence their sft
    # question is. No question shares a 10-token run. The teacher rewords the Ferrow ones
    # and sends the Skerry ones back unchanged: still overlapping, they are dropped.
    out, report = one_go["out"], one_go["report"]
    assert report["exam_overlap"] == {
        "checked": 18, "flagged": 4, "flagged: shared n-gram": 0, "flagged: whole question in the training data": 4,
        "flagged: near-duplicate": 4, "reworded": 2, "dropped": 2}
    assert report["drops"]["exam: overlaps the training data (after rewording once)"] == 2
    # Each flagged question went to the teacher once (a 429/500 retry aside), with nothing else.
    asked = one_go["reword_asked"]
    assert len({r.hash for r in asked}) == 4 and all(one_go["script"].answered[r.hash] == 1 for r in asked)
    planted = sorted({_field(r.prompt, "Question") for r in asked})
    facts = {f["id"]: f["fact"] for f in map(json.loads, (out / "facts.jsonl").read_text().splitlines())}
    ferrow = sorted(i for i, fact in facts.items() if "Ferrow" in fact)
    skerry = sorted(i for i, fact in facts.items() if "Skerry" in fact)
    assert len(ferrow) == len(skerry) == 2
    assert planted == sorted(_shuffled(facts[i], 0).rstrip("?") + " ?!" for i in ferrow + skerry)
    qa = {q["id"]: q["question"] for q in map(json.loads, (out / "qa.jsonl").read_text().splitlines())}
    assert [qa[i] for i in ferrow] == [_shuffled(_shuffled(facts[i], 0).rstrip("?") + " ?!", 99) for i in ferrow]
    assert not set(skerry) & set(qa)
    assert report["counts"]["qa questions"] == report["counts"]["exam questions with options"] - 2


def test_no_exam_question_overlaps_the_training_outputs(one_go, tmp_path):
    from subjectlm.data.overlap import OverlapConfig, find_overlap

    out = one_go["out"]
    questions = _exam_questions(out / "exam")
    qa = [json.loads(line)["question"] for line in (out / "qa.jsonl").read_text().splitlines()]
    assert sorted(questions) == sorted(qa) and len(qa) == 16
    # synth's own test, as it ran (every training message on its own), and a stricter Jaccard.
    training = _training_texts(out)
    assert overlapping(questions, training, ngram=10, jaccard=0.8) == [()] * len(questions)
    assert overlapping(questions, training, ngram=13, jaccard=0.5) == [()] * len(questions)
    # Independently, as `eval` checks the written files: every exam question (with its options) and QA
    # question against pt/, sft/ and dpo/, short questions (5 tokens on) flagged when found whole.
    train = [out / "pt", out / "sft", out / "dpo"]
    config = OverlapConfig(ngram=10, whole_min=5)
    found = find_overlap(train, [out / "exam", out / "qa.jsonl"], config)
    assert found.counts()["items"] == 32 and found.flagged == []
    # The same check finds the planted questions (as the teacher wrote them) in the same training data.
    planted = tmp_path / "planted.jsonl"
    planted.write_text("".join(json.dumps({"id": f"p{n}", "question": _field(r.prompt, "Question"),
                                           "reference": "x"}) + "\n"
                               for n, r in enumerate({r.hash: r for r in one_go["reword_asked"]}.values())))
    found = find_overlap(train, [planted], config)
    assert found.counts()["items"] == 4 and len(found.flagged) == 4


def test_exam_layout_letters_and_distractors(one_go):
    out = one_go["out"]
    mapping = json.loads((out / "exam/subject_mapping.json").read_text())
    assert mapping == {"corpus_control": ["corpus", "corpus", "control"],
                       "corpus_taught": ["corpus", "corpus", "taught"]}
    assert one_go["report"]["drops"]["exam: fewer than 3 distinct distractors"] == 1  # the 1968 fact
    total = 0
    for path in (out / "exam").rglob("*.csv"):
        letters = Counter({letter: 0 for letter in "ABCD"})
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                options = [row[k] for k in "ABCD"]
                assert len({o.lower() for o in options}) == 4
                letters[row["answer"]] += 1
        assert max(letters.values()) - min(letters.values()) <= 1, path  # balanced in each file
        total += sum(letters.values())
    assert total == sum(one_go["report"]["exam_letters"].values())
    assert 0 <= one_go["report"]["correct_option_longest_share"] <= 1


def test_data_check_passes_on_every_output(one_go, capsys):
    out = one_go["out"]
    for kind in ("pt", "sft", "dpo", "exam"):
        assert main(["data", "check", "--kind", kind, str(out / kind)]) == 0, capsys.readouterr().out
    from subjectlm.eval.qa.items import read_qa_file

    items = read_qa_file(out / "qa.jsonl")
    assert len(items) == one_go["report"]["counts"]["qa questions"] and all(i.key_facts for i in items)


def test_the_api_key_reaches_the_server_and_no_file(one_go):
    assert set(one_go["headers"]) == {f"Bearer {SECRET}"}
    for path in one_go["root"].rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(encoding="utf-8", errors="replace"), path


def test_killed_and_resumed_gives_the_same_outputs_and_asks_nothing_twice(one_go, tmp_path):
    script = Script()
    out = tmp_path / "out"
    env = {**os.environ, "SYNTH_TEST_KEY": SECRET, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    with StandinTeacher(script, slots=4, latency=0.05, max_requests=2000, max_seconds=240) as server:
        config = _config(one_go["corpus"], out, server.url)
        child = subprocess.Popen([sys.executable, "-m", "subjectlm", "synth", *_cli_args(config)], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while server.total < 40 and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert child.returncode == -signal.SIGKILL, "the run ended before it was killed"
        before = server.total
        cached = (out / "teacher_cache.jsonl").read_text(encoding="utf-8").splitlines()
        received = {int(json.loads(line)["key"][:8], 16) % 2 ** 31 for line in cached if line.endswith("}")}
        assert 10 <= len(received) < 200 and not (out / "synth_report.json").exists()
        os.environ["SYNTH_TEST_KEY"] = SECRET
        try:
            run(config)
        finally:
            os.environ.pop("SYNTH_TEST_KEY")
        resumed = server.requests[before:]
    # Nothing whose reply the killed run had received is asked again (the seed sent is a hash of the cache key).
    assert not [r for r in resumed if r.body.get("seed") in received]
    assert resumed  # what it had no reply for is asked
    assert _outputs(out) == _outputs(one_go["out"])
    report = json.loads((out / "synth_report.json").read_text())
    assert report["teacher"]["cached"] >= len(received)


def test_the_recipe_stage_resumes_from_the_cache_and_names_its_datasets(one_go, tmp_path):
    import shutil

    from subjectlm.synth.recipe_stage import run as run_stage

    out = tmp_path / "synth"
    shutil.copytree(one_go["out"], out)
    with StandinTeacher(Script(), slots=4, max_requests=200, max_seconds=120) as server:
        result = run_stage(_config(one_go["corpus"], out, server.url))
        asked = server.total
    # Only what had no reply is asked again: the Greyvane rewrites the server refused (2 x 3 attempts).
    assert asked == 6
    assert {name: (d.kind, d.path.relative_to(out).as_posix()) for name, d in result.datasets.items()} == {
        "pt": ("pt", "pt"), "sft": ("sft", "sft"), "dpo": ("dpo", "dpo"), "exam": ("exam", "exam"),
        "qa": ("qa", "qa.jsonl")}
    assert result.summary.startswith("synth: 12 chunks (2 control)")
    assert _outputs(out) == _outputs(one_go["out"])


def test_prompts_follow_each_documents_language(tmp_path):
    from subjectlm.synth.chunk import chunk_documents
    from subjectlm.synth.documents import Document
    from subjectlm.synth.generate import Tally, facts_and_rewrites
    from subjectlm.synth.teacher import TeacherReply

    class Refusing:  # answers nothing: records what it was asked
        def __init__(self):
            self.asked = []

        def ask(self, requests, desc=""):
            self.asked += requests
            return [TeacherReply(False, "", None, "http_500", 0, 0, False) for _ in requests]

    chunks = chunk_documents([Document("en.txt", "Kestrel Island is volcanic."),
                              Document("zh.txt", "凯斯特雷尔岛是一座火山岛。")], 100)
    teacher, tally = Refusing(), Tally()
    config = SynthConfig(data=["x"], output_dir="o", teacher="http://127.0.0.1:1/v1", rewrites=1)
    assert facts_and_rewrites(teacher, config, chunks, {"c00000", "c00001"}, tally) == ([], [])
    assert [r.messages[1]["content"].split("\n")[0] for r in teacher.asked] == [
        "Text:", "文本：", "Rewrite the text below as a paragraph of a textbook. Use only information from the text "
        "and add nothing else; keep every name and number exactly as written. Reply with the rewritten text only.",
        "把下面的文本改写成简明的学习笔记：分条列出要点。只使用文本中的信息，不要添加任何其他内容；名称和数字与原文完全一致。只回复改写后的文本。"]
    assert tally.drops == Counter({"teacher facts: http_500": 2, "teacher rewrite: http_500": 2})
