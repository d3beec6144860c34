"""A tiny progress display (no dependency): a bar redrawn on a TTY, else periodic log lines."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TextIO

log = logging.getLogger("seed")


class Progress:
    def __init__(
        self,
        stream: TextIO,
        *,
        tty: bool | None = None,
        redraw_s: float = 0.2,
        log_every_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        width: int = 24,
    ):
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.redraw_s = redraw_s
        self.log_every_s = log_every_s
        self.clock = clock
        self.width = width
        self.started = clock()
        self._last = float("-inf")
        self._drawn = False

    def rate(self, sent: int) -> float:
        elapsed = self.clock() - self.started
        return sent / elapsed if elapsed > 0 else 0.0

    def line(self, sent: int, errors: int, fraction: float) -> str:
        fraction = min(1.0, max(0.0, fraction))
        filled = int(round(fraction * self.width))
        bar = "#" * filled + "-" * (self.width - filled)
        return (f"[{bar}] {fraction:4.0%} {sent:>10,} events sent {self.rate(sent):>10,.1f} events/s "
                f"{errors:>5} errors")

    def update(self, sent: int, errors: int, fraction: float, *, force: bool = False) -> None:
        now = self.clock()
        if self.tty:
            if force or now - self._last >= self.redraw_s:
                self.stream.write("\r" + self.line(sent, errors, fraction))
                self.stream.flush()
                self._drawn = True
                self._last = now
        elif force or now - self._last >= self.log_every_s:
            if self._last != float("-inf") or force:
                log.info("progress: %.0f%% of simulated time, %d events sent, %.1f events/s, %d errors",
                         fraction * 100, sent, self.rate(sent), errors)
            self._last = now

    def finish(self, sent: int, errors: int, fraction: float) -> None:
        """Draw the final state and end the bar's line (TTY only; logs are left to the summary)."""
        if self.tty:
            self.update(sent, errors, fraction, force=True)
            self.stream.write("\n")
            self.stream.flush()


class Throttle:
    """Keep ``sent / elapsed`` at or under ``rate`` events/s (``rate`` 0 = unthrottled)."""

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self.started = clock()

    def wait(self, sent: int) -> float:
        """Sleep until ``sent`` events are due; return the seconds slept."""
        if self.rate <= 0:
            return 0.0
        delay = self.started + sent / self.rate - self.clock()
        if delay > 0:
            self.sleep(delay)
            return delay
        return 0.0
