"""The progress bar of selection and benchmarks: redrawn in place on a terminal; elsewhere (a
log file, a pipe, CI) a few plain lines instead of a carriage-return frame per step."""

from __future__ import annotations

import io

from jaxcps._progress import ProgressBar

FULL = "#" * ProgressBar.width
EMPTY = "." * ProgressBar.width


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_bar_is_redrawn_in_place() -> None:
    stream = Terminal()
    bar = ProgressBar(4, label="run", stream=stream)
    for step in range(4):
        bar.advance(note=f"step{step}")
    bar.close()
    text = stream.getvalue()
    assert text.count("\r") == 4 and text.count("\n") == 1 and text.endswith("\n")
    assert f"\rrun [{FULL}] 4/4 step3\n" in text


def test_log_gets_plain_lines_not_frames() -> None:
    stream = io.StringIO()
    bar = ProgressBar(1000, label="run", stream=stream, interval=3600.0)
    for _ in range(1000):
        bar.advance(note="layer")
    bar.close()
    assert "\r" not in stream.getvalue()
    assert stream.getvalue().splitlines() == [
        f"run [{EMPTY}] 1/1000 layer",  # the first step at once
        f"run [{FULL}] 1000/1000 layer",  # the last on closing
    ]


def test_log_line_at_most_every_interval() -> None:
    stream = io.StringIO()
    bar = ProgressBar(3, stream=stream, interval=0.0)
    for _ in range(3):
        bar.advance()
    bar.close()  # the last state is written already
    assert [line.split()[-1] for line in stream.getvalue().splitlines()] == ["1/3", "2/3", "3/3"]


def test_disabled_bar_counts_silently() -> None:
    stream = Terminal()
    bar = ProgressBar(2, stream=stream, enabled=False)
    bar.advance(2)
    bar.close()
    assert bar.done == 2 and stream.getvalue() == ""
