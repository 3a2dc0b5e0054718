"""llama.cpp's own `convert_hf_to_gguf.py`, for the families our table (names.py) does not have.

The converter must match the llama.cpp that will run its output, so it is taken from the source
distribution of the installed llama-cpp-python (which vendors llama.cpp under `vendor/llama.cpp/`):
fetched once with `pip download --no-binary :all: --no-deps llama-cpp-python==<installed version>`
(PyPI, never a model hub), and only the converter, its `conversion/` package and `gguf-py/` are kept,
under `$SUBJECTLM_HOME/llama.cpp-converter/<version>/`. It runs in a subprocess of this Python with its
own gguf-py first on the path, so a different `gguf` in this environment cannot change what it writes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from subjectlm.errors import UserError
from subjectlm.io import temp_sibling

CONVERTER = "convert_hf_to_gguf.py"
# What we keep from the sdist's vendor/llama.cpp/: the script and the two packages it imports.
KEPT = (CONVERTER, "conversion/", "gguf-py/")


class ConverterError(UserError, ValueError):
    pass


def llama_cpp_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llama-cpp-python")
    except PackageNotFoundError as exc:
        raise ConverterError("llama.cpp's converter is taken from llama-cpp-python's source, but "
                             "llama-cpp-python is not installed: pip install 'subjectlm[gguf]'") from exc


def converter_dir(version: str | None = None) -> Path:
    from subjectlm.models import subjectlm_home

    return subjectlm_home() / "llama.cpp-converter" / (version or llama_cpp_version())


def _extract(sdist: Path, into: Path) -> int:
    """Copy the KEPT files of the sdist's vendor/llama.cpp/ into `into`; returns how many."""
    count = 0
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            parts = member.name.split("/")
            if len(parts) < 4 or parts[1:3] != ["vendor", "llama.cpp"] or not member.isfile():
                continue
            rel = "/".join(parts[3:])
            if ".." in parts or not (rel == CONVERTER or rel.startswith(KEPT[1:])):
                continue
            target = into / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            count += 1
    return count


def fetch_converter(version: str | None = None) -> Path:
    """The converter directory for the installed llama-cpp-python, fetched with pip on first use."""
    version = version or llama_cpp_version()
    final = converter_dir(version)
    if (final / CONVERTER).is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    print(f"fetching llama.cpp's converter: pip download llama-cpp-python=={version} (source, once)", flush=True)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=final.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "--quiet",
               f"llama-cpp-python=={version}", "-d", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True)
        sdists = sorted(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if done.returncode != 0 or not sdists:
            raise ConverterError(f"could not fetch llama.cpp's converter ({' '.join(cmd[2:])}): "
                                 f"{_tail(done.stderr or done.stdout)}. It needs PyPI once; offline, put the "
                                 f"sdist's vendor/llama.cpp/{{{', '.join(KEPT)}}} into {final}")
        staged = Path(tmp) / "converter"
        if _extract(sdists[0], staged) == 0 or not (staged / CONVERTER).is_file():
            raise ConverterError(f"{sdists[0].name} has no vendor/llama.cpp/{CONVERTER}")
        os.replace(staged, final)  # a complete directory or none
    return final


def _tail(text: str, lines: int = 6) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:]) or "(no output)"


def convert(model_dir: Path, output: Path, outtype: str) -> Path:
    """Run llama.cpp's converter on `model_dir`, writing `output` atomically."""
    script = fetch_converter() / CONVERTER
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = str(temp_sibling(output, suffix=".gguf"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "NO_LOCAL_GGUF": ""}
    env.pop("NO_LOCAL_GGUF")  # the converter then puts its own gguf-py first on sys.path
    try:
        done = subprocess.run([sys.executable, str(script), str(model_dir), "--outfile", tmp, "--outtype", outtype],
                              capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise ConverterError(f"llama.cpp's converter (llama-cpp-python {llama_cpp_version()}) could not convert "
                                 f"{model_dir}: {_tail(done.stderr or done.stdout)}")
        os.replace(tmp, output)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return output
