"""Files the stages write: atomic outputs, JSON lines, and the policy for an existing output dir.

Atomic outputs: everything is written into a temporary sibling (same parent, so the final
rename is atomic on one filesystem) and renamed into place only when complete, so an
interrupted job leaves either nothing or a complete result. What a killed job's temporary
siblings leave behind is deleted by the next write of the same output (`remove_stale_temps`).

JSON lines (metrics, predictions, battles, answers): `append_jsonl` writes one whole line and
fsyncs it, so a killed job keeps every finished row; `read_jsonl` names file:line of a bad row
and drops, with a warning, a torn last line (what a writer killed mid-write leaves).

Existing output: `prepare_output(path, overwrite, resume)` refuses a non-empty output dir unless
told to replace or continue it, in one wording for every stage.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

from subjectlm.config import ConfigError
from subjectlm.errors import UserError


class OutputExistsError(UserError, FileExistsError):
    pass


class JsonlError(UserError, ValueError):
    """A JSON-lines file with a bad row (the message starts with file:line), or no such file."""

    def __init__(self, path: Path, line: int | None, message: str):
        self.path, self.line = path, line
        super().__init__(f"{path}:{line}: {message}" if line is not None else f"{path}: {message}")


# ---- output directory policy


def prepare_output(path: str | Path, overwrite: bool = False, resume: bool | None = None) -> bool:
    """Check an output path against --overwrite/--resume; True when it already holds an output.

    A missing or empty path is always fine. An existing one needs `overwrite` (the caller replaces
    it) or `resume` (the caller continues it); `resume=None` means the command cannot resume.
    Nothing is deleted here.
    """
    path = Path(path)
    exists = path.exists() and (path.is_file() or any(path.iterdir()))
    if overwrite and resume:
        raise ConfigError("--overwrite and --resume: give one or the other")
    if exists and not (overwrite or resume):
        how = "pass --overwrite to replace it" + (" or --resume to continue it" if resume is not None else "")
        raise OutputExistsError(f"{path} already exists; {how}")
    return exists


def check_output_dir(path: str | Path, overwrite: bool) -> Path:
    """Refuse to clobber an existing non-empty output unless told to (`prepare_output` without resume)."""
    prepare_output(path, overwrite)
    return Path(path)


# ---- JSON lines


class Rows(list):
    """The rows of a JSON-lines file; `torn` counts the cut-short last line dropped (0 or 1)."""

    torn: int = 0


def read_jsonl(path: str | Path, *, repair: bool = False, missing_ok: bool = False) -> Rows:
    """Every row of a JSON-lines file (blank lines skipped).

    A bad row is a JsonlError naming file:line, except the last line when it has no newline: that
    is what a writer killed mid-line leaves, so it is dropped with a warning and counted in
    `.torn`. `repair` also cuts it off the file (and ends a complete last line with its newline),
    so that rows appended next start on a line of their own.
    """
    path = Path(path)
    rows = Rows()
    if not path.is_file():
        if missing_ok:
            return rows
        raise JsonlError(path, None, "no such file")
    data = path.read_bytes()
    lines = data.split(b"\n")
    offset = 0
    for n, raw in enumerate(lines, 1):
        last = n == len(lines)  # the bytes after the final newline (b"" in a well-ended file)
        if raw.strip():
            try:
                rows.append(json.loads(raw))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                if not last:
                    msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
                    raise JsonlError(path, n, f"not valid JSON: {msg}") from None
                rows.torn = 1
                print(f"warning: {path}:{n}: last line is cut short ({len(raw)} bytes, a writer was killed?): "
                      "dropped" + (" and removed from the file" if repair else ""), file=sys.stderr)
                if repair:
                    with open(path, "r+b") as handle:
                        handle.truncate(offset)
                break
            if last and repair:  # a complete row without its newline: end it, so appends start afresh
                with open(path, "ab") as handle:
                    handle.write(b"\n")
        offset += len(raw) + 1
    return rows


def append_jsonl(path: str | Path, row: Any) -> None:
    """Append one row as one line, flushed and fsynced: a killed job keeps every row written before."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")
    with open(path, "ab") as handle:
        if handle.tell() and _last_byte(path) != b"\n":
            handle.write(b"\n")  # never glue a row onto an unfinished line (read_jsonl reports that line)
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1)


