"""The error `replay.ope` raises: `OPEValueError`, a `replay.ReplayValueError` (so a ValueError).

Its message starts with the argument (or the request) it is about, then the reason; `.argument`
holds that name.
"""

from __future__ import annotations

from ..errors import ReplayValueError

__all__ = ["OPEValueError"]


class OPEValueError(ReplayValueError):
    """An argument (array, option, logged record or target answer) OPE cannot use, and why."""

    def __init__(self, argument: str, reason: str) -> None:
        super().__init__(f"{argument}: {reason}")
        self.argument = argument
        self.reason = reason
