"""Off-policy evaluation: what a target selection policy would have earned, from logged decisions.

    import replay.ope
    res = replay.ope.estimate(action=a, reward=r, pscore=p, action_dist=pi, intervals=True)
    res["snipw"].value, res["snipw"].low, res["snipw"].high, res["dr"].ess
    res = replay.ope.evaluate_policy(log, lambda record: {"m1:1": 1.0}, cutoff=t)

Two levels: `estimate` on arrays (Open Bandit Pipeline's conventions; `replay.ope.estimators`) and
`evaluate_policy` on a log's decisions and outcomes topics (`replay.ope.logged`), for a target
given as a function of the decision record or as a rendezvous config. Estimates need logged
exploration: see `replay.ope.logged`.
"""

from __future__ import annotations

from .errors import OPEValueError
from .estimators import ESTIMATORS, Estimate, OPEResult, estimate, fit_reward_model
from .logged import LoggedArrays, PolicyEvaluation, build_arrays, evaluate_policy

__all__ = [
    "ESTIMATORS",
    "Estimate",
    "LoggedArrays",
    "OPEResult",
    "OPEValueError",
    "PolicyEvaluation",
    "build_arrays",
    "estimate",
    "evaluate_policy",
    "fit_reward_model",
]
