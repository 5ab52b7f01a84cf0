"""Progress of a long measurement (selection, benchmarks) on stderr, without dependencies.

On a terminal the bar is redrawn in place. Anywhere else (a log file, a pipe, CI) carriage
returns would pile up as hundreds of frames, so a plain line is written at most every few
seconds, and the last state when the bar closes.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

#: Seconds between two plain lines when the stream is not a terminal.
LOG_INTERVAL_SECONDS = 5.0


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class ProgressBar:
    """Shows `label [#####.....] done/total note`.

    Args:
      total: number of steps.
      label: text before the bar (default: "").
      stream: where to write (default: None, meaning sys.stderr at construction time).
      enabled: write at all (default: True); a disabled bar only counts.
      interval: seconds between plain lines when `stream` is not a terminal (default:
        `LOG_INTERVAL_SECONDS`).
    """

    width = 30

    def __init__(
        self,
        total: int,
        label: str = "",
        stream: TextIO | None = None,
        enabled: bool = True,
        interval: float = LOG_INTERVAL_SECONDS,
    ):
        self.total = max(total, 1)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.interval = interval
        self.done = 0
        self._in_place = _is_terminal(self.stream)
        self._drawn_width = 0  # terminal: length of the line on screen
        self._last_line_at: float | None = None  # not a terminal: when a line was written
        self._unwritten: str | None = None  # not a terminal: the latest state, if not written

    def advance(self, steps: int = 1, note: str = "") -> None:
        """Counts `steps` more steps done and shows the state with `note` after the counter."""
        self.done = min(self.done + steps, self.total)
        if not self.enabled:
            return
        filled = self.width * self.done // self.total
        line = (
            f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] "
            f"{self.done}/{self.total} {note}"
        ).rstrip()
        if self._in_place:
            self._write("\r" + line.ljust(self._drawn_width))
            self._drawn_width = len(line)
            return
        now = time.monotonic()
        if self._last_line_at is None or now - self._last_line_at >= self.interval:
            self._write(line + "\n")
            self._last_line_at, self._unwritten = now, None
        else:
            self._unwritten = line

    def close(self) -> None:
        """Ends the bar: the line on a terminal, or writes the last state not yet written."""
        if not self.enabled:
            return
        if self._in_place and self._drawn_width:
            self._write("\n")
        elif self._unwritten is not None:
            self._write(self._unwritten + "\n")
            self._unwritten = None

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
