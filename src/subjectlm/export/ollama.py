"""A Modelfile for ollama beside a GGUF: the chat template in ollama's Go-template form, plus stops.

Ollama does not run Jinja, so the template comes from a small table of the chat formats
our families use, recognised by their marker tokens in the GGUF's Jinja template. An
unrecognised template is written without TEMPLATE (ollama then falls back to its own
detection from the GGUF) and the caller is told.
"""

from __future__ import annotations

from pathlib import Path

# format name -> (marker in the Jinja template, Go template, stop strings)
TEMPLATES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "chatml": ("<|im_start|>",
               "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n"
               "{{ end }}<|im_start|>assistant\n",
               ("<|im_end|>",)),
    "llama3": ("<|start_header_id|>",
               "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>"
               "{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n",
               ("<|eot_id|>", "<|eom_id|>")),
    "gemma": ("<start_of_turn>",
              "{{- range .Messages }}<start_of_turn>{{ if eq .Role \"assistant\" }}model{{ else }}{{ .Role }}{{ end }}\n"
              "{{ .Content }}<end_of_turn>\n{{ end }}<start_of_turn>model\n",
              ("<end_of_turn>",)),
    "mistral": ("[INST]",
                "{{- range .Messages }}{{ if eq .Role \"user\" }}[INST] {{ .Content }} [/INST]"
                "{{ else if eq .Role \"assistant\" }}{{ .Content }}</s>{{ end }}{{ end }}",
                ("[INST]", "</s>")),
}


def detect_format(jinja_template: str | None) -> str | None:
    if not jinja_template:
        return None
    for name, (marker, _, _) in TEMPLATES.items():
        if marker in jinja_template:
            return name
    return None


def modelfile_text(source: str, chat_format: str | None, system: str | None = None,
                   extra_stops: tuple[str, ...] = ()) -> str:
    """The Modelfile, as text. `source` is the GGUF as FROM names it (`./x.gguf` or an absolute path)."""
    lines = ["# ollama Modelfile written by subjectlm: `ollama create NAME -f Modelfile`", f"FROM {source}"]
    stops: list[str] = []
    if chat_format is not None:
        _, template, stops_ = TEMPLATES[chat_format]
        lines.append(f'TEMPLATE """{template}"""')
        stops.extend(stops_)
    for stop in extra_stops:
        if stop not in stops:
            stops.append(stop)
    lines.extend(f'PARAMETER stop "{s}"' for s in stops)
    if system:
        lines.append(f'SYSTEM """{system}"""')
    return "\n".join(lines) + "\n"


def gguf_chat_metadata(path: str | Path) -> tuple[str | None, list[str]]:
    """(Jinja chat template, texts of the end-of-generation tokens) stored in a GGUF."""
    import gguf

    from subjectlm.export.gguf import ExportError

    try:
        reader = gguf.GGUFReader(str(path))
    except ValueError as exc:  # gguf's reader says only "GGUF magic invalid" and the like
        raise ExportError(f"gguf: {path} is not a readable GGUF file ({exc})") from None
    fields = reader.fields
    template = fields["tokenizer.chat_template"].contents() if "tokenizer.chat_template" in fields else None
    tokens = fields["tokenizer.ggml.tokens"].contents() if "tokenizer.ggml.tokens" in fields else []
    stops = []
    for key in ("tokenizer.ggml.eot_token_id", "tokenizer.ggml.eos_token_id"):
        if key in fields:
            text = tokens[int(fields[key].contents())]
            if text not in stops:
                stops.append(text)
    return template, stops


def write_modelfile(gguf_path: str | Path, output: str | Path | None = None, system: str | None = None,
                    overwrite: bool = False) -> tuple[Path, str | None]:
    """Write `Modelfile` beside the GGUF (or at `output`); return its path and the chat format used."""
    from subjectlm.io import check_output_dir, write_text

    gguf_path = Path(gguf_path)
    output = Path(output) if output else gguf_path.parent / "Modelfile"
    check_output_dir(output, overwrite)
    template, stops = gguf_chat_metadata(gguf_path)
    chat_format = detect_format(template)
    # Beside the Modelfile: a relative FROM, so the folder can be moved as a whole.
    same_dir = gguf_path.resolve().parent == output.parent.resolve()
    source = f"./{gguf_path.name}" if same_dir else str(gguf_path.resolve())
    text = modelfile_text(source, chat_format, system, tuple(stops))
    write_text(output, text)
    return output, chat_format
