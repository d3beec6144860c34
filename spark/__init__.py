"""Spark Structured Streaming jobs (bronze, silver, gold, score) on Delta Lake."""
