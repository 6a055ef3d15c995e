"""The replay engine: models driven along the event clock, answering from an as-of view.

- `clock`: the topics of a run merged into one stream by append time (event-time order too);
- `context`: ``ctx``, what a model may know at each row's clock (`AsOfState` per lookup topic);
- `lookups`: the lookup topics of a run, each fed along the clock;
- `rows`: output rows of a frame, constant columns kept as one value;
- `answers`: a model's answer to ``predict`` checked and turned into score columns;
- `replayer`: the `Replayer` that walks the clock, calls the models and hands rows to a sink.

The engine reads the log through `logstore.Log`'s public methods only and writes nothing itself:
runs (`replay.runner`) give it a plan and a sink. Design: docs/architecture.md ("Two clocks",
invariants 8 and 9).
"""
