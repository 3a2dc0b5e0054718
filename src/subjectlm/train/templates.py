"""Chat templates as pure functions: messages in, (text, trained) segments out.

A segment list concatenates to the exact text the model sees; `trained` marks what the loss
covers: every assistant reply with its end-of-turn token, nothing else (not the role header,
not the newline after the end-of-turn token). Named templates are written out here so that a
base model without a chat template can be tuned in a known format; `tokenizer` (the default)
uses the tokenizer's own Jinja template and finds the assistant spans by rendering prefixes.
"""

from __future__ import annotations

from typing import Any, Callable

from subjectlm.config import ConfigError

Segment = tuple[str, bool]
Message = dict[str, str]

ALPACA_SYSTEM = ("Below is an instruction that describes a task. "
                 "Write a response that appropriately completes the request.")
QWEN_SYSTEM = "You are a helpful assistant."


class TemplateError(ConfigError):
    pass


def _chatml(messages: list[Message], default_system: str | None) -> list[Segment]:
    out: list[Segment] = []
    if default_system and messages[0]["role"] != "system":
        out.append((f"<|im_start|>system\n{default_system}<|im_end|>\n", False))
    for m in messages:
        if m["role"] == "assistant":
            out += [("<|im_start|>assistant\n", False), (m["content"] + "<|im_end|>", True), ("\n", False)]
        else:
            out.append((f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n", False))
    return out


def chatml(messages: list[Message], tokenizer: Any = None) -> list[Segment]:
    """`<|im_start|>role\\ncontent<|im_end|>\\n` per message (SmolLM2, Qwen, many others)."""
    return _chatml(messages, None)


def qwen(messages: list[Message], tokenizer: Any = None) -> list[Segment]:
    """ChatML with Qwen2's default system message when the record has none."""
    return _chatml(messages, QWEN_SYSTEM)


def llama3(messages: list[Message], tokenizer: Any = None) -> list[Segment]:
    """Llama-3 instruct: header tokens around the role, `<|eot_id|>` ends each turn."""
    out: list[Segment] = [("<|begin_of_text|>", False)]
    for m in messages:
        out.append((f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n", False))
        out.append((m["content"] + "<|eot_id|>", m["role"] == "assistant"))
    return out


def alpaca(messages: list[Message], tokenizer: Any = None) -> list[Segment]:
    """Chinese-LLaMA-Alpaca's prompt; each reply ends with the tokenizer's EOS token."""
    bos = getattr(tokenizer, "bos_token", None) or ""
    eos = getattr(tokenizer, "eos_token", None) or ""
    system = messages[0]["content"] if messages[0]["role"] == "system" else ALPACA_SYSTEM
    out: list[Segment] = [(f"{bos}{system}\n\n", False)]
    for m in messages:
        if m["role"] == "user":
            out.append((f"### Instruction:\n{m['content']}\n\n### Response: ", False))
        elif m["role"] == "assistant":
            out += [(m["content"] + eos, True), ("\n\n", False)]
    return out


def _render(tokenizer: Any, messages: list[Message], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def _agreement(a: str, b: str) -> int:
    """Length of the longest common prefix of two renderings."""
    n = min(len(a), len(b))
    k = next((i for i in range(n) if a[i] != b[i]), n)
    return k


def tokenizer_template(messages: list[Message], tokenizer: Any) -> list[Segment]:
    """The tokenizer's own template. An assistant turn starts where the rendering of the messages before
    it, with the generation prompt, stops agreeing with the full rendering (a generation prompt may say
    more than a finished turn: DeepSeek-R1's `<think>\n</think>`), and ends with the first end-of-turn
    token after that start, the token found by rendering the template (so a turn is trained as the full
    conversation shows it even where the template renders the last turn unlike earlier ones, as Qwen 3's
    think block, or closes the conversation with EOS, as Phi-3.5). With no end-of-turn token known, it
    ends where the rendering through that turn stops agreeing, less trailing whitespace."""
    from subjectlm.backends.text import end_of_turn_token

    if not getattr(tokenizer, "chat_template", None):
        raise TemplateError("the tokenizer has no chat template; pass --template chatml|llama3|qwen|alpaca")
    full = _render(tokenizer, messages, False)
    eot = end_of_turn_token(tokenizer)
    out: list[Segment] = []
    done = 0
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        start = _agreement(full, _render(tokenizer, messages[:i], True))
        if eot and full.find(eot, start) >= 0:
            end = full.find(eot, start) + len(eot)
        else:
            end = len(full[:_agreement(full, _render(tokenizer, messages[: i + 1], False))].rstrip())
        before = messages[i - 1]["content"] if i else ""
        if start < done or end <= start or before not in full[done:start]:
            raise TemplateError("the tokenizer's chat template does not render conversations prefix by prefix "
                                "(it rewrites earlier turns); pass --template chatml|llama3|qwen|alpaca")
        out += [(full[done:start], False), (full[start:end], True)]
        done = end
    out.append((full[done:], False))
    return [s for s in out if s[0]]


TEMPLATES: dict[str, Callable[[list[Message], Any], list[Segment]]] = {
    "tokenizer": tokenizer_template,
    "chatml": chatml,
    "qwen": qwen,
    "llama3": llama3,
    "alpaca": alpaca,
}


def with_system(messages: list[Message], system_prompt: str) -> list[Message]:
    """Put `system_prompt` first unless the record brings its own system message."""
    if system_prompt and (not messages or messages[0]["role"] != "system"):
        return [{"role": "system", "content": system_prompt}, *messages]
    return list(messages)


def render(messages: list[Message], template: str, tokenizer: Any, system_prompt: str = "") -> list[Segment]:
    if template not in TEMPLATES:
        raise TemplateError(f"unknown template {template!r}; known: {', '.join(TEMPLATES)}")
    return TEMPLATES[template](with_system(messages, system_prompt), tokenizer)


def conversation_text(messages: list[Message], template: str, tokenizer: Any, system_prompt: str = "") -> str:
    """A whole conversation as the text the template renders (pt trains on instruction records this way).
    The tokenizer's template renders in one call: pt needs no trained spans, so a template that rewrites
    earlier turns (which sft refuses) is fine here."""
    if template == "tokenizer":
        if not getattr(tokenizer, "chat_template", None):
            raise TemplateError("the tokenizer has no chat template to render instruction records; "
                                "pass --template chatml|llama3|qwen|alpaca")
        return _render(tokenizer, with_system(messages, system_prompt), False)
    return "".join(text for text, _ in render(messages, template, tokenizer, system_prompt))


def render_prompt(messages: list[Message], template: str, tokenizer: Any, system_prompt: str = "") -> str:
    """The text that asks for the next assistant reply (for dpo and generation)."""
    messages = with_system(messages, system_prompt)
    if template == "tokenizer":
        return _render(tokenizer, messages, True)
    probe = render([*messages, {"role": "assistant", "content": "\x00"}], template, tokenizer)
    text = "".join(t for t, _ in probe)
    return text[: text.index("\x00")]
