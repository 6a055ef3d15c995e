"""A progress bar for long commands: work done, rate and ETA on one stderr line, only on a terminal.

    with Progress(total=1_000_000, label="run 2026...") as bar:
        bar.update(done)          # cheap: redraws at most every `interval` seconds

Silent (no output at all) when the stream is not a TTY, so logs and pipes stay clean. Used by
`replay run`, `logstore append`/`import`/`export`/`verify`/`retention`; `unit` is what is counted
("rows", "records", "bytes": bytes print as MiB).
"""

from __future__ import annotations

import sys
import time
from typing import IO


def _fmt_secs(s: float) -> str:
    s = int(max(0, s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class Progress:
    """Rows done out of `total`, with rate and ETA, redrawn in place on `stream` (stderr)."""

    def __init__(
        self,
        total: int,
        label: str = "replay",
        *,
        stream: IO[str] | None = None,
        enabled: bool | None = None,
        interval: float = 0.2,
        width: int = 24,
        unit: str = "rows",
    ) -> None:
        self.total = max(0, int(total))
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = enabled
        self.interval = interval
        self.width = width
        self.unit = unit
        self.done = 0
        self.start = time.monotonic()
        self._last = 0.0
        self._drawn = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, done: int, force: bool = False) -> None:
        """Set the work done so far (not an increment); redraws at most every `interval` s."""
        self.done = done
        if not self.enabled:
            return
        now = time.monotonic()
        if force or now - self._last >= self.interval:
            self._last = now
            self._draw(now)

    def line(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        frac = self.done / self.total if self.total else 1.0
        filled = int(self.width * min(frac, 1.0))
        bar = "#" * filled + "-" * (self.width - filled)
        eta = (self.total - self.done) / rate if rate > 0 and self.total else 0.0
        if self.unit == "bytes":
            mib = 1 << 20
            amount, speed = f"{self.done / mib:,.1f}/{self.total / mib:,.1f} MiB", f"{rate / mib:,.1f} MiB/s"
        else:
            amount, speed = f"{self.done:,}/{self.total:,} {self.unit}", f"{rate:,.0f} {self.unit}/s"
        return f"{self.label} [{bar}] {amount} {frac:4.0%} {speed} ETA {_fmt_secs(eta)}"

    def _draw(self, now: float) -> None:
        self.stream.write("\r" + self.line(now) + "\x1b[K")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self.enabled and self._drawn:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
