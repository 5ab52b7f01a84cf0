"""A one-line text progress bar on stderr, without dependencies."""

from __future__ import annotations

import sys
from typing import TextIO


class ProgressBar:
    """Redraws `label [#####.....] done/total note` in place on a terminal stream.

    Args:
      total: number of steps.
      label: text before the bar (default: "").
      stream: where to draw (default: None, meaning sys.stderr at construction time).
      enabled: draw at all (default: True); a disabled bar does nothing.
    """

    width = 30

    def __init__(
        self, total: int, label: str = "", stream: TextIO | None = None, enabled: bool = True
    ):
        self.total = max(total, 1)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.done = 0
        self._last_len = 0

    def advance(self, steps: int = 1, note: str = "") -> None:
        """Counts `steps` more steps done and redraws with `note` after the counter."""
        self.done = min(self.done + steps, self.total)
        if not self.enabled:
            return
        filled = self.width * self.done // self.total
        line = (
            f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] "
            f"{self.done}/{self.total} {note}"
        ).rstrip()
        self.stream.write("\r" + line.ljust(self._last_len))
        self.stream.flush()
        self._last_len = len(line)

    def close(self) -> None:
        """Ends the line."""
        if self.enabled and self._last_len:
            self.stream.write("\n")
            self.stream.flush()
