"""One progress reporter: a redrawn bar on a terminal, plain lines in CI and logs."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


class Progress:
    """Counts bytes of one transfer; ``advance`` is cheap enough to call per block."""

    def __init__(
        self,
        label: str,
        total: int | None,
        stream: TextIO | None = None,
        *,
        tty: bool | None = None,
        line_every: float = 5.0,
    ) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self._line_every = line_every
        self._started = time.monotonic()
        self._last_draw = 0.0
        self._closed = False

    def advance(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if now - self._last_draw >= (0.2 if self.tty else self._line_every):
            self._last_draw = now
            self._draw(now, final=False)

    def _status(self, now: float) -> str:
        elapsed = max(now - self._started, 1e-6)
        rate = self.done / elapsed
        text = f"{human_bytes(self.done)}"
        if self.total:
            text += f" / {human_bytes(self.total)} ({100 * self.done / self.total:3.0f}%)"
        text += f"  {human_bytes(rate)}/s"
        if self.total and rate > 0 and self.done < self.total:
            text += f"  ETA {_clock((self.total - self.done) / rate)}"
        else:
            text += f"  {_clock(elapsed)}"
        return text

    def _draw(self, now: float, final: bool) -> None:
        if self.tty:
            bar = ""
            if self.total:
                width = 24
                filled = int(width * min(self.done / self.total, 1.0))
                bar = "[" + "#" * filled + "." * (width - filled) + "] "
            end = "\n" if final else ""
            self.stream.write(f"\r\x1b[K{self.label} {bar}{self._status(now)}{end}")
        else:
            self.stream.write(f"{self.label}: {self._status(now)}\n")
        self.stream.flush()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._draw(time.monotonic(), final=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        elif self.tty:
            self.stream.write("\n")
            self.stream.flush()
