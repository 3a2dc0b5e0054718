"""Record formats -> one normalized shape per kind of data.

- pre-training: a document string (`text` field of JSON/parquet rows; a line or paragraph of .txt)
- instruction (sft): a `Conversation` of role/content messages, from
  alpaca    {"instruction", "input"?, "output", "system"?, "history"? [[q, a], ...]}
  sharegpt  {"conversations": [{"from": "human"|"gpt"|"system", "value": ...}], "system"?}
  messages  {"messages": [{"role": "system"|"user"|"assistant", "content": ...}]}
- preference (dpo): a `PreferencePair` from {"prompt", "chosen", "rejected"} where each is a string
  or a message list, plus optional "system".

Each `to_*` function returns the normalized value or raises `RecordError(field, message)`.
"""

from __future__ import annotations

import dataclasses
from typing import Any


class RecordError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclasses.dataclass(frozen=True)
class Conversation:
    messages: list[dict[str, str]]  # optional leading system, then user/assistant alternating, ending with assistant
    source: str = ""


@dataclasses.dataclass(frozen=True)
class PreferencePair:
    prompt: list[dict[str, str]]  # optional system, then user/assistant turns, ending with user
    chosen: str
    rejected: str
    source: str = ""


SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "model": "assistant", "system": "system"}
MESSAGE_ROLES = {"system", "user", "assistant"}


def _string(record: dict, field: str, required: bool = True, allow_empty: bool = False) -> str | None:
    if field not in record or record[field] is None:
        if required:
            raise RecordError(field, "missing")
        return None
    value = record[field]
    if not isinstance(value, str):
        raise RecordError(field, f"expected a string, got {type(value).__name__}")
    if required and not allow_empty and not value.strip():
        raise RecordError(field, "empty")
    return value


def to_document(value: Any) -> str:
    if isinstance(value, str):
        return value
    text = _string(value, "text")
    return text


def _alpaca(record: dict) -> list[dict[str, str]]:
    instruction = _string(record, "instruction")
    extra = _string(record, "input", required=False)
    output = _string(record, "output")
    system = _string(record, "system", required=False)
    messages = [{"role": "system", "content": system}] if system and system.strip() else []
    history = record.get("history")
    if history is not None:
        if not isinstance(history, list):
            raise RecordError("history", f"expected a list of [question, answer] pairs, got {type(history).__name__}")
        for i, turn in enumerate(history):
            if not (isinstance(turn, (list, tuple)) and len(turn) == 2 and all(isinstance(t, str) for t in turn)):
                raise RecordError(f"history[{i}]", "expected a [question, answer] pair of strings")
            messages += [{"role": "user", "content": turn[0]}, {"role": "assistant", "content": turn[1]}]
    # Chinese-LLaMA-Alpaca joins instruction and input with a newline.
    prompt = instruction + "\n" + extra if extra else instruction
    return messages + [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]


def _message_list(items: Any, field: str, role_key: str, content_key: str, roles: dict[str, str]) -> list[dict[str, str]]:
    if not isinstance(items, list):
        raise RecordError(field, f"expected a list of messages, got {type(items).__name__}")
    if not items:
        raise RecordError(field, "empty")
    messages = []
    for i, item in enumerate(items):
        where = f"{field}[{i}]"
        if not isinstance(item, dict):
            raise RecordError(where, f"expected an object, got {type(item).__name__}")
        if role_key not in item:
            raise RecordError(f"{where}.{role_key}", "missing")
        role = roles.get(str(item[role_key]).lower()) if isinstance(item[role_key], str) else None
        if role is None:
            raise RecordError(f"{where}.{role_key}", f"unknown role {item[role_key]!r}; expected one of {', '.join(sorted(roles))}")
        content = item.get(content_key)
        if content is None:
            raise RecordError(f"{where}.{content_key}", "missing")
        if not isinstance(content, str):
            raise RecordError(f"{where}.{content_key}", f"expected a string, got {type(content).__name__}")
        if not content.strip() and role == "assistant":
            raise RecordError(f"{where}.{content_key}", "empty answer")
        messages.append({"role": role, "content": content})
    return messages


