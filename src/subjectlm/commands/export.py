"""`subjectlm export`: export to GGUF for llama.cpp, quantize, verify (issue #7; not landed yet)."""

from subjectlm.commands._common import pending


def add_parser(subparsers):
    return pending(subparsers, "export", "export to GGUF for llama.cpp, quantize, verify", issue=7)
