"""The pipeline (subjectlm/pipeline/): one plan for `run --dry-run` and `run`, named outputs between
stages, the stage kind in pipeline_state.json, path roles declared on config fields, ConfigError.key.

Stand-in stage kinds (registered in the stage table as a new kind would be) write small files, so the
plumbing runs in milliseconds; test_recipe_run.py runs the real stages on tiny models."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from subjectlm.cli import main
from subjectlm.config import (
    ARTIFACT,
    DATA_FILES,
    MODEL,
    OUTPUT,
    TEXT_DATA,
    TRAINING_DATA,
    ConfigError,
    build_config,
    option,
    path_roles,
)
from subjectlm.pipeline import plan_checks
from subjectlm.pipeline.execute import run_recipe
from subjectlm.pipeline.plan import plan
from subjectlm.pipeline.result import Dataset, StageResult
from subjectlm.pipeline.stages import STAGE_KINDS, StageKind, model_output, trained_outputs
from subjectlm.report.collect import load_stages


@dataclasses.dataclass
class TrainStandIn:
    model: str = option("default", path=MODEL)
    data: list[Any] = option([], path=TRAINING_DATA)
    output_dir: str = option("", path=OUTPUT)
    peft_path: str | None = option(None, path=ARTIFACT)


@dataclasses.dataclass
class MergeStandIn:
    base: str = option("", path=MODEL)
    lora: list[str] = option([], path=ARTIFACT)
    output_dir: str = option("", path=OUTPUT)


@dataclasses.dataclass
class EvalStandIn:
    model: str = option("default", path=MODEL)
    data: str = option("", path=DATA_FILES)
    train_data: list[str] = option([], path=TEXT_DATA)
    output_dir: str = option("", path=OUTPUT)


@dataclasses.dataclass
class SynthStandIn:
    documents: str = option("", path=DATA_FILES)
    output_dir: str = option("", path=OUTPUT)


def synth_outputs(config: SynthStandIn) -> StageResult:
    out = Path(config.output_dir)
    return StageResult(datasets={"pt": Dataset(out / "pt.txt", "pt"), "sft": Dataset(out / "sft.jsonl", "sft")})


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def stand_ins(calls: list[tuple[str, Any]]) -> dict[str, StageKind]:
    """Stand-in kinds: each records its config and writes its output folder as the real one would."""

    def train(config):
        calls.append(("train", config))
        _write(Path(config.output_dir) / "adapter.txt", f"trained on {config.data} from {config.peft_path}")
        return {"adapter": config.output_dir, "summary": f"trained on {len(config.data)} source(s)"}

    def merge(config):
        calls.append(("merge", config))
        _write(Path(config.output_dir) / "config.json", "{}")
        return {"model": config.output_dir, "summary": "merged"}

    def evaluate(config):
        calls.append(("eval", config))
        _write(Path(config.output_dir) / "summary.json", "{}")
        return {"summary": f"examined {config.model}"}

    def synth(config):  # returns a StageResult, as a new stage kind does
        calls.append(("synth", config))
        result = synth_outputs(config)
        _write(result.datasets["pt"].path, "Basalt cliffs.\n")
        _write(result.datasets["sft"].path, json.dumps({"instruction": "Cliffs?", "output": "Basalt."}) + "\n")
        return dataclasses.replace(result, summary="2 data sets")

    continues = {"model": "model", "peft_path": "adapter"}
    return {"pt": StageKind(TrainStandIn, train, {"model": "model"}, trained_outputs),
            "sft": StageKind(TrainStandIn, train, continues, trained_outputs),
            "merge": StageKind(MergeStandIn, merge, {"base": "model", "lora": "adapter_list"}, model_output),
            "eval": StageKind(EvalStandIn, evaluate, {"model": "model", "train_data": "training_data"}),
            "synth": StageKind(SynthStandIn, synth, outputs=synth_outputs)}


@pytest.fixture()
def calls(monkeypatch) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    for kind, entry in stand_ins(found).items():
        monkeypatch.setitem(STAGE_KINDS, kind, entry)
    return found


def _quiet(path: Path, **kw) -> dict[str, str]:
    return {o.name: o.status for o in run_recipe(path, log=lambda *_: None, **kw)}


# ---- one plan: the dry run and the run agree ---------------------------------------------------

FOUR_STAGES = """\
output_dir: out
stages:
  - {stage: pt, data: [data/corpus.txt]}
  - {stage: sft, data: [data/sft.jsonl]}
  - {stage: merge}
  - {stage: eval, data: exam}
  - {stage: eval, name: control, model: default, data: control}
