"""constraints.txt: the exact package versions the test suite passed with, and what moved since.

    python tools/pins.py write constraints.txt   pin what this Python has installed (`make constraints`)
    python tools/pins.py moved constraints.txt   list what this Python has that differs (`make test-latest`)

`make install` installs with `pip install -c constraints.txt`, so a fresh clone gets the versions the
suite last passed with; `make test-latest` installs the newest versions pyproject.toml allows into
.venv-latest, runs the suite there and ends with `moved`, so a failure there names its suspects.

The pins come from `pip freeze` of the running interpreter. Left out: editable installs (subjectlm
itself), pip, and anything installed from a path or URL (machine-specific: such lines are named in the file's
header, not pinned). Local version labels are dropped (torch 2.13.0+cpu is pinned as torch==2.13.0,
which pip matches with the CPU and the CUDA build alike).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

HEADER = """\
# The exact versions the test suite passed with: `make install` (so `make test`, `make demo` and CI)
# installs with `pip install -c constraints.txt`. `make constraints` regenerates this file from .venv;
# `make test-latest` runs the suite on the newest versions pyproject.toml allows and lists what moved.
"""
NEVER_PINNED = {"subjectlm", "pip"}
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;#]+)")


def canonical(name: str) -> str:
    """PEP 503's normalized name: Llama_CPP.python and llama-cpp-python are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Pin:
    name: str  # as pip freeze spells it
    version: str


def parse_freeze(lines: list[str]) -> tuple[dict[str, Pin], list[str]]:
    """`pip freeze` lines -> ({canonical name: Pin}, lines left unpinned because they name a path or URL)."""
    pins, unpinned = {}, []
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("-e ", "--editable")):
            continue  # a development checkout (subjectlm itself), never a release to pin
        if " @ " in line:
            if canonical(line.split(" @ ")[0].strip()) not in NEVER_PINNED:
                unpinned.append(line)
            continue
        match = _PIN.match(line)
        if match is None:
            raise ValueError(f"pip freeze line {line!r} is not NAME==VERSION")
        name, version = match.group(1), match.group(3).split("+")[0]
        if canonical(name) not in NEVER_PINNED:
            pins[canonical(name)] = Pin(name, version)
    return pins, unpinned


def read_constraints(path: Path) -> dict[str, Pin]:
    """A constraints file written by `write`; a line that is not NAME==VERSION is an error naming it."""
    pins = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#")[0].strip()
        if not line:
            continue
        match = _PIN.match(line)
        if match is None:
            raise ValueError(f"{path}:{number}: {raw!r} is not NAME==VERSION")
        pins[canonical(match.group(1))] = Pin(match.group(1), match.group(3))
    return pins


def constraints_text(pins: dict[str, Pin], unpinned: list[str]) -> str:
    lines = [HEADER]
    if unpinned:
        lines.append("# Not pinned (installed from a path or URL on the machine that wrote this file):\n")
        lines.extend(f"#   {line}\n" for line in unpinned)
    lines.extend(f"{pin.name}=={pin.version}\n" for _, pin in sorted(pins.items()))
    return "".join(lines)


@dataclass(frozen=True)
class Move:
    name: str
    pinned: str | None  # None: not in the constraints (a new dependency)
    installed: str | None  # None: pinned but no longer installed

    def __str__(self) -> str:
        return f"{self.name}: {self.pinned or '(not pinned)'} -> {self.installed or '(not installed)'}"


def moved(pinned: dict[str, Pin], installed: dict[str, Pin]) -> list[Move]:
    """Every package whose installed version differs from its pin, sorted by name; equal versions are left out."""
    out = []
    for key in sorted(set(pinned) | set(installed)):
        old, new = pinned.get(key), installed.get(key)
        if old is None or new is None or old.version != new.version:
            out.append(Move((new or old).name, old and old.version, new and new.version))
    return out


def freeze() -> tuple[dict[str, Pin], list[str]]:
    """This interpreter's installed packages, as pip freeze lists them."""
    done = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True,
                          text=True, check=True)
    return parse_freeze(done.stdout.splitlines())


def write(path: Path) -> int:
    pins, unpinned = freeze()
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        handle.write(constraints_text(pins, unpinned))
    os.replace(handle.name, path)  # the whole file or the old one, never half
    print(f"wrote {path}: {len(pins)} pins" + (f", {len(unpinned)} left unpinned (path/URL installs)" if unpinned
                                                 else ""))
    return 0


def report(path: Path) -> int:
    changes = moved(read_constraints(path), freeze()[0])
    versions = [c for c in changes if c.installed is not None]  # another version, or a new dependency
    absent = [c.name for c in changes if c.installed is None]
    print(f"== packages that moved versus {path}: {len(versions)} at another version or new, {len(absent)} pinned "
          "but not installed here")
    for change in versions:
        print(f"  {change}")
    if absent:  # the bench extra's packages, say: pinned because .venv has them, not a change of version
        print(f"  not installed here (an extra this environment lacks, or no longer a dependency): {', '.join(absent)}")
    if not changes:
        print("  none: this environment has exactly the pinned versions")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("write", "moved"):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    return (write if argv[0] == "write" else report)(Path(argv[1]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
