"""An append-only JSON-lines file whose acknowledged lines survive a crash: the persistence of the replay
buffer, the task store and the train loop's judged outcomes.

- **Append + fsync.** :meth:`JsonlLog.append` writes its lines, flushes and ``os.fsync``s before it
  returns; a new file's directory entry is fsync'd too, so its name survives a crash as well.
- **Torn tails cut.** A crash mid-write leaves a last line without its newline, or one that does not
  parse. :meth:`JsonlLog.replay` cuts it off the file (with a warning), so the next append starts on a
  clean line; such a line was never acknowledged and its writer sends it again.
- **Corrupt lines skipped.** A line that does not parse elsewhere in the file is skipped with a warning
  naming its number: loading never fails on the file's contents.
- **Nothing counted twice.** ``replay``'s callback says whether a line was new; the number of repeated
  keys is logged (the owner keeps the first line of each key).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from pydantic import ValidationError

log = logging.getLogger(__name__)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _why(e: Exception) -> str:
    if isinstance(e, ValidationError):
        first = e.errors(include_url=False)[0]
        return f"{first['msg']} at {'.'.join(map(str, first['loc'])) or 'top level'}"
    return str(e).splitlines()[0] if str(e) else type(e).__name__


class JsonlLog:
    """``path``'s lines, appended durably; ``what`` names the file's owner in messages."""

    def __init__(self, path: str | os.PathLike, what: str):
        self.path, self.what = Path(path), what
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._existed = self.path.exists()
        self._file = open(self.path, "ab")  # O_APPEND: writes land at the end, after a cut too
        if not self._existed:
            _fsync_dir(self.path.parent)

    def replay(self, apply: Callable[[bytes], bool]) -> None:
        """Hand every stored line to ``apply`` (which returns False for a key it holds already, and raises
        ValueError, KeyError or TypeError for a line it cannot read), cutting a torn tail off the file."""
        if not self._existed:
            return
        data = self.path.read_bytes()
        keep = data.rfind(b"\n") + 1  # what follows the last newline is a torn tail
        lines = data[:keep].split(b"\n")[:-1]
        repeated = 0
        for number, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            try:
                repeated += not apply(raw)
            except (ValueError, KeyError, TypeError) as e:  # ValidationError is a ValueError
                if number == len(lines):  # a torn last line that happens to end in a newline
                    keep -= len(raw) + 1
                else:
                    log.warning("%s line %d is corrupt, skipped: %s", self.path, number, _why(e))
        if repeated:
            log.warning("%s holds %d duplicate lines (same key); kept the first of each", self.path, repeated)
        if keep < len(data):
            log.warning("%s ends in a torn line (%d bytes, an interrupted write that was never acknowledged): "
                        "cut off", self.path, len(data) - keep)
            with open(self.path, "r+b") as f:
                f.truncate(keep)
                f.flush()
                os.fsync(f.fileno())

    @property
    def closed(self) -> bool:
        return self._file.closed

    def append(self, lines: Iterable[bytes]) -> None:
        """Write the lines (each without its newline) and fsync them before returning."""
        data = b"".join(line + b"\n" for line in lines)
        if self.closed:
            raise ValueError(f"{self.what} {self.path} is closed")
        if not data:
            return
        self._file.write(data)
        self.flush()

    def flush(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self.flush()
            self._file.close()
