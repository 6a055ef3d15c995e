"""The progress bar of `replay run`: `logstore.progress.Progress` (shared by the logstore CLI)."""

from logstore.progress import Progress

__all__ = ["Progress"]
