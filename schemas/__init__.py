"""Data contracts: Avro schemas, the topic registry and the Confluent-framed serde."""
