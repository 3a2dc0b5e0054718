"""Benchmark: `subjectlm data overlap` against datasketch's MinHashLSH on training data with planted leaks.

The data (built here, deterministically, into a temporary folder):
- training, ~1.5M tokens at `--scale 1`: the two Chinese instruction files of ../shared/seed_data as alpaca
  records, plus pre-training records recombined from their sentences and from the demo's English texts
  (examples/data: corpus, sft, dpo, general text), a few preference pairs; `--scale` multiplies the
  recombined part.
- evaluation: a C-Eval-layout exam of C-Eval val questions (../shared/ceval-exam), the demo's own exam, QA
  file (plus C-Eval test questions as Chinese QA), arena prompts (plus C-Eval test questions) and held-out text.
- planted leaks, `--leaks` of each kind (20), each at a known evaluation file:line:
    exam_record      an exam question with its options as an sft record of its own (answer as the output)
    exam_fullwidth   an exam question with its punctuation turned full-width, inside a long pre-training record
    qa_case_space    a QA question in capitals with doubled spaces and a line break, inside an sft answer
    split            an exam question cut in two: the end of one pre-training record, the start of the next
    near_duplicate   an exam question with its options, one character changed, as a pre-training record
    prompt_in_dpo    an arena prompt as the prompt of a preference pair
    heldout_copy     a training record copied into the held-out text (the windows that hold >= 13 of its tokens)
  Everything else is clean: recall and false positives count against this list.

Both sides read the same files through subjectlm's readers and tokens (normalised: case, width, whitespace;
words, CJK characters), so the comparison is of the index, not of the normalising. datasketch (2.0.0, the
`bench` extra) gets 128-permutation MinHashes of each record's 3-token shingles (MinHash.bulk), a
MinHashLSH(threshold=0.8) built in an insertion session, and one query per evaluation item: an item with any
candidate is flagged, as MinHashLSH is used for decontamination. It looks for near-duplicate records, so
by design it cannot see an item inside a longer record or across two; the per-kind table shows where.

Each side runs in its own child process: time from reading the data to the last answer (imports excluded),
peak RSS (ru_maxrss) of the child.

    .venv/bin/python bench/overlap_speed.py              # ~1.5M training tokens
    .venv/bin/python bench/overlap_speed.py --scale 6    # ~10M

Last line: overlap_speedup_vs_datasketch=X.XX recall=Y.YYY false_positives=N (recall, false positives: ours).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "data"
SHARED = REPO.parent / "shared"
KINDS = ("exam_record", "exam_fullwidth", "qa_case_space", "split", "near_duplicate", "prompt_in_dpo", "heldout_copy")
_HALF, _FULL = ",.?!:;()", "，。？！：；（）"
SWAP_WIDTH = str.maketrans(_HALF + _FULL, _FULL + _HALF)  # each punctuation mark to its other width


# --- building the data (pure given the sources and the seed) ------------------------------------------

def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?。！？])\s*|\n+", text) if s and len(s.strip()) >= 8]


def read_jsonl_texts(path: Path, keys: tuple[str, ...]) -> list[str]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            out += [row[k] for k in keys if isinstance(row.get(k), str)]
    return out


def english_texts() -> list[str]:
    """The demo's training-side English (what its recipe trains on), never its evaluation files."""
    texts = [(EXAMPLES / "corpus" / "kestrel_geology.txt").read_text(encoding="utf-8"),
             (EXAMPLES / "general_text.txt").read_text(encoding="utf-8")]
    texts += read_jsonl_texts(EXAMPLES / "corpus" / "field_notes.jsonl", ("text",))
    texts += read_jsonl_texts(EXAMPLES / "sft" / "kestrel_facts.jsonl", ("instruction", "output"))
    return texts


def seed_records() -> list[dict]:
    folder = SHARED / "seed_data"
    if not folder.is_dir():
        return []
    return [r for f in sorted(folder.glob("*.json")) for r in json.loads(f.read_text(encoding="utf-8"))]


