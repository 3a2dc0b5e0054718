"""`subjectlm chat`: the terminal loop (/reset, /exit, one-shot --prompt) and the CLI on a tiny model."""

from __future__ import annotations

import io

import pytest

from subjectlm.backends import Piece


class EchoBackend:
    """Answers with the number of messages it was given, streamed in two pieces."""

    name, model_id = "echo", "echo"

    def __init__(self):
        self.seen = []

    def stream(self, messages, params, cancel=None):
        self.seen.append([dict(m) for m in messages])
        yield Piece("n=")
        yield Piece(str(len(messages)))
        yield Piece("", "stop", 1, 2)


def _run(stdin_text, **config):
    from subjectlm.serve.chat import ChatConfig, chat_loop

    backend, out = EchoBackend(), io.StringIO()
    code = chat_loop(backend, ChatConfig(**config), stdin=io.StringIO(stdin_text), stdout=out)
    return code, out.getvalue(), backend.seen


def test_multi_turn_keeps_history_and_reset_forgets_it():
    code, out, seen = _run("hi\nagain\n/reset\nfresh\n/exit\nnever\n", system="be brief")
    assert code == 0
    assert out == "n=2\nn=4\n(conversation reset)\nn=2\n"
    assert seen[1] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
                       {"role": "assistant", "content": "n=2"}, {"role": "user", "content": "again"}]
    assert seen[2] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "fresh"}]
    assert len(seen) == 3  # nothing after /exit


def test_one_shot_prompt():
    code, out, seen = _run("ignored\n", prompt="What is 2+2?")
    assert (code, out) == (0, "n=1\n")
    assert seen == [[{"role": "user", "content": "What is 2+2?"}]]


def test_end_of_input_ends_the_chat():
    assert _run("hello\n")[:2] == (0, "n=1\n")


def test_bad_config_is_refused():
    from subjectlm.config import ConfigError
    from subjectlm.serve.chat import ChatConfig

    with pytest.raises(ConfigError, match="backend"):
        ChatConfig(backend="ollama")
    with pytest.raises(ConfigError, match="max_tokens"):
        ChatConfig(max_tokens=0)


def test_cli_prompt_on_a_tiny_model(tiny_llama_dir, capsys):
    """The real CLI path: argv -> config -> hf backend -> greedy answer printed."""
    from subjectlm.backends import GenParams
    from subjectlm.backends.hf import HFBackend
    from subjectlm.cli import main

    assert main(["chat", "--model", str(tiny_llama_dir), "--prompt", "Hello", "--max_tokens", "5"]) == 0
    printed = capsys.readouterr().out
    expected = "".join(p.text for p in HFBackend(tiny_llama_dir).stream([{"role": "user", "content": "Hello"}],
                                                                      GenParams(max_tokens=5)))
    assert printed == expected + "\n"


def test_cli_gguf_with_hf_backend_is_a_clear_error(tmp_path, capsys):
    from subjectlm.cli import main

    fake = tmp_path / "m.gguf"
    fake.write_bytes(b"GGUF")
    assert main(["chat", "--model", str(fake), "--backend", "hf", "--prompt", "x"]) == 2  # a UserError
    assert "use --backend llamacpp" in capsys.readouterr().err
