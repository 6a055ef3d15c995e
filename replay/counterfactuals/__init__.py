"""The counterfactual rendezvous: what each request would have been answered with under another
schedule, SLA, overhead, default or selection, from the recorded arrivals and scores.

    import replay
    cf = replay.counterfactual(log, schedule="m3,m2@20,m1@35", sla_ms=80)
    cf.requests          # pyarrow: per request, served vs counterfactual (model, reason, ms, score)
    cf.summary           # shares, answer times, quality by the cut-off, agreement
    print(cf)            # what `replay counterfactual LOG ...` prints; cf.to_dict() for --json

How (docs/architecture.md, the live side): every decided request of the decisions topic is decided
again by `rendezvous.policy.Policy.replay`, the rule the service runs, on its arrivals: those its
decision record holds (exact), and those that came after its decision or were never delivered
(shadows), reconstructed from the scores topic on the log's clock and bounded by what the record
proves (`arrivals`). Parameters left out are the recorded ones, per request (`scenario`); so the
schedule the service ran, applied to the recorded arrivals, gives every request the model, reason,
score and decision moment it was served. Quality uses only the outcomes the log had by the cut-off
(`quality`).

What it cannot know: the overhead allowance the service would have measured under another SLA
(the recorded one stands unless `overhead_ms` is given), the posterior a sampling selector would
have learned (recorded propensities, else the prior), and arrivals after a decision beyond the
log's clock (`Counterfactual.summary["arrivals"]` says how well that clock fits the recorded ones).
"""

from __future__ import annotations

from .compute import counterfactual
from .result import Counterfactual

__all__ = ["Counterfactual", "counterfactual"]
