"""ModelSpec: the model fields declared once, flat flags unchanged, one open_backend(spec)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import subjectlm.backends.spec as S
from subjectlm.arena.config import GenerateConfig, JudgeConfig
from subjectlm.arena.recipe_stage import ArenaStageConfig
from subjectlm.backends import ModelSpec, open_backend
from subjectlm.cli import build_parser
from subjectlm.config import config_from, config_from_args
from subjectlm.serve.chat import ChatConfig
from subjectlm.serve.server import ServeConfig


def _parsed(cls, argv):
    return config_from_args(cls, build_parser().parse_args(argv))


@pytest.mark.parametrize(("cls", "argv", "spec"), [
    (ChatConfig, ["chat", "--model_name_or_path", "m", "--dtype", "bf16", "--device", "cpu", "--n_ctx", "512",
                  "--trust_remote_code"],
     ModelSpec("m", "auto", "bf16", "cpu", 8, 512, True)),
    (ServeConfig, ["serve", "--model", "m.gguf", "--backend", "llamacpp", "--n_ctx", "2048", "--parallel", "2"],
     ModelSpec("m.gguf", "llamacpp", None, None, 8, 2048, False)),
    (GenerateConfig, ["eval", "arena", "generate", "--output_dir", "o", "--models", "a=x", "--batch_size", "3",
                      "--dtype", "fp16", "--device", "cuda:1"],
     ModelSpec("x", "auto", "fp16", "cuda:1", 3, 4096, False)),
    (JudgeConfig, ["eval", "arena", "judge", "--output_dir", "o", "--judge", "model:x", "--dtype", "bf16",
                   "--trust_remote_code", "true"],
     ModelSpec("x", "auto", "bf16", None, 8, 4096, True)),
])
def test_the_flags_users_know_make_the_spec(cls, argv, spec):
    config = _parsed(cls, argv)
    changes = {} if hasattr(config, "model") else {"model": "x"}  # the arena's models are named elsewhere
    assert config.model_spec(**changes) == spec


def test_defaults_stay_each_commands_own():
    """serve and chat leave the dtype to the device (None); the arena keeps the checkpoint's (`auto`)."""
    assert ChatConfig().model_spec() == ModelSpec("default")
    assert ServeConfig().model_spec() == ModelSpec("default")
    assert GenerateConfig(output_dir="o", models=["a=x"]).model_spec(model="x") == ModelSpec("x", dtype="auto")
    assert JudgeConfig(output_dir="o").model_spec(model="j") == ModelSpec("j", dtype="auto")


def test_a_flag_is_described_once():
    """Every config's model fields come from backends/spec.py: the same help wherever a field means the same."""
    judge = {"dtype": "local judge: weights dtype", "device": "local judge device (default: cuda when available)",
             "trust_remote_code": "run a local judge model's own Python code"}
    shared = {"model": S.MODEL_HELP, "backend": S.BACKEND_HELP, "device": S.DEVICE_HELP, "n_ctx": S.N_CTX_HELP,
              "trust_remote_code": S.TRUST_HELP}
    from subjectlm.eval.exam.runner import ExamConfig
    from subjectlm.eval.ppl import PPLConfig
    from subjectlm.eval.qa.runner import QAConfig

    for cls in (ChatConfig, ServeConfig, GenerateConfig, JudgeConfig, ExamConfig, QAConfig, PPLConfig):
        for f in dataclasses.fields(cls):
            expected = judge.get(f.name) if cls is JudgeConfig else shared.get(f.name)
            if f.name in shared:
                assert f.metadata["help"] == expected, (cls.__name__, f.name)
    assert [f.default for f in dataclasses.fields(ServeConfig) if f.name == "dtype"] == [None]
    assert "default: the checkpoint's own on a GPU, fp32 on the CPU" in S.DEFAULT_DTYPE_HELP


def test_spec_takes_a_path_and_is_frozen():
    spec = ModelSpec(Path("models/x"), batch_size=2)
    assert spec.model == "models/x" and isinstance(spec.model, str)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.dtype = "bf16"


def test_default_dtype_is_the_checkpoints_on_a_gpu_fp32_on_the_cpu():
    from subjectlm.backends.device import default_dtype

    assert [default_dtype(d) for d in ("cuda", "cuda:1", "cpu", "cpu:0")] == ["auto", "auto", "fp32", "fp32"]