"""


@pytest.mark.parametrize("changed,reruns", [
    # sft continues pt's adapter, and so on down; control reads the training data (`train_data`) too
    ("data/corpus.txt", {"pt", "sft", "merge", "eval", "control"}),
    ("data/sft.jsonl", {"sft", "merge", "eval", "control"}),
    ("exam/val.csv", {"eval"}),
    ("control/val.csv", {"control"}),
])
def test_dry_run_and_run_rerun_the_same_stages(tmp_path, calls, capsys, changed, reruns):
    for name in ("data/corpus.txt", "data/sft.jsonl", "exam/val.csv", "control/val.csv"):
        _write(tmp_path / name, f"{name}\n")
    path = tmp_path / "r.yaml"
    path.write_text(FOUR_STAGES)
    assert set(_quiet(path).values()) == {"done"}
    assert {s.name for s in plan(path).steps if s.runs} == set()  # unchanged: nothing would run

    with open(tmp_path / changed, "a") as handle:
        handle.write("one more line\n")
    assert main(["run", str(path), "--dry-run"]) == 0
    printed = {line.split()[1] for line in capsys.readouterr().out.splitlines()
               if line[:4].strip().rstrip(".").isdigit() and " run (" in line}
    statuses = _quiet(path)
    assert printed == {name for name, status in statuses.items() if status == "done"} == reruns
    assert {s.name for s in plan(path).steps if s.runs} == set()  # and after the run, nothing again


# ---- named outputs between stages ----------------------------------------------------------------

SYNTH = """\
output_dir: out
stages:
  - stage: synth
    documents: docs
  - stage: pt
    data: {from: synth, output: pt}
  - stage: sft
    data: [{from: synth, output: sft}, {path: extra.jsonl, weight: 0.2}]
  - stage: eval
    data: exam
