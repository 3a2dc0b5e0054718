"""Problems found in data files, each pinned to `file:line: field: what is wrong`."""

from __future__ import annotations

import dataclasses

from subjectlm.errors import UserError


@dataclasses.dataclass(frozen=True)
class Problem:
    file: str
    line: int | None  # 1-based line (JSON lines, text), element start line (JSON array) or row (parquet)
    field: str  # the record field at fault, or "file" / "record" when the whole thing is
    message: str
    warning: bool = False  # read anyway (a BOM, a duplicate); `data check --strict` counts it as an error

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.field}: {self.message}"


class DataError(UserError, ValueError):
    """Bad records were found and the caller did not ask to skip them."""

    def __init__(self, problems: list[Problem], limit: int = 20):
        self.problems = problems
        lines = [str(p) for p in problems[:limit]]
        if len(problems) > limit:
            lines.append(f"... and {len(problems) - limit} more")
        hint = "\n(fix these records, or pass --skip_invalid to skip them and have them counted)"
        super().__init__(f"{len(problems)} bad record(s):\n" + "\n".join(lines) + hint)


class DataFileNotFoundError(UserError, FileNotFoundError):
    """A data path that does not exist, or a directory with no data files in it."""
