"""`subjectlm run RECIPE --dry-run` on hand-made recipes (tests/data/recipes/): each finding's exact
`recipe.yaml:LINE` and the exit status (0 ok, 1 findings, 2 no recipe); the plan's run/skip column."""

from __future__ import annotations

from pathlib import Path

import pytest

from subjectlm.cli import main

RECIPES = Path(__file__).parent / "data" / "recipes"


def _dry_run(capsys, path: Path) -> tuple[int, list[str], list[str]]:
    code = main(["run", str(path), "--dry-run"])
    out = capsys.readouterr().out.splitlines()
    return code, [line for line in out if line.startswith(("error: ", "warning: "))], out


@pytest.mark.parametrize("name,finding", [
    ("tab.yaml", "error: {}:5: YAML: indented with a tab character; YAML indents with spaces only"),
    ("yaml_error.yaml", "error: {}:5: YAML: column 14: not valid YAML: expected ',' or ']', but got ':' "
                        "(while parsing a flow sequence)"),
    ("unknown_stage.yaml", "error: {}:5: stages[1]: stage: unknown stage 'pretrain'; "
                           "known: synth, pt, sft, dpo, merge, eval, export, arena"),
    ("unknown_key.yaml", "error: {}:5: stage pt: lora_rnak: unknown key for PTConfig; did you mean 'lora_rank'?"),
    ("bad_value.yaml", "error: {}:5: stage pt: max_steps: invalid literal for int() with base 10: 'many'"),
])
def test_recipe_errors_name_their_line(capsys, name, finding):
    path = RECIPES / name
    code, findings, _ = _dry_run(capsys, path)
    assert (code, findings) == (1, [finding.format(path)])


def test_paths_missing_outside_and_bad_data(capsys):
    path = RECIPES / "paths.yaml"
    code, findings, _ = _dry_run(capsys, path)
    assert code == 1
    assert findings == [
        f"error: {RECIPES.parent / 'mixed.jsonl'}:2: record: sharegpt record in a file whose first record (line 1) "
        "is alpaca: keep one format per file",  # the sft stage's data, checked as `data check` would
        f"error: {path}:4: stage pt: data: data/no_such_corpus.txt does not exist ({RECIPES / 'data' / 'no_such_corpus.txt'})",
        f"warning: {path}:6: stage sft: data: ../mixed.jsonl is outside the recipe's folder ({RECIPES}); "
        "the recipe breaks when its folder is copied or moved",
    ]


def test_good_recipe_prints_the_plan(capsys):
    code, findings, out = _dry_run(capsys, RECIPES / "good.yaml")
    assert (code, findings, out[-1]) == (0, [], "OK")
    assert [line.split()[:4] for line in out if line[:4].strip().rstrip(".").isdigit()] == [
        ["1.", "pt", "pt", "run"], ["2.", "sft", "sft", "run"]]
    assert "run (upstream pt runs)" in out[out.index(next(line for line in out if line.startswith("  2.")))]


def test_a_model_path_must_be_a_model(capsys, tmp_path):
    (tmp_path / "weights").mkdir()
    path = tmp_path / "r.yaml"
    path.write_text("model: weights\nstages:\n  - stage: merge\n    base: weights\n    lora: [weights]\n")
    code, findings, _ = _dry_run(capsys, path)
    assert (code, findings) == (1, [f"error: {path}:1: recipe: model: weights is not a model directory (no config.json)",
                                    f"error: {path}:4: stage merge: base: weights is not a model directory (no config.json)"])


def test_missing_recipe_is_a_usage_error(capsys, tmp_path):
    assert main(["run", str(tmp_path / "nope.yaml"), "--dry-run"]) == 2
    assert capsys.readouterr().err.strip() == f"error: config file {tmp_path / 'nope.yaml'} does not exist"


def test_tab_inside_a_block_scalar_is_text(tmp_path, capsys):
    (tmp_path / "c.txt").write_text("Basalt cliffs.\n")
    path = tmp_path / "r.yaml"
    path.write_text("stages:\n  - stage: sft\n    data: s.jsonl\n    system_prompt: |\n      Answer:\n      \tbriefly\n")
    (tmp_path / "s.jsonl").write_text('{"instruction": "q", "output": "a"}\n')
    code, findings, _ = _dry_run(capsys, path)
    assert (code, findings) == (0, [])


def test_demo_recipe_checks_clean(capsys):
    code, findings, out = _dry_run(capsys, Path(__file__).resolve().parents[1] / "examples" / "demo.yaml")
    assert (code, findings) == (0, [])
    assert [line.split()[1] for line in out if line.startswith("  ") and line[2:4].rstrip(".").isdigit()] == [
        "pt", "sft", "dpo", "merge", "eval", "export", "arena"]


def test_dry_run_loads_no_torch():
    """Every stage's config module is light: checking the demo recipe imports neither torch nor transformers."""
    import subprocess
    import sys

    script = ("import sys\nfrom subjectlm.cli import main\ncode = main(['run', 'examples/demo.yaml', '--dry-run'])\n"
              "heavy = sorted(m for m in ('torch', 'transformers', 'peft', 'trl') if m in sys.modules)\n"
              "print('heavy:', heavy)\nsys.exit(code)\n")
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", script], cwd=repo, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "heavy: []"