def test_open_backend_takes_the_spec_and_one_backends_keywords(tiny_llama_dir):
    import torch

    backend = open_backend(ModelSpec(tiny_llama_dir, "hf", dtype="bf16", device="cpu", batch_size=3), parallel=2)
    try:
        assert (backend.name, backend.batch_size, backend.parallel, str(backend.device)) == ("hf", 3, 2, "cpu")
        assert {p.dtype for p in backend.model.parameters()} == {torch.bfloat16}
    finally:
        backend.close()


def test_a_stage_builds_its_commands_config_from_its_own():
    """The arena stage's generate config is GenerateConfig from the stage's fields (its `model` is not one);
    the judge gets the stage's model fields alone (its `models` and `max_new_tokens` mean other things)."""
    stage = ArenaStageConfig(prompts="p.jsonl", output_dir="o", base_model="b", dtype="bf16", device="cpu",
                             batch_size=2, trust_remote_code=True, temperature=0.3)
    generate = config_from(GenerateConfig, stage, output_dir="tmp", models=["base=b", "tuned=default"])
    assert type(generate) is GenerateConfig
    assert (generate.output_dir, generate.models, generate.temperature) == ("tmp", ["base=b", "tuned=default"], 0.3)
    assert generate.model_spec(model="b") == ModelSpec("b", dtype="bf16", device="cpu", batch_size=2,
                                                       trust_remote_code=True)
    assert S.model_options(stage, JudgeConfig) == {"dtype": "bf16", "device": "cpu", "trust_remote_code": True}
    with pytest.raises(Exception, match="models"):
        config_from(GenerateConfig, stage, models=[])  # built configs are checked as any config is


def test_eval_commands_make_the_spec_from_their_flags():
    from subjectlm.eval.exam.runner import ExamConfig
    from subjectlm.eval.ppl import PPLConfig
    from subjectlm.eval.qa.runner import QAConfig

    exam = _parsed(ExamConfig, ["eval", "exam", "--model_path", "m", "--data", "exam", "--batch_size", "4",
                                "--device", "cpu", "--trust_remote_code"])
    assert exam.model_spec() == ModelSpec("m", "auto", "auto", "cpu", 4, 4096, True)
    qa = _parsed(QAConfig, ["eval", "qa", "--model_name_or_path", "m.gguf", "--data", "qa.jsonl", "--n_ctx", "1024",
                            "--dtype", "bf16"])
    assert qa.model_spec() == ModelSpec("m.gguf", "auto", "bf16", None, 8, 1024, False)
    ppl = _parsed(PPLConfig, ["eval", "ppl", "--model", "m", "--data", "a.txt", "--backend", "hf"])
    assert ppl.model_spec() == ModelSpec("m", "hf", "auto")


def test_the_eval_stage_passes_its_model_fields_to_qa_and_ppl():
    """What the eval stage opens for QA and perplexity opens like its exam: dtype, device, backend, trust_remote_code
    (and the batch size, for QA, which has one)."""
    from subjectlm.eval.ppl import PPLConfig
    from subjectlm.eval.qa.runner import QAConfig
    from subjectlm.eval.recipe_stage import EvalStageConfig, exam_config

    stage = EvalStageConfig(model="tuned", data="exam", dtype="bf16", device="cpu", batch_size=2,
                            trust_remote_code=True, backend="hf", shots=1)
    spec = stage.model_spec(model="base")
    assert S.model_options(spec, PPLConfig) == {"model": "base", "backend": "hf", "dtype": "bf16", "device": "cpu",
                                                "trust_remote_code": True}
    assert S.model_options(spec, QAConfig) == {"model": "base", "backend": "hf", "dtype": "bf16", "device": "cpu",
                                               "batch_size": 2, "n_ctx": 4096, "trust_remote_code": True}
    exam = exam_config(stage, "base", Path("out"), subjects=["logic"])
    assert type(exam).__name__ == "ExamConfig" and exam.model_spec() == spec
    assert (exam.output_dir, exam.subjects, exam.shots, exam.scoring, exam.overwrite) == ("out", ["logic"], 1, "both",
                                                                                          True)