def ceval_docs(split: str) -> list[list[str]]:
    """[question, A, B, C, D, answer] rows of every C-Eval subject of a split, newlines flattened."""
    folder = SHARED / "ceval-exam" / split
    rows = []
    for path in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
        with open(path, encoding="utf-8", newline="") as handle:
            for row in list(csv.DictReader(handle)):
                rows.append([" ".join(row[k].split()) for k in ("question", "A", "B", "C", "D")] + [row.get("answer") or "A"])
    return rows


def one_char_changed(text: str) -> str:
    cjk = [i for i, ch in enumerate(text) if "\u4e00" <= ch <= "\u9fff"]
    i = cjk[len(cjk) // 2] if cjk else len(text) // 2
    return text[:i] + ("甲" if text[i] != "甲" else "乙") + text[i + 1:]


def token_boundary(text: str, near: int) -> int:
    """The cut nearest `near` that splits no word (CJK characters may be cut apart, not 'rightarrow')."""
    def ok(i: int) -> bool:
        a, b = text[i - 1], text[i]
        return not (a.isascii() and a.isalnum() and b.isascii() and b.isalnum())
    return min((i for i in range(1, len(text)) if ok(i)), key=lambda i: abs(i - near), default=near)


def shouted(text: str) -> str:
    words = text.upper().split()
    return "  ".join(words[: len(words) // 2]) + "\n " + "   ".join(words[len(words) // 2:])


def build(out: Path, scale: float, leaks: int, seed: int) -> dict[str, str]:
    """Write out/train and out/eval; return {"file:line": kind} of every planted leak."""
    from subjectlm.data.overlap_sources import window_starts
    from subjectlm.data.overlap_text import tokens

    rng = random.Random(seed)
    seeds = seed_records()
    zh = [s for r in seeds for s in split_sentences(r["output"])]
    en = [s for t in english_texts() for s in split_sentences(t)]
    val, test = ceval_docs("val"), ceval_docs("test")
    rng.shuffle(val)
    rng.shuffle(test)
    exam_docs = unique([d for d in val if len(d[0]) >= 30], key=lambda d: d[0])[:600]
    planted_rows = {kind: range(i * leaks, (i + 1) * leaks)
                    for i, kind in enumerate(("exam_record", "exam_fullwidth", "split", "near_duplicate"))}
    planted_docs = {kind: [exam_docs[i] for i in rows] for kind, rows in planted_rows.items()}
    qa = read_jsonl_texts(EXAMPLES / "qa.jsonl", ("question",))
    questions = unique([d[0] for d in test if d[0] not in set(qa)], key=lambda q: q)
    zh_qa, zh_prompts = questions[:200], questions[200:300]
    prompts = read_jsonl_texts(EXAMPLES / "prompts.jsonl", ("prompt",)) + zh_prompts
    qa_leaks, prompt_leaks = qa[:min(leaks, len(qa) // 2)], zh_prompts[:leaks]

    def paragraph(pool: list[str], lo: int, hi: int) -> str:
        joiner = "" if pool is zh else " "
        return joiner.join(rng.choice(pool) for _ in range(rng.randint(lo, hi)))

    # Training records: seeds as they are, then recombined text up to the target, then the plants.
    pt: list[dict] = []
    sft: list[dict] = [{"instruction": r["instruction"], "input": r.get("input", ""), "output": r["output"]} for r in seeds]
    dpo: list[dict] = []
    seed_tokens = sum(len(r["instruction"]) + len(r["output"]) for r in seeds)
    target = max(int(1_500_000 * scale) - seed_tokens, int(300_000 * scale))  # recombined: at least a fifth
    count = 0
    while count < target:
        if zh and rng.random() < 0.55:
            text = paragraph(zh, 4, 12)
        else:
            text = paragraph(en, 3, 9)
        if rng.random() < 0.05 and zh:
            dpo.append({"prompt": rng.choice(zh), "chosen": text, "rejected": paragraph(zh, 1, 3)})
        else:
            pt.append({"text": text})
        count += len(tokens(text))
    for doc in planted_docs["exam_record"]:
        sft.append({"instruction": "\n".join(doc[:5]), "output": doc[1 + "ABCD".index(doc[5])]})
    for doc in planted_docs["exam_fullwidth"]:
        pt.append({"text": paragraph(zh, 2, 5) + doc[0].translate(SWAP_WIDTH) + paragraph(zh, 2, 5)})
    for doc in planted_docs["near_duplicate"]:
        pt.append({"text": one_char_changed("\n".join(doc[:5]))})
    for question in qa_leaks:
        sft.append({"instruction": "Tell me about the island.", "output": paragraph(en, 1, 3) + " " + shouted(question)
                    + " " + paragraph(en, 1, 3)})
    for prompt in prompt_leaks:
        dpo.append({"prompt": prompt, "chosen": paragraph(zh, 1, 3), "rejected": paragraph(zh, 1, 2)})
    rng.shuffle(pt)
    for doc in planted_docs["split"]:  # two consecutive records, placed anywhere
        at, cut = rng.randrange(len(pt) + 1), token_boundary(doc[0], len(doc[0]) // 2)
        pt[at:at] = [{"text": paragraph(zh, 2, 4) + doc[0][:cut]}, {"text": doc[0][cut:] + paragraph(zh, 2, 4)}]
    train = out / "train"
    for name, rows in (("pt.jsonl", pt), ("sft.jsonl", sft), ("dpo.jsonl", dpo)):
        write_jsonl(train / name, rows)

    # Evaluation files, and where each plant sits in them.
    truth: dict[str, str] = {}
    evals = out / "eval"
    exam = evals / "exam"
    (exam / "dev").mkdir(parents=True)
    (exam / "val").mkdir()
    (exam / "subject_mapping.json").write_text(json.dumps({"mixed": ["Mixed", "混合", "Other"]}), encoding="utf-8")
    header = ["id", "question", "A", "B", "C", "D", "answer"]
    write_csv(exam / "dev" / "mixed_dev.csv", [header] + [[str(i)] + d for i, d in enumerate(ceval_docs("dev")[:5])])
    write_csv(exam / "val" / "mixed_val.csv", [header] + [[str(i)] + d for i, d in enumerate(exam_docs)])
    for kind, rows in planted_rows.items():  # one CSV line per question (newlines were flattened), after the header
        truth.update({f"{exam / 'val' / 'mixed_val.csv'}:{i + 2}": kind for i in rows})
    write_jsonl(evals / "qa.jsonl", [{"question": q, "reference": "x"} for q in qa + zh_qa])
    truth.update({f"{evals / 'qa.jsonl'}:{qa.index(q) + 1}": "qa_case_space" for q in qa_leaks})
    write_jsonl(evals / "prompts.jsonl", [{"prompt": p} for p in prompts])
    truth.update({f"{evals / 'prompts.jsonl'}:{prompts.index(p) + 1}": "prompt_in_dpo" for p in prompt_leaks})
    lines = split_sentences((EXAMPLES / "heldout.txt").read_text(encoding="utf-8"))
    english = [r["text"] for r in pt if r["text"].isascii() and len(tokens(r["text"])) >= 30]
    copies = rng.sample(english, min(leaks, len(english)))
    for text in copies:
        lines.insert(rng.randrange(len(lines) + 1), text)
    (evals / "heldout.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    truth.update(heldout_truth(lines, set(copies), str(evals / "heldout.txt"), window_starts, tokens))
    return truth


def heldout_truth(lines: list[str], copies: set[str], file: str, window_starts, tokens, window: int = 100,
                  ngram: int = 13) -> dict[str, str]:
    """The held-out windows (by their first line) holding at least `ngram` tokens of a copied line."""
    owner, copied = [], []
    for number, line in enumerate(lines, 1):
        found = tokens(line)
        owner += [number] * len(found)
        copied += [line in copies] * len(found)
    truth = {}
    for start in window_starts(len(owner), window, ngram):
        spans: dict[int, int] = {}
        for i in range(start, min(start + window, len(owner))):
            if copied[i]:
                spans[owner[i]] = spans.get(owner[i], 0) + 1
        if any(n >= ngram for n in spans.values()):
            truth[f"{file}:{owner[start]}"] = "heldout_copy"
    return truth


def unique(items: list, key) -> list:
    seen: set = set()
    return [x for x in items if not (key(x) in seen or seen.add(key(x)))]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def write_csv(path: Path, rows: list[list[str]]) -> None:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")


# --- scoring ------------------------------------------------------------------------------------------

def genuine(keys: set[str], data: Path, ngram: int = 13, whole_min: int = 8, sentence_min: int = 4,
            jaccard: float = 0.8, shingle: int = 3) -> set[str]:
    """Those of `keys` (flagged, not planted) that truly overlap the training data, by plain Python
    brute force independent of the index: a shared run of `ngram` tokens, all of a short item (of fewer
    than `whole_min` tokens: as whole sentences), or a record with Jaccard >= `jaccard`. Such an item is
    an overlap the data happens to have (exam boilerplate), not a false positive."""
    from subjectlm.data.overlap_sources import eval_items, training_records
    from subjectlm.data.overlap_text import SENTENCE_END, SENTENCE_START, sentence_tokens

    items = [i for i in eval_items(eval_paths(data), 100, ngram) if i.where in keys and i.tokens]
    marked = [sentence_tokens(text) for _, text in training_records([data / "train"])]
    records = [words for words, _ in marked]
    stream = [t for r in records for t in r]
    marks = [m for _, ms in marked for m in ms]
    wanted: dict[tuple, set[str]] = {}
    sentences_only: set[str] = set()
    for item in items:
        n = len(item.tokens) if sentence_min <= len(item.tokens) < ngram else ngram
        if n < whole_min:
            sentences_only.add(item.where)
        for i in range(len(item.tokens) - n + 1):
            wanted.setdefault(tuple(item.tokens[i:i + n]), set()).add(item.where)
    found: set[str] = set()
    lengths = {len(g) for g in wanted}
    firsts = {g[0] for g in wanted}
    for i, token in enumerate(stream):
        if token in firsts:
            for n in lengths:
                for where in wanted.get(tuple(stream[i:i + n]), ()):
                    if where not in sentences_only or (marks[i] & SENTENCE_START and marks[i + n - 1] & SENTENCE_END):
                        found.add(where)

    def shingles(words: list[str]) -> set[tuple]:
        k = min(shingle, len(words))
        return {tuple(words[i:i + k]) for i in range(len(words) - k + 1)}

    item_sets = [(item.where, shingles(item.tokens)) for item in items]
    for record in records:
        if record:
            rs = shingles(record)
            for where, its in item_sets:
                if len(its & rs) >= jaccard * len(its | rs):
                    found.add(where)
    return found


def score(flagged: list[str], truth: dict[str, str], incidental: set[str] = frozenset()) -> dict:
    """Recall over the planted leaks (in all and per kind) and the flagged items that were neither planted
    nor `incidental` (true overlaps of the data that were not planted)."""
    found = set(flagged)
    per_kind = {kind: [0, 0] for kind in KINDS}
    for key, kind in truth.items():
        per_kind[kind][1] += 1
        per_kind[kind][0] += key in found
    hits = sum(found_n for found_n, _ in per_kind.values())
    return {"recall": hits / len(truth) if truth else 1.0, "per_kind": per_kind,
            "false_positives": sorted(found - set(truth) - incidental), "incidental": sorted(found & incidental)}


# --- the two sides (each in a child process) ----------------------------------------------------------

def eval_paths(data: Path) -> list[Path]:
    return [data / "eval" / "exam", data / "eval" / "qa.jsonl", data / "eval" / "prompts.jsonl",
            data / "eval" / "heldout.txt"]


def run_ours(data: Path) -> dict:
    from subjectlm.data.overlap import OverlapConfig, find_overlap

    report = find_overlap([data / "train"], eval_paths(data), OverlapConfig())
    return {"flagged": [f.item.where for f in report.flagged], "train_tokens": report.train_tokens,
            "train_records": report.train_records, "items": report.counts()["items"]}


def run_datasketch(data: Path) -> dict:
    from datasketch import MinHash, MinHashLSH

    from subjectlm.data.overlap_sources import eval_items, training_records
    from subjectlm.data.overlap_text import tokens

    def shingles(words: list[str], k: int = 3) -> list[bytes]:
        k = min(k, len(words))
        return list({" ".join(words[i:i + k]).encode() for i in range(len(words) - k + 1)})

    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    records = [shingles(tokens(text)) for _, text in training_records([data / "train"])]
    with lsh.insertion_session() as session:
        for key, minhash in enumerate(MinHash.generator((r for r in records if r), num_perm=128)):
            session.insert(key, minhash)
    items = [item for item in eval_items(eval_paths(data), 100, 13) if item.tokens]
    minhashes = MinHash.bulk([shingles(item.tokens) for item in items], num_perm=128)
    return {"flagged": [item.where for item, minhash in zip(items, minhashes) if lsh.query(minhash)]}


def child(side: str, data: Path, out: Path) -> None:
    import subjectlm.data.overlap  # noqa: F401  (imports before the clock starts, on both sides)
    if side == "datasketch":
        import datasketch  # noqa: F401
    start = time.perf_counter()
    result = (run_ours if side == "ours" else run_datasketch)(data)
    result["seconds"] = time.perf_counter() - start
    result["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.write_text(json.dumps(result), encoding="utf-8")


def run_side(side: str, data: Path) -> dict:
    out = data / f"{side}.json"
    subprocess.run([sys.executable, __file__, "--side", side, "--data", str(data), "--result", str(out)], check=True)
    return json.loads(out.read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="training tokens = 1.5M x scale (default 1)")
    parser.add_argument("--leaks", type=int, default=20, help="planted leaks of each kind")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--side", choices=["ours", "datasketch"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO / "src"))
    if args.side:
        child(args.side, Path(args.data), Path(args.result))
        return 0
    if not (SHARED / "seed_data").is_dir() or not (SHARED / "ceval-exam").is_dir():
        print(f"needs {SHARED}/seed_data and {SHARED}/ceval-exam (the Chinese text and exam)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="overlap-bench-") as tmp:
        data = Path(tmp)
        truth = build(data, args.scale, args.leaks, args.seed)
        sides = {"ours": run_side("ours", data), "datasketch": run_side("datasketch", data)}
        ours = sides["ours"]
        print(f"training data: {ours['train_records']} records, {ours['train_tokens']} tokens; evaluation items: "
              f"{ours['items']}; planted leaks: {len(truth)}")
        unplanted = {key for side in sides.values() for key in side["flagged"]} - set(truth)
        from subjectlm.data.overlap import OverlapConfig
        defaults = OverlapConfig()  # what run_ours flags with
        incidental = genuine(unplanted, data, defaults.ngram, defaults.whole_min, defaults.sentence_min) \
            if unplanted else set()
        scores = {name: score(side["flagged"], truth, incidental) for name, side in sides.items()}
        print(f"{'side':<11} {'seconds':>8} {'peak RSS MB':>12} {'recall':>7} {'false pos.':>10} {'incidental':>10}")
        for name, side in sides.items():
            s = scores[name]
            print(f"{name:<11} {side['seconds']:>8.2f} {side['rss_mb']:>12.0f} {s['recall']:>7.3f} "
                  f"{len(s['false_positives']):>10} {len(s['incidental']):>10}")
        print("incidental: flagged, not planted, and a true overlap by brute force (exam boilerplate such as "
              "填入画横线部分最恰当的一项是 shared by many questions)")
        print("recall per kind (found/planted):  ours | datasketch")
        for kind in KINDS:
            a, b = scores["ours"]["per_kind"][kind], scores["datasketch"]["per_kind"][kind]
            print(f"  {kind:<15} {a[0]:>3}/{a[1]:<3} | {b[0]:>3}/{b[1]:<3}")
        for name in sides:
            for key in scores[name]["false_positives"][:5]:
                print(f"false positive ({name}): {key}")
            missed = [key for key in truth if key not in set(sides[name]["flagged"])]
            for key in missed[:3] if name == "ours" else []:
                print(f"missed ({name}): {truth[key]} {key}")
        speedup = sides["datasketch"]["seconds"] / sides["ours"]["seconds"]
        print(f"overlap_speedup_vs_datasketch={speedup:.2f} recall={scores['ours']['recall']:.3f} "
              f"false_positives={len(scores['ours']['false_positives'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
