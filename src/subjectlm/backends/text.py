"""Pure text helpers shared by every backend (and by export, which writes the end-of-turn token into a GGUF)."""

from __future__ import annotations

from typing import Mapping, Sequence

# What a conversation becomes for a tokenizer without a chat template (a base model): its
# contents as paragraphs, then an empty line where the answer starts. Every stage uses this one
# rule, so a base model gets the same text in chat, serve, arena and the judge.
PLAIN_SEPARATOR = "\n\n"


def chat_text(tokenizer, messages: Sequence[Mapping[str, str]]) -> str:
    """The conversation rendered by the model's own chat template, ready for the assistant's reply.

    Without a template: the messages' contents joined by blank lines, ending with one
    (`"a\\n\\nb\\n\\n"`); roles are not written, since a base model was never taught any."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([dict(m) for m in messages], tokenize=False, add_generation_prompt=True)
    return "".join(m["content"] + PLAIN_SEPARATOR for m in messages)


def end_of_turn_token(tokenizer) -> str | None:
    """The special token the chat template puts right after an assistant message.

    This is what must stop generation (`<|im_end|>`, `<|eot_id|>`, `<end_of_turn>`), found by
    rendering the template rather than by guessing from token names."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    marker = "SUBJECTLM_END_MARKER"
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "hi"}, {"role": "assistant", "content": marker}], tokenize=False)
    except Exception:  # a template that needs other roles or tools: no end-of-turn known
        return None
    after = text.split(marker, 1)[-1] if marker in text else ""
    specials = sorted(tokenizer.all_special_tokens + [t.content for t in tokenizer.added_tokens_decoder.values()],
                      key=len, reverse=True)
    after = after.lstrip()
    for token in specials:
        if token and after.startswith(token):
            return token
    return None


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool, int]:
    """(text before the first stop string, whether one was found, how many trailing chars to hold
    back because they might begin a stop string that the next piece completes)."""
    best = None
    for stop in stops:
        at = text.find(stop) if stop else -1
        if at >= 0 and (best is None or at < best):
            best = at
    if best is not None:
        return text[:best], True, 0
    hold = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:k]):
                hold = max(hold, k)
                break
    return text, False, hold