"""


def test_a_stage_reads_an_earlier_stages_named_data_set(tmp_path, calls, capsys):
    _write(tmp_path / "docs" / "a.md", "Kestrel Island.\n")
    _write(tmp_path / "extra.jsonl", json.dumps({"instruction": "q", "output": "a"}) + "\n")
    _write(tmp_path / "exam" / "val.csv", "x\n")
    path = tmp_path / "r.yaml"
    path.write_text(SYNTH)
    synth = tmp_path / "out" / "synth"

    assert main(["run", str(path), "--dry-run"]) == 0  # the data sets do not exist yet: the plan knows their paths
    out = capsys.readouterr().out
    assert f"       data            {synth / 'sft.jsonl'}, {tmp_path / 'extra.jsonl'} (weight 0.2)" in out
    assert "run (upstream synth runs)" in out

    assert _quiet(path) == {"synth": "done", "pt": "done", "sft": "done", "eval": "done"}
    configs = {kind: config for kind, config in calls if kind != "train"} | {
        f"train{i}": config for i, (kind, config) in enumerate((c for c in calls if c[0] == "train"))}
    assert configs["train0"].data == [str(synth / "pt.txt")]
    assert configs["train1"].data == [str(synth / "sft.jsonl"), {"path": str(tmp_path / "extra.jsonl"), "weight": 0.2}]
    assert configs["train1"].peft_path == str(tmp_path / "out" / "pt")
    # the eval stage gets every path trained on so far (pipeline state `training_data`)
    assert configs["eval"].train_data == [str(synth / "pt.txt"), str(synth / "sft.jsonl"), str(tmp_path / "extra.jsonl")]
    state = json.loads((tmp_path / "out" / "pipeline_state.json").read_text())
    assert state["synth"]["result"]["datasets"] == {"pt": {"path": str(synth / "pt.txt"), "kind": "pt"},
                                                    "sft": {"path": str(synth / "sft.jsonl"), "kind": "sft"}}
    # a new synth document re-runs synth and, through its data sets, everything that reads them
    _write(tmp_path / "docs" / "b.md", "More.\n")
    assert [s.name for s in plan(path).steps if s.runs] == ["synth", "pt", "sft", "eval"]


@pytest.mark.parametrize("reference,line,message", [
    ("{from: synht, output: pt}", 6, "data: from: no stage named 'synht' in the recipe; earlier stages: synth"),
    ("{from: synth, output: dpo}", 6, "data: output: stage 'synth' has no output 'dpo'; it hands on: pt, sft"),
    ("{from: synth}", 6, "data: output: required with `from: synth` (model, adapter or one of its data sets)"),
    ("{from: eval, output: model}", 6, "data: from: stage 'eval' comes after this one; only an earlier stage's "
                                       "outputs can be read"),
    ("[extra.jsonl, {from: synth, output: exam}]", 6,
     "data: output: stage 'synth' has no output 'exam'; it hands on: pt, sft"),
])
def test_a_bad_reference_is_a_dry_run_error_at_its_line(tmp_path, calls, capsys, reference, line, message):
    _write(tmp_path / "docs" / "a.md", "Kestrel Island.\n")
    _write(tmp_path / "extra.jsonl", "{}\n")
    _write(tmp_path / "exam" / "val.csv", "x\n")
    path = tmp_path / "r.yaml"
    path.write_text(SYNTH.replace("{from: synth, output: pt}", reference))
    assert main(["run", str(path), "--dry-run"]) == 1
    findings = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(("error:", "warning:"))]
    assert findings == [f"error: {path}:{line}: stage pt: {message}"]
    with pytest.raises(ConfigError, match="no stage was run"):
        _quiet(path)
    assert calls == []


def test_a_reference_to_a_model_reaches_the_real_stage_configs(tmp_path, capsys):
    """The real pt and merge kinds (dry run only: no torch): merge's `base` from pt's full model."""
    _write(tmp_path / "corpus.txt", "Basalt cliffs.\n\nBlack sand.\n")
    path = tmp_path / "r.yaml"
    path.write_text("output_dir: out\nstages:\n  - {stage: pt, data: corpus.txt, full_finetuning: true}\n"
                    "  - {stage: merge, base: {from: pt, output: model}, lora: [{from: pt, output: adapter}]}\n")
    assert main(["run", str(path), "--dry-run"]) == 1
    findings = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("error:")]
    assert findings == [f"error: {path}:4: stage merge: lora: output: stage 'pt' has no output 'adapter'; "
                        "it hands on: model"]
    path.write_text(path.read_text().replace(", lora: [{from: pt, output: adapter}]", ""))
    steps = plan(path).steps
    assert steps[1].values["base"] == str(tmp_path / "out" / "pt")


def test_weighted_sources_are_resolved_checked_and_fingerprinted(tmp_path, capsys):
    """The real pt kind (dry run only): `{path:, weight:}` and `PATH@W` items are paths like any other."""
    _write(tmp_path / "data" / "corpus.txt", "Basalt cliffs.\n\nBlack sand.\n")
    path = tmp_path / "r.yaml"
    path.write_text("output_dir: out\nstages:\n  - stage: pt\n"
                    "    data: [data/corpus.txt, {path: data/general.txt, weight: 0.2}, data/more.txt@0.1]\n")
    assert main(["run", str(path), "--dry-run"]) == 1
    findings = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("error:")]
    assert findings == [f"error: {path}:4: stage pt: data: data/general.txt does not exist ({tmp_path / 'data' / 'general.txt'})",
                        f"error: {path}:4: stage pt: data: data/more.txt does not exist ({tmp_path / 'data' / 'more.txt'})"]
    _write(tmp_path / "data" / "general.txt", "The sky is blue.\n")
    _write(tmp_path / "data" / "more.txt", "Water is wet.\n")
    (step,) = plan(path).steps
    assert step.values["data"] == [str(tmp_path / "data" / "corpus.txt"),
                                   {"path": str(tmp_path / "data" / "general.txt"), "weight": 0.2},
                                   str(tmp_path / "data" / "more.txt") + "@0.1"]
    assert step.trained_on == [str(tmp_path / "data" / n) for n in ("corpus.txt", "general.txt", "more.txt")]
    from subjectlm.pipeline.freshness import input_fingerprints

    roles = path_roles(STAGE_KINDS["pt"].config_class())
    before = input_fingerprints(step.values, roles)["data"]
    _write(tmp_path / "data" / "general.txt", "The sky is green.\n")
    after = input_fingerprints(step.values, roles)["data"]
    assert [a == b for a, b in zip(before, after)] == [True, False, True]


# ---- the stage kind in pipeline_state.json, read by the report ----------------------------------

def test_the_stage_kind_is_recorded_and_the_report_reads_it(tmp_path, calls):
    _write(tmp_path / "docs" / "a.md", "Kestrel Island.\n")
    _write(tmp_path / "exam" / "val.csv", "x\n")
    path = tmp_path / "r.yaml"
    path.write_text("output_dir: out\nstages:\n  - {stage: synth, documents: docs}\n"
                    "  - {stage: sft, name: sft-round-2, data: {from: synth, output: sft}}\n"
                    "  - {stage: merge, name: merged}\n  - {stage: eval, name: exam-check, data: exam}\n")
    _quiet(path)
    state = json.loads((tmp_path / "out" / "pipeline_state.json").read_text())
    assert {name: entry["kind"] for name, entry in state.items()} == {
        "synth": "synth", "sft-round-2": "sft", "merged": "merge", "exam-check": "eval"}
    # the stand-ins' configs have none of the fields the report used to guess kinds from
    assert [(s.name, s.kind) for s in load_stages(tmp_path / "out")] == [
        ("synth", "synth"), ("sft-round-2", "train"), ("merged", "merge"), ("exam-check", "eval")]


def test_a_state_file_without_kinds_is_still_read(tmp_path):
    entry = {"hash": "x", "result": {"summary": "s"}, "config": {"learning_rate": 1e-3, "output_dir": ""}}
    (tmp_path / "pipeline_state.json").write_text(json.dumps({"pt": entry, "odd": {**entry, "config": {}}}))
    assert [(s.name, s.kind) for s in load_stages(tmp_path)] == [("pt", "train"), ("odd", "other")]


# ---- checks across the whole plan -----------------------------------------------------------------

def test_a_check_across_the_plan_prints_its_lines_and_can_refuse_the_run(tmp_path, calls, capsys, monkeypatch):
    from subjectlm.data.errors import Problem

    def count_training_data(whole):
        data = [p for s in whole.steps for p in s.trained_on]
        found = [Problem(str(whole.path), None, "plan", "no training data", warning=False)] if not data else []
        return [f"training data: {len(data)} path(s)"], found

    monkeypatch.setattr(plan_checks, "PLAN_CHECKS", [count_training_data])
    _write(tmp_path / "corpus.txt", "x\n")
    path = tmp_path / "r.yaml"
    path.write_text("output_dir: out\nstages:\n  - {stage: pt, data: [corpus.txt]}\n")
    assert main(["run", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[out.index("  across the plan:") + 1] == "    training data: 1 path(s)"
    path.write_text("output_dir: out\nstages:\n  - {stage: merge}\n")
    with pytest.raises(ConfigError, match=f"^{path}: plan: no training data \\(found by the recipe check"):
        _quiet(path)


# ---- path roles, StageResult, ConfigError.key ------------------------------------------------------

def test_every_path_field_of_the_real_stages_declares_its_role():
    """What the global key sets (recipe.PATH_KEYS, recipe_freshness) said, now said by each field."""
    def roles(kind: str) -> dict[str, str]:
        named = {id(r): n for n, r in (("model", MODEL), ("training", TRAINING_DATA), ("text", TEXT_DATA),
                                       ("files", DATA_FILES), ("artifact", ARTIFACT), ("output", OUTPUT))}
        config_cls = STAGE_KINDS[kind].config_class()
        fields = {f.name for f in dataclasses.fields(config_cls)}
        return {k: named[id(r)] for k, r in path_roles(config_cls).items() if k in fields}

    assert roles("pt") == roles("sft") == roles("dpo") == {
        "model": "model", "data": "training", "validation_file": "text", "output_dir": "output",
        "tokenizer": "artifact", "peft_path": "artifact"}
    assert roles("merge") == {"base": "model", "lora": "artifact", "output_dir": "output"}
    assert {k: v for k, v in roles("eval").items() if k in ("model", "base_model", "data", "ppl_data", "qa_data",
                                                               "output_dir")} == {
        "model": "model", "base_model": "model", "data": "files", "ppl_data": "text", "qa_data": "files",
        "output_dir": "output"}
    assert {k: v for k, v in roles("export").items() if k != "ppl_data"} == {
        "model": "model", "output": "output", "output_dir": "output"}
    assert roles("arena") == {"model": "model", "base_model": "model", "prompts": "files", "output_dir": "output"}
    assert path_roles(STAGE_KINDS["pt"].config_class())["dataset_dir"] is TRAINING_DATA  # flag aliases too


def test_stage_result_round_trips_and_reads_the_legacy_dict(tmp_path):
    result = StageResult("s", model=tmp_path / "m", datasets={"qa": Dataset(tmp_path / "qa.jsonl", "qa")},
                         extra={"exam": {"n": 3}})
    assert result.to_json() == {"exam": {"n": 3}, "summary": "s", "model": str(tmp_path / "m"),
                                "datasets": {"qa": {"path": str(tmp_path / "qa.jsonl"), "kind": "qa"}}}
    assert StageResult.from_json(result.to_json()) == result
    legacy = StageResult.of({"adapter": tmp_path / "a", "summary": "trained", "steps": 2})
    assert (legacy.adapter, legacy.summary, legacy.extra, legacy.outputs()) == (
        tmp_path / "a", "trained", {"steps": 2}, {"adapter": tmp_path / "a"})
    with pytest.raises(ValueError, match="Dataset kind 'csv'"):
        Dataset(tmp_path, "csv")


@dataclasses.dataclass
class Checked:
    name: str = option()
    steps: int = option(1, min=1)
    mode: str = option("a", choices=("a", "b"))

    def __post_init__(self):
        if self.name == "x" and self.mode == "b":
            raise ConfigError("mode: b cannot be used with name x")


@pytest.mark.parametrize("values,key", [
    ({"name": "n", "stepz": 2}, "stepz"),
    ({"name": "n", "steps": "many"}, "steps"),
    ({"name": "n", "steps": 0}, "steps"),
    ({"name": "n", "mode": "c"}, "mode"),
    ({"steps": 2}, "name"),                  # required
    ({"name": "x", "mode": "b"}, "mode"),    # raised by __post_init__ as `key: problem`
])
def test_config_error_carries_its_key(values, key):
    with pytest.raises(ConfigError) as caught:
        build_config(Checked, values, source="c.yaml")
    assert caught.value.key == key


def test_config_error_key_of_an_item_is_its_field():
    assert ConfigError("data[1].weight: must be in (0, 1), got 2").key == "data"
    assert ConfigError("no key here").key is None
    assert ConfigError("free text: with a colon", key="steps").key == "steps"