# ---- atomic outputs
# A temporary sibling is named `.NAME.tmp-HOST-PID-XXXX`, so that a later run on the same host can tell
# one left by a killed process (its PID no longer runs) from one another live process is writing.
_HOST = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"


def _temp_prefix(final: Path, kind: str = "tmp") -> str:
    return f".{final.name}.{kind}-{_HOST}-{os.getpid()}-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_stale_temps(final: str | Path) -> list[Path]:
    """Delete the temporary siblings of `final` that killed processes on this host left behind, and
    finish a replacement such a process had half done (`final` moved aside, the new one complete but
    not yet renamed in). Returns what was removed; says so on stderr, since it may be gigabytes."""
    final = Path(final)
    if not final.parent.is_dir():
        return []
    pattern = re.compile(re.escape(f".{final.name}.") + r"(tmp|old)-" + re.escape(_HOST) + r"-(\d+)-")
    stale: dict[str, list[tuple[int, Path]]] = {"tmp": [], "old": []}
    for entry in final.parent.iterdir():
        match = pattern.match(entry.name)
        if match and not _pid_alive(int(match.group(2))):
            stale[match.group(1)].append((int(match.group(2)), entry))
    for pid, old in stale["old"]:  # killed between moving the old result aside and renaming the new one in
        if not final.exists():
            done = [tmp for p, tmp in stale["tmp"] if p == pid]
            (done[0] if done else old).rename(final)  # the new result is complete once the old one is aside
    removed = []
    for _, path in stale["old"] + stale["tmp"]:
        if path.exists() or path.is_symlink():
            _remove(path)
            removed.append(path)
    if removed:
        print(f"note: removed {len(removed)} temporary file(s) beside {final} left by an interrupted run: "
              + ", ".join(p.name for p in removed), file=sys.stderr, flush=True)
    return removed


def temp_sibling(final: str | Path, suffix: str = "") -> Path:
    """A new empty file beside `final` (same filesystem: `os.replace` onto `final` is atomic), after the
    stale ones are cleared; for writers that need a path, such as a subprocess. The caller renames or deletes it."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(final)
    fd, name = tempfile.mkstemp(prefix=_temp_prefix(final), suffix=suffix, dir=final.parent)
    os.close(fd)
    return Path(name)


def exchange_paths(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 with RENAME_EXCHANGE); False where that is unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:  # glibc before 2.28, musl
        return False
    at_fdcwd, rename_exchange = -100, 2  # from <fcntl.h> and <linux/fs.h>
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _umask() -> int:
    umask = os.umask(0)  # the only way to read it is to set it
    os.umask(umask)
    return umask


@contextlib.contextmanager
def atomic_dir(final: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that becomes `final` only if the block finishes."""
    final = Path(final)
    check_output_dir(final, overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(final)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(final), dir=final.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0700 would make the output private; give it mkdir's mode
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_path(tmp, final)


def replace_path(new: Path, final: Path) -> None:
    """`new` takes `final`'s place and the old `final` is deleted: one atomic renameat2 exchange, or where
    that is unsupported two renames with the old one moved aside first, so that there is never a moment
    with neither (remove_stale_temps finishes them after a kill in between: the aside name carries our PID)."""
    if not final.exists():
        new.rename(final)
    elif exchange_paths(new, final):  # `new` now holds the old result
        _remove(new)
    else:
        aside = final.with_name(_temp_prefix(final, "old") + "aside")
        _remove(aside)
        final.rename(aside)
        new.rename(final)
        _remove(aside)


@contextlib.contextmanager
def atomic_file(final: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[Any]:
    """Open a temporary file beside `final`; rename it over `final` on success."""
    final = Path(final)
    tmp_name = temp_sibling(final)
    try:
        with open(tmp_name, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle
        os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp's 0600 made it private; give it open()'s mode
        os.replace(tmp_name, final)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_file(path) as handle:
        json.dump(obj, handle, ensure_ascii=False, indent=2)
        handle.write("\n")


def write_text(path: str | Path, text: str) -> None:
    with atomic_file(path) as handle:
        handle.write(text)
