"""Export as a stage: configs for `subjectlm export gguf|verify|ollama` and the recipe stage.

`export_all` is the whole job (convert, quantize, optionally verify and answer one
question through llama.cpp); the CLI and the recipe stage both call it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from subjectlm.config import MODEL, OUTPUT, TEXT_DATA, ConfigError, check_options, option, same_option
from subjectlm.export.convert import CONVERTERS
from subjectlm.export.gguf import OUTTYPES

_CONVERTER_HELP = ("auto uses subjectlm's converter for the families in its table and llama.cpp's own "
                   "convert_hf_to_gguf.py (fetched once with pip) for the rest")


@dataclasses.dataclass
class GGUFConfig:
    model: str = option("default", help="model directory or `default`", aliases=("--model_name_or_path",), path=MODEL)
    output: str = option("model.gguf", help="GGUF file to write (quantized files go beside it as NAME-TYPE.gguf)",
                         aliases=("--outfile",), path=OUTPUT)
    outtype: str = option("f16", help="GGUF type of the export", choices=OUTTYPES)
    quantize: list[str] = option([], help="llama.cpp types to quantize to as well, e.g. q4_k_m,q8_0")
    verify: bool = option(False, help="compare every written GGUF with the HF model and print the table")
    pre_tokenizer: str | None = option(None, help="llama.cpp pre-tokenizer name, when it cannot be detected")
    overwrite: bool = option(False, help="replace existing output files")
    trust_remote_code: bool = option(False, help="allow custom tokenizer code from the model directory")
    converter: str = option("auto", help=_CONVERTER_HELP, choices=CONVERTERS)

    def __post_init__(self):
        check_options(self)
        if self.quantize and self.outtype == "q8_0":
            raise ConfigError("quantize: quantize from an f16, bf16 or f32 export, not from outtype q8_0")
        if not self.output.endswith(".gguf"):
            raise ConfigError(f"output: {self.output!r} should end in .gguf")


@dataclasses.dataclass
class VerifyConfig:
    model: str = option("default", help="the HF model the GGUF was exported from")
    gguf: list[str] = option([], help="one or more GGUF files to compare with it")
    data: str | None = option(None, help="text file to score (default: a held-out sample shipped with subjectlm)")
    max_tokens: int = option(512, help="tokens of the text to compare", min=2)
    adapter: str | None = option(None, help="PEFT LoRA adapter: compare against the model with it merged")
    lora: str | None = option(None, help="the adapter's GGUF export, applied to each GGUF (`export lora`)")

    def __post_init__(self):
        check_options(self)
        if self.lora and not self.adapter:
            raise ConfigError("lora: also give --adapter, the PEFT adapter it was exported from")
        if not self.gguf:
            raise ConfigError("gguf: give at least one .gguf file")
        for path in self.gguf:
            if not Path(path).is_file():
                raise ConfigError(f"gguf: {path} does not exist")
        if self.data is not None and not Path(self.data).is_file():
            raise ConfigError(f"data: {self.data} does not exist")


@dataclasses.dataclass
class LoraExportConfig:
    adapter: str = option("", help="PEFT LoRA adapter directory", aliases=("--lora_model",))
    model: str = option("default", help="the base model the adapter was trained on")
    output: str = option("adapter.gguf", help="GGUF adapter file to write (llama.cpp --lora)")
    outtype: str = option("f16", help="GGUF type of the adapter's tensors", choices=("f16", "f32"))
    overwrite: bool = option(False, help="replace an existing output file")

    def __post_init__(self):
        check_options(self)
        if not self.adapter or not (Path(self.adapter) / "adapter_config.json").is_file():
            raise ConfigError(f"adapter: {self.adapter or '(none)'} is not a PEFT adapter directory")


@dataclasses.dataclass
class OllamaConfig:
    gguf: str = option("", help="the GGUF file the Modelfile points to")
    output: str | None = option(None, help="Modelfile path (default: Modelfile beside the GGUF)")
    system: str | None = option(None, help="default system prompt")
    overwrite: bool = option(False, help="replace an existing Modelfile")

    def __post_init__(self):
        if not self.gguf or not Path(self.gguf).is_file():
            raise ConfigError(f"gguf: {self.gguf or '(none)'} is not a GGUF file")


@dataclasses.dataclass(kw_only=True)
class ExportStageConfig(GGUFConfig):
    """`export gguf`'s own config (same keys, help and checks); the pipeline fills in `model`.

    Three defaults differ from the command's, because a recipe is a validation run that is re-run:
    it quantizes to q8_0, verifies, and replaces its own earlier outputs. The keys after those are
    the stage's own: what it does with the files once they are written."""

    output: str = same_option(GGUFConfig, "output", "", help="GGUF file to write (default: "
                              "output_dir/model-OUTTYPE.gguf; quantized files go beside it as NAME-TYPE.gguf)")
    quantize: list[str] = same_option(GGUFConfig, "quantize", ["q8_0"])
    verify: bool = same_option(GGUFConfig, "verify", True,
                               help="compare every GGUF with the HF model; writes verify.json")
    overwrite: bool = same_option(GGUFConfig, "overwrite", True,
                                  help="replace earlier outputs (a recipe re-run re-exports)")
    output_dir: str = option("runs/export", help="folder for model-OUTTYPE.gguf, the quantized files, verify.json",
                             path=OUTPUT)
    question: str | None = option(None, help="ask this through llama.cpp (the last GGUF) and keep the answer")
    answer_tokens: int = option(128, help="longest answer to `question`, in tokens", min=1)
    ollama: bool = option(False, help="write a Modelfile for ollama beside the GGUFs")
    ppl_data: list[str] = option([], help="held-out text files: the perplexity of every GGUF written (the export "
                                          "and each quantization), in the windows of `eval ppl`'s defaults",
                                 path=TEXT_DATA)

    def __post_init__(self):
        if not self.output:
            self.output = str(Path(self.output_dir) / f"model-{self.outtype}.gguf")
        super().__post_init__()


