"""Datasets to replay: simulated traffic recorded into a log through the real writers.

- `fraud`: a card-payment fraud-scoring service (inputs, champion and canary scores, rendezvous
  decisions, delayed outcomes, metrics) with a daily cycle and input drift: what `replay.demo`
  records, replays and evaluates.

    from replay.datasets import fraud
    traffic = fraud.simulate(logstore.open("demo-log"), days=7, rate=8, seed=0)
"""
