"""Seed: behavioural customer simulator and Avro publisher (HTTP Proxy or Kafka), with a CLI.

Public API used by other components:
  seed.settings.PublisherSettings / SeedSettings   settings built from the environment
  seed.publish.make_publisher(settings) -> Publisher, PublishError
  seed.events.new_profile / new_order / new_activation, LIFECYCLE_STAGES
  seed.simulator.Simulator                           pure generator of (topic, key, record)
"""