def export_all(config: GGUFConfig) -> list[Path]:
    """The base export, then one quantized file per type; returns all paths written."""
    from subjectlm.export.convert import export_model
    from subjectlm.export.quantize import quantize as quantize_file
    from subjectlm.models import resolve_model

    model_dir = resolve_model(config.model)
    if model_dir.suffix == ".gguf":
        raise ConfigError(f"model: {config.model} is already a GGUF; give the HF model directory")
    output = Path(config.output)
    result, used = export_model(model_dir, output, config.outtype, converter=config.converter,
                                overwrite=config.overwrite, pre_tokenizer=config.pre_tokenizer,
                                trust_remote_code=config.trust_remote_code)
    print(f"wrote {result.path} ({result.arch}, {config.outtype}, {result.size_bytes / 2**20:.1f} MiB, "
          f"end of turn {result.eot!r}, {used} converter)", flush=True)
    paths = [result.path]
    for qtype in config.quantize:
        target = output.with_name(f"{output.stem}-{qtype.lower()}.gguf")
        quantize_file(output, target, qtype, overwrite=config.overwrite)
        print(f"wrote {target} ({qtype}, {target.stat().st_size / 2**20:.1f} MiB)", flush=True)
        paths.append(target)
    return paths


# `eval ppl`'s default windows (1024 tokens every 512: 1023 read, the last predicted), so an export's
# lines compare with the eval stage's perplexity of the HF model.
PPL_MAX_LENGTH, PPL_STRIDE = 1024, 512


def gguf_perplexities(paths: list[Path], texts: list[str]) -> dict[str, dict]:
    """Each GGUF's held-out perplexity through llama.cpp (the backends' score_rolling): {path: result} with
    result as `eval ppl` writes it (files, overall)."""
    from subjectlm.backends import ModelSpec, open_backend
    from subjectlm.backends.score_rolling import perplexity_of_files

    results = {}
    for path in paths:
        backend = open_backend(ModelSpec(str(path), "llamacpp", n_ctx=PPL_MAX_LENGTH))
        try:
            scored = perplexity_of_files(backend, texts, PPL_MAX_LENGTH - 1, PPL_STRIDE, prefix=False,
                                         log=lambda _: None)
        finally:
            backend.close()
        results[str(path)] = {"model": str(path), "max_length": PPL_MAX_LENGTH, "stride": PPL_STRIDE, **scored}
        print(f"{path.name}: held-out perplexity {scored['overall']['ppl']:.3f} over "
              f"{scored['overall']['tokens']} tokens", flush=True)
    return results


def run(config: ExportStageConfig) -> dict:
    """Recipe stage: export, quantize, verify, optionally answer a question through llama.cpp."""
    from subjectlm.io import write_json

    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = export_all(config)
    summary = [f"{len(paths)} GGUF(s) in {out}"]
    if config.verify:
        from subjectlm.export.verify import format_table, verify

        rows = verify(config.model, paths)
        print(format_table(rows), flush=True)
        write_json(out / "verify.json", [dataclasses.asdict(r) for r in rows])
        summary.append("; ".join(f"{Path(r.name).stem}: KLD {r.mean_kld:.1e}, top-1 {r.top1:.1%}" for r in rows))
    if config.ppl_data:
        ppl = gguf_perplexities(paths, config.ppl_data)
        write_json(out / "ppl.json", ppl)
        summary.append("perplexity " + ", ".join(f"{Path(name).stem} {result['overall']['ppl']:.2f}"
                                                 for name, result in ppl.items()))
    if config.ollama:
        from subjectlm.export.ollama import write_modelfile

        write_modelfile(paths[-1], overwrite=True)
    if config.question:
        from subjectlm.backends import GenParams, ModelSpec, open_backend

        backend = open_backend(ModelSpec(str(paths[-1]), "llamacpp"))
        try:
            reply = backend.generate([[{"role": "user", "content": config.question}]],
                                     GenParams(max_tokens=config.answer_tokens))[0].text
        finally:
            backend.close()
        print(f"Q: {config.question}\nA: {reply}", flush=True)
        write_json(out / "answer.json", {"gguf": str(paths[-1]), "question": config.question, "answer": reply})
        summary.append(f"answer: {reply.strip()[:60]!r}")
    result: dict = {"summary": "; ".join(summary)}
    if config.ppl_data:
        result["ppl"] = {str(path): ppl[str(path)]["overall"]["ppl"] for path in paths}
    return result
