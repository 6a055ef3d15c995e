"""Runs: replays recorded in a log, started, resumed and audited.

- `start`: `run`, `resume`, `rerun` (`plan`: their models and exact ranges, checked before
  anything is written);
- `handle`: the `Run` handle, `runs`, `get`;
- `manifest`: the run's record, ``<log>/runs/<run_id>/manifest.json`` (`Manifest`);
- `execute`: replaying a plan, checkpointing, ending every run in a terminal state;
- `workers`: stateless models replayed in several processes;
- `cluster`, `cluster_task`: the same on a cluster engine (Dask distributed: ``engine="dask"``,
  one task per input partition, retries that never duplicate output);
- `sink`: the output topic, its schema and writer thread; `hashing`: the content hash;
- `audit`, `audit_manifest`: every output row and manifest field checked against the log;
- `delete`: `delete_run` (``replay delete``): a run's record, and an output topic of its own;
- `progress`, `logs`: the progress bar; the log a call was given.

The package's own namespace is kept empty: `replay.run`, `replay.runs`, `replay.delete_run` and
the rest are re-exported by `replay`. Design: docs/architecture.md (invariants 7 to 9).
"""
