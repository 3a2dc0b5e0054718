"""constraints.txt and tools/pins.py: what is pinned, what `make test-latest` reports as moved."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONSTRAINTS = REPO / "constraints.txt"


def _pins_module():
    spec = importlib.util.spec_from_file_location("pins", REPO / "tools" / "pins.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


pins = _pins_module()

FREEZE = """\
accelerate==1.11.0
Jinja2==3.1.6
llama_cpp_python==0.3.36
torch==2.13.0+cpu
-e git+https://example.org/subjectlm.git@abc#egg=subjectlm
subjectlm==0.1.0
pip==25.3
mylib @ file:///home/someone/mylib
""".splitlines()


def test_freeze_lines_become_pins_without_local_labels_or_machine_specific_installs():
    got, unpinned = pins.parse_freeze(FREEZE)
    assert {k: (p.name, p.version) for k, p in got.items()} == {
        "accelerate": ("accelerate", "1.11.0"), "jinja2": ("Jinja2", "3.1.6"),
        "llama-cpp-python": ("llama_cpp_python", "0.3.36"), "torch": ("torch", "2.13.0")}
    assert unpinned == ["mylib @ file:///home/someone/mylib"]


def test_written_file_reads_back_to_the_same_pins(tmp_path):
    got, unpinned = pins.parse_freeze(FREEZE)
    path = tmp_path / "c.txt"
    path.write_text(pins.constraints_text(got, unpinned))
    assert pins.read_constraints(path) == got
    text = path.read_text()
    assert "#   mylib @ file:///home/someone/mylib\n" in text
    assert text.endswith("Jinja2==3.1.6\nllama_cpp_python==0.3.36\ntorch==2.13.0\n")  # sorted by canonical name


def test_moved_lists_upgrades_new_and_gone_packages_only():
    pinned = {"torch": pins.Pin("torch", "2.13.0"), "transformers": pins.Pin("transformers", "5.24.0"),
              "old-dep": pins.Pin("old_dep", "1.0")}
    installed = {"torch": pins.Pin("torch", "2.13.0"), "transformers": pins.Pin("transformers", "5.25.1"),
                 "new-dep": pins.Pin("new-dep", "0.3")}
    assert [str(m) for m in pins.moved(pinned, installed)] == [
        "new-dep: (not pinned) -> 0.3", "old_dep: 1.0 -> (not installed)", "transformers: 5.24.0 -> 5.25.1"]
    assert pins.moved(pinned, pinned) == []


def test_a_bad_constraints_line_names_file_and_line(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("# header\ntorch==2.13.0\ntransformers>=5\n")
    with pytest.raises(ValueError, match=r"c.txt:3: 'transformers>=5' is not NAME==VERSION"):
        pins.read_constraints(path)


def test_the_repository_constraints_pin_torch_and_not_subjectlm():
    got = pins.read_constraints(CONSTRAINTS)
    assert got["torch"].version == "2.13.0"
    assert "subjectlm" not in got
    for name in ("transformers", "peft", "trl", "datasets", "accelerate", "llama-cpp-python", "gguf"):
        assert name in got, name


@pytest.mark.skipif(os.environ.get("SUBJECTLM_LATEST") == "1",
                    reason="make test-latest runs on the newest allowed versions on purpose")
def test_this_environment_has_the_pinned_versions():
    """What the suite runs with is what constraints.txt says (packages it does not pin are not checked)."""
    installed, _ = pins.freeze()
    drift = [str(m) for m in pins.moved(pins.read_constraints(CONSTRAINTS), installed)
             if m.pinned is not None and m.installed is not None]
    assert not drift, (f"installed versions differ from constraints.txt: {drift}; `make install` restores the "
                       "pins, `make constraints` pins what is installed now")
