"""The live side of the rendezvous architecture (docs/architecture.md, "The live side").

A front door that archives every request into ``inputs`` before any model sees it (the decoy), model
runners that tail ``inputs`` and write ``scores``, and a rendezvous policy that answers each request
within its SLA from the first acceptable score, or a default. Every interaction is a record in the
log, used only through ``logstore``'s public API, so what was served replays exactly.
"""

from __future__ import annotations
