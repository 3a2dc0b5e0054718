"""Which converter writes the GGUF, and the checks every GGUF passes whoever wrote it.

`subjectlm` is our table-driven converter (gguf.py) for the families in names.FAMILIES; `llama.cpp` is
llama.cpp's own convert_hf_to_gguf.py (llamacpp_converter.py) for everything else; `auto` picks ours
where the table has the family, and hands the model to llama.cpp's converter, saying why, where ours
refuses its config (a rope kind or attention scale our writer does not map). After either, the GGUF must carry the tokenizer's chat template, and
llama.cpp must end generation at the token that template puts after an assistant turn; otherwise the
export fails rather than ship a model that talks past its turn.
"""

from __future__ import annotations

import json
from pathlib import Path

from subjectlm.export.gguf import OUTTYPES, ExportError, ExportResult, export_gguf
from subjectlm.export.hparams import HParamsError
from subjectlm.export.names import FAMILIES

CONVERTERS = ("auto", "subjectlm", "llama.cpp")


def pick_converter(model_dir: Path, converter: str) -> str:
    if converter not in CONVERTERS:
        raise ExportError(f"converter: {converter!r} is not one of {', '.join(CONVERTERS)}")
    family = json.loads((model_dir / "config.json").read_text()).get("model_type")
    if converter == "subjectlm" and family not in FAMILIES:
        raise ExportError(f"model_type {family!r} is not supported by the subjectlm converter "
                          f"(supported: {', '.join(FAMILIES)}); --converter llama.cpp or auto uses llama.cpp's own")
    if converter == "auto":
        return "subjectlm" if family in FAMILIES else "llama.cpp"
    return converter


def _template(tokenizer) -> str | None:
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):  # named templates: llama.cpp reads the default one
        template = template.get("default") or next(iter(template.values()), None)
    return template


def check_chat_ending(path: Path, model_dir: Path, trust_remote_code: bool = False) -> str | None:
    """The GGUF stores the model's chat template, and llama.cpp treats the template's end-of-turn token as
    end of generation. Returns that token (None: the model has no chat template)."""
    import llama_cpp
    from transformers import AutoTokenizer

    from subjectlm.backends.llamacpp import open_llama
    from subjectlm.backends.text import end_of_turn_token

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)
    template = _template(tokenizer)
    eot = end_of_turn_token(tokenizer)
    llm = open_llama(path, n_ctx=64, vocab_only=True)  # the vocabulary as llama.cpp loads it, no weights
    try:
        stored = llm.metadata.get("tokenizer.chat_template")
        stops = eot is None or llama_cpp.llama_vocab_is_eog(llama_cpp.llama_model_get_vocab(llm.model),
                                                             tokenizer.convert_tokens_to_ids(eot))
    finally:
        llm.close()
    if template and stored != template:
        raise ExportError(f"{path}: the GGUF's chat template is {'missing' if stored is None else 'not the model’s'}")
    if not stops:
        raise ExportError(f"{path}: llama.cpp would not stop at {eot!r}, the token the chat template ends an "
                          "assistant turn with; the model would run on into the next turn")
    return eot


def _result(path: Path, outtype: str, eot: str | None) -> ExportResult:
    """What llama.cpp's converter wrote, read from the GGUF header and llama.cpp's vocabulary."""
    import struct

    from subjectlm.backends.llamacpp import open_llama

    with open(path, "rb") as handle:
        magic, _, n_tensors = struct.unpack("<4sIQ", handle.read(16))
    if magic != b"GGUF":
        raise ExportError(f"{path}: llama.cpp's converter did not write a GGUF file")
    llm = open_llama(path, n_ctx=64, vocab_only=True)
    try:
        arch, n_vocab = llm.metadata.get("general.architecture", "?"), llm.n_vocab()
    finally:
        llm.close()
    return ExportResult(path, arch, outtype, n_tensors, n_vocab, eot, path.stat().st_size)


def export_model(model_dir: Path, output: Path, outtype: str = "f16", *, converter: str = "auto",
                 overwrite: bool = False, pre_tokenizer: str | None = None, trust_remote_code: bool = False,
                 progress: bool = True) -> tuple[ExportResult, str]:
    """Convert with the chosen converter, then check the chat ending; returns (result, converter used).
    The options are keywords, as export_gguf's are."""
    from subjectlm.io import check_output_dir

    if outtype not in OUTTYPES:
        raise ExportError(f"outtype: {outtype!r} is not one of {', '.join(OUTTYPES)}")
    used = pick_converter(model_dir, converter)
    refusal = None  # why our converter refused the config, when auto then tries llama.cpp's
    if used == "subjectlm":
        try:
            result = export_gguf(model_dir, output, outtype, overwrite=overwrite, pre_tokenizer=pre_tokenizer,
                                 trust_remote_code=trust_remote_code, progress=progress)
        except ExportError as exc:
            if converter != "auto" or not isinstance(exc.__cause__, HParamsError):
                raise
            refusal, used = str(exc), "llama.cpp"
            ignored = "; --pre_tokenizer is ours only, llama.cpp's detects its own" if pre_tokenizer else ""
            print(f"subjectlm's converter refuses this model ({refusal}); --converter auto hands it to llama.cpp's "
                  f"convert_hf_to_gguf.py instead (compare the result with the HF model: --verify){ignored}",
                  flush=True)
    if used == "llama.cpp":
        from subjectlm.export.llamacpp_converter import ConverterError, convert

        if pre_tokenizer and refusal is None:
            raise ExportError("pre_tokenizer: only the subjectlm converter takes it (llama.cpp's detects its own)")
        check_output_dir(output, overwrite)
        try:
            convert(model_dir, output, outtype)
        except ConverterError as exc:
            if converter != "auto":
                raise
            family = json.loads((model_dir / "config.json").read_text()).get("model_type")
            ours = (f"subjectlm's refuses its config ({refusal})" if refusal else
                    f"model_type {family!r} is not in subjectlm's table ({', '.join(FAMILIES)})")
            raise ExportError(f"neither converter can convert {model_dir}: {ours}, and {exc}") from exc
        result = _result(output, outtype, None)
    try:
        result.eot = check_chat_ending(output, model_dir, trust_remote_code)
    except BaseException:
        output.unlink(missing_ok=True)  # a GGUF that fails its checks is not left behind
        raise
    return result, used