def _check_turns(messages: list[dict[str, str]], field: str, last: str) -> None:
    """system? then user/assistant alternating, starting with user, ending with `last`."""
    body = messages[1:] if messages and messages[0]["role"] == "system" else messages
    if not body:
        raise RecordError(field, "no user or assistant turns")
    for i, message in enumerate(body):
        expected = "user" if i % 2 == 0 else "assistant"
        if message["role"] != expected:
            index = i + (len(messages) - len(body))
            raise RecordError(f"{field}[{index}]", f"expected {'an' if expected == 'assistant' else 'a'} {expected} turn here, got {message['role']} "
                              "(turns must alternate user/assistant after an optional first system message)")
    if body[-1]["role"] != last:
        raise RecordError(field, f"must end with a{'n' if last == 'assistant' else ''} {last} turn")


def detect_format(record: dict) -> str:
    if "messages" in record:
        return "messages"
    if "conversations" in record:
        return "sharegpt"
    if "instruction" in record:
        return "alpaca"
    raise RecordError("record", "unknown format: expected `instruction`/`output` (alpaca), `conversations` (sharegpt) or `messages`")


def to_conversation(record: Any, source: str = "") -> Conversation:
    if not isinstance(record, dict):
        raise RecordError("record", f"expected a JSON object, got {type(record).__name__}")
    kind = detect_format(record)
    if kind == "alpaca":
        messages = _alpaca(record)
    elif kind == "sharegpt":
        messages = _message_list(record["conversations"], "conversations", "from", "value", SHAREGPT_ROLES)
        system = _string(record, "system", required=False)
        if system and system.strip() and messages[0]["role"] != "system":
            messages.insert(0, {"role": "system", "content": system})
        _check_turns(messages, "conversations", last="assistant")
    else:
        messages = _message_list(record["messages"], "messages", "role", "content", {r: r for r in MESSAGE_ROLES})
        _check_turns(messages, "messages", last="assistant")
    return Conversation(messages, source)


def _side(value: Any, field: str) -> str:
    """A chosen/rejected answer: a string, or a message list whose last assistant message is the answer."""
    if isinstance(value, str):
        if not value.strip():
            raise RecordError(field, "empty")
        return value
    if isinstance(value, list):
        messages = _message_list(value, field, "role", "content", {r: r for r in MESSAGE_ROLES})
        if messages[-1]["role"] != "assistant":
            raise RecordError(field, "the last message must be the assistant's answer")
        return messages[-1]["content"]
    if isinstance(value, dict) and "content" in value:
        return _side([value], field)
    raise RecordError(field, "missing" if value is None else f"expected a string or a message list, got {type(value).__name__}")


def to_preference(record: Any, source: str = "") -> PreferencePair:
    if not isinstance(record, dict):
        raise RecordError("record", f"expected a JSON object, got {type(record).__name__}")
    if "prompt" not in record:
        if "instruction" in record:  # alpaca-style preference data
            prompt_messages = _alpaca({**record, "output": "x"})[:-1]
        else:
            raise RecordError("prompt", "missing")
    elif isinstance(record["prompt"], str):
        if not record["prompt"].strip():
            raise RecordError("prompt", "empty")
        prompt_messages = [{"role": "user", "content": record["prompt"]}]
    else:
        prompt_messages = _message_list(record["prompt"], "prompt", "role", "content", {r: r for r in MESSAGE_ROLES})
        _check_turns(prompt_messages, "prompt", last="user")
    system = _string(record, "system", required=False)
    if system and system.strip() and prompt_messages[0]["role"] != "system":
        prompt_messages.insert(0, {"role": "system", "content": system})
    chosen = _side(record.get("chosen"), "chosen")
    rejected = _side(record.get("rejected"), "rejected")
    if chosen == rejected:
        raise RecordError("rejected", "identical to chosen: the pair teaches nothing")
    return PreferencePair(prompt_messages, chosen, rejected, source)
