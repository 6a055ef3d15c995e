"""The Kafka bridge: a log topic fed from a Kafka topic, or feeding one (confluent-kafka, the
``kafka`` extra: ``pip install 'logstore[kafka]'``).

    from logstore.bridge.from_kafka import FromKafka
    FromKafka(log, "payments", bootstrap="kafka:9092", kafka_topic="payments",
              registry="http://registry:8081").run(idle_exit=5)

- `from_kafka`: Kafka partition p into log partition p, exactly once: every record keeps its
  Kafka partition and offset, and those are the position (the module says why).
- `to_kafka`: a log topic produced to Kafka by an idempotent producer, its position a consumer
  group of the log moved only over what Kafka acknowledged: at least once.
- `records` (values and the bridge's fields), `registry_client` (Confluent Schema Registry REST,
  or ``mock://`` in memory: `memregistry`), `kafka` (shared pieces), `status`, `cli`.

Importing this package loads neither confluent-kafka nor the log engine.
"""
