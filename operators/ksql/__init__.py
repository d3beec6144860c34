"""The KSQL ConfigMap operator: ``kopf run --standalone -n NAMESPACE -m operators.ksql``.

It applies the ksqlDB statements of labelled ConfigMaps (``ksql/`` in this repository) to ksqlDB,
idempotently, with drift repair and a dry-run planner (``python -m operators.ksql.plan``).
See docs/ksql-operator.md. Importing this package registers the kopf handlers (``handlers``); it
reads no environment and starts nothing until kopf runs the startup handler.
"""

from operators.ksql import handlers as handlers  # noqa: F401  (registers the kopf handlers)
