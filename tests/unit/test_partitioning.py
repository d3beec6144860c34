"""schemas.partitioning against Kafka's published murmur2 vectors. The engine tests compare it with
Kafka's own Java partitioner and with librdkafka's murmur2_random on the real broker
(tests/engines/test_seed_kafka.py)."""

from __future__ import annotations

import random
import zlib
from collections import Counter

import pytest

from schemas.partitioning import LIBRDKAFKA_PARTITIONER, murmur2, partition_for_key, to_positive

# org.apache.kafka.common.utils.UtilsTest#testMurmur2: input -> Java int.
KAFKA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize("data,expected", list(KAFKA_VECTORS.items()))
def test_murmur2_equals_kafkas_vectors(data, expected):
    assert murmur2(data) == expected


def test_results_are_java_ints():
    rng = random.Random(3)
    for _ in range(2000):
        h = murmur2(bytes(rng.randrange(256) for _ in range(rng.randrange(0, 24))))
        assert -(2**31) <= h < 2**31


def test_to_positive_clears_the_sign_bit_rather_than_negating():
    assert to_positive(-790332482) == (-790332482) & 0x7FFFFFFF == 1357151166
    assert to_positive(-790332482) != abs(-790332482)
    assert to_positive(-(2**31)) == 0 and to_positive(5) == 5


def test_partition_for_key_is_the_positive_hash_modulo_partitions():
    for data, h in KAFKA_VECTORS.items():
        for n in (1, 3, 6, 12):
            assert partition_for_key(data, n) == (h & 0x7FFFFFFF) % n
    # A str key is its UTF-8 bytes (how the customer id key is serialized).
    assert partition_for_key("kunde-ä", 6) == partition_for_key("kunde-ä".encode(), 6)


def test_keys_spread_over_partitions_and_differ_from_crc32():
    keys = [f"c-{i:05d}" for i in range(3000)]
    spread = Counter(partition_for_key(k, 6) for k in keys)
    assert set(spread) == set(range(6)) and min(spread.values()) > 400
    # librdkafka's default (consistent_random) is CRC32: most keys land elsewhere, which is the bug.
    differ = sum(partition_for_key(k, 6) != zlib.crc32(k.encode()) % 6 for k in keys)
    assert differ > len(keys) / 2


def test_no_partitions_is_an_error():
    with pytest.raises(ValueError, match="at least 1 partition"):
        partition_for_key(b"k", 0)


def test_librdkafka_partitioner_name():
    assert LIBRDKAFKA_PARTITIONER == "murmur2_random"
