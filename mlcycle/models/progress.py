"""What `score` shows while a long file is scored: rows done, rows/s and time left."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("mlcycle.models.scoring")

# Chunks between two log lines when not on a terminal.
PROGRESS_EVERY = 10


def estimate_rows(path: Path, head_bytes: int = 1 << 20) -> tuple[int, bool]:
    """(rows of the file, exact): counted when the file is no larger than head_bytes,
    else its size over the mean line length of its head (a progress estimate)."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(head_bytes)
    lines = head.count(b"\n") + (not head.endswith(b"\n") and bool(head))
    if len(head) >= size:
        return max(lines - 1, 0), True
    return max(int(size / (len(head) / max(lines, 1))) - 1, 0), False


def duration(seconds: float) -> str:
    """'42 s', '3 min 05 s', '1 h 02 min'."""
    seconds = max(int(round(seconds)), 0)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class Progress:
    """Rows done, rows/s and time left while a long file is scored: rewritten in place
    on a terminal after each chunk; in the log every `every` chunks otherwise (a
    scheduler's log gets a line now and then, not a bar). Files of one chunk say
    nothing: they are done before anyone looks."""

    def __init__(
        self,
        total: int,
        exact: bool,
        chunk_rows: int,
        stream=None,
        every: int = PROGRESS_EVERY,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.total, self.exact = total, exact
        self.stream = stream if stream is not None else sys.stderr
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self.shown = total > chunk_rows
        self.every = every
        self.clock = clock
        self.started = clock()
        self.chunks = 0
        self.rows = 0

    def line(self) -> str:
        elapsed = self.clock() - self.started
        rate = self.rows / elapsed if elapsed > 0 else 0.0
        total = max(self.total, self.rows)
        of = f" of {'' if self.exact else '~'}{total:,}" if total else ""
        share = f" ({100 * self.rows / total:.0f} %)" if total else ""
        left = f", {duration((total - self.rows) / rate)} left" if rate and total else ""
        return f"scored {self.rows:,}{of} rows{share}, {rate:,.0f} rows/s{left}"

    def update(self, rows: int) -> None:
        self.rows += rows
        self.chunks += 1
        if not self.shown:
            return
        if self.live:
            self.stream.write("\r" + self.line() + "\033[K")
            self.stream.flush()
        elif self.chunks % self.every == 0:
            log.info("%s", self.line())

    def close(self) -> None:
        if self.shown and self.live and self.chunks:
            self.stream.write("\n")
            self.stream.flush()
