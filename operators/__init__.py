"""Kubernetes operators of the Marketing Engine (kopf). See ``operators.ksql``."""
