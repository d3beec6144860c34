"""Probe customers: the synthetic customers ``make verify`` (``python -m verify``) and the freshness bench
send through the pipeline to follow one customer hop by hop.

A probe is marked by its customer id alone (``probe-`` + a random suffix), so that every store and
language can tell without another field: Python (:func:`is_probe`), Spark (``customer_id LIKE
'probe-%'``), ksqlDB and Redis. Probes flow through every layer like real customers (that is what is
verified) but never count as customers: training and evaluation leave them out, the web UI's cache
keeps them out of its list, counts and insights and lets them expire, and each Spark batch names the
probes it committed in its batch status (``dom.pipeline.batch.status.v1``, field ``probes``).
"""

from __future__ import annotations

import uuid

PROBE_PREFIX = "probe-"
# A batch status names at most this many probes (a verify run sends one; the bench a few at a time).
MAX_PROBES_PER_STATUS = 20


def is_probe(customer_id: str | None) -> bool:
    return bool(customer_id) and customer_id.startswith(PROBE_PREFIX)  # type: ignore[union-attr]


def new_probe_id() -> str:
    return f"{PROBE_PREFIX}{uuid.uuid4().hex[:12]}"
