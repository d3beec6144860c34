"""Where a keyed record goes: the one partitioning decision of every producer in the project.

ksqlDB, Kafka Streams and every Java producer (Spark's Kafka sink included) place a keyed record in
``toPositive(murmur2(key bytes)) % partitions`` (Kafka's ``BuiltInPartitioner.partitionForKey``). A
stream-table join only matches rows of the same partition, so our producers must place keys the same
way, or an order lands away from its customer's profile (issue 13, defect 1):

- the Kafka transport configures librdkafka with :data:`LIBRDKAFKA_PARTITIONER` (``murmur2_random``,
  librdkafka's Java-compatible partitioner; its default ``consistent_random`` hashes with CRC32);
- the REST transport computes :func:`partition_for_key` itself and sends the partition explicitly, so
  the result does not depend on the proxy's own default.
"""

from __future__ import annotations

__all__ = ["LIBRDKAFKA_PARTITIONER", "murmur2", "partition_for_key", "to_positive"]

# librdkafka's `partitioner` setting that equals the Java producer for keyed records (null keys go to a
# random partition, as with the Java producer's sticky choice; we always send keys).
LIBRDKAFKA_PARTITIONER = "murmur2_random"

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2``: 32-bit MurmurHash2 with Kafka's seed, as a Java (signed) int."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    body = length - length % 4
    for i in range(0, body, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24  # Java's >>> on an int: the value is kept unsigned here
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = length % 4
    if tail:  # the fall-through switch over the last 1-3 bytes
        if tail == 3:
            h ^= data[body + 2] << 16
        if tail >= 2:
            h ^= data[body + 1] << 8
        h ^= data[body]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def to_positive(value: int) -> int:
    """Kafka's ``Utils.toPositive``: clear the sign bit (not abs(), which differs for negatives)."""
    return value & 0x7FFFFFFF


def partition_for_key(key: bytes | str, partitions: int) -> int:
    """The partition a Java producer (and ksqlDB) gives ``key`` in a topic of ``partitions`` partitions.

    A str key is taken as its UTF-8 bytes (our keys are customer ids, serialized as UTF-8 strings)."""
    if partitions < 1:
        raise ValueError(f"a topic has at least 1 partition, got {partitions}")
    data = key.encode("utf-8") if isinstance(key, str) else key
    return to_positive(murmur2(data)) % partitions
