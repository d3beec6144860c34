"""Bronze decode throughput: the same bronze job (spark/jobs/bronze.py: framing, per-batch schema-id
resolution, per-entity writes, quarantine check) run three times over the same Kafka records, with
only its decode step swapped:

  raw      no decode: the framed bytes are copied to Delta (the ceiling)
  native   spark-avro from_avro, one branch per writer schema id (what the product runs)
  udf      a fastavro Python UDF per record (the earlier prototype's approach)

Each drains the topic from the start with an available-now trigger into its own Delta root.
Run: python -m bench.bench_bronze [--events N]
"""

from __future__ import annotations

import argparse
import io
import json
import time

import fastavro
from pyspark.sql import functions as F

from bench.spark_env import engines
from schemas import topics
from spark.jobs import bronze
from spark.transforms import bronze as T_bronze
from tests.support import pipeline
from tests.support.samples import SAMPLES


def raw_decode(framed, topic, reader_schema, writer_schemas):  # noqa: ANN001, ANN201
    rows = framed.where(F.col("topic") == topic).withColumn("decoded", F.struct(F.col("body").alias("raw_body")))
    return rows.withColumn("reason", F.when(F.col("magic").isNull() | (F.col("magic") != 0), F.lit("bad frame")))


def udf_decoder(spark):  # noqa: ANN001, ANN201
    def decode(framed, topic, reader_schema, writer_schemas):  # noqa: ANN001, ANN202
        reader = fastavro.parse_schema(json.loads(reader_schema))
        writers = {i: fastavro.parse_schema(json.loads(w)) for i, w in writer_schemas.items()}
        out_type = bronze.nullable(bronze.contract_struct(spark, reader_schema))

        @F.udf(out_type)
        def avro(schema_id, body):  # noqa: ANN001, ANN202
            writer = writers.get(schema_id)
            if writer is None or body is None:
                return None
            try:
                return fastavro.schemaless_reader(io.BytesIO(body), writer, reader)
            except Exception:
                return None

        rows = framed.where(F.col("topic") == topic)
        rows = rows.withColumn("decoded", F.when(F.col("magic") == 0, avro("schema_id", "body")))
        return T_bronze.explain(rows, reader_schema, writer_schemas)

    return decode


def run(env, settings, decode) -> float:  # noqa: ANN001
    bronze.ensure_tables(env.spark, settings)  # table set-up is not part of the measured work
    start = time.perf_counter()
    for query in bronze.start(env.spark, settings, decode=decode):
        query.awaitTermination()
        if query.exception():
            raise RuntimeError(query.exception())
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    with engines() as env:
        prefix = pipeline.new_prefix()

        def settings(name: str):  # noqa: ANN202
            return pipeline.job_settings(env.broker.bootstrap, env.registry.url, str(env.root / name), prefix,
                                         MAX_OFFSETS_PER_TRIGGER="1000000")

        pipeline.create_topics(env.broker, settings("warm"))
        record = SAMPLES[topics.ORDER_PLACED.name]
        events = ((topics.ORDER_PLACED, f"c{i % 5000}", {**record, "order_id": f"o{i}", "placed_at": record["placed_at"] + i})
                  for i in range(args.events))
        pipeline.produce(env.broker, settings("warm"), events)
        decoders = {"raw": raw_decode, "native": T_bronze.decode_topic, "udf": udf_decoder(env.spark)}
        run(env, settings("warm"), T_bronze.decode_topic)  # warm-up: JIT, class loading, Delta code paths
        results = {name: args.events / run(env, settings(name), fn) for name, fn in decoders.items()}
        print(f"bronze job over {args.events} order events (local[2], one run each, same records, same job):")
        for name in ("raw", "native", "udf"):
            print(f"  {name:7} {results[name]:10.0f} events/s   {results[name] / results['raw']:.2f} x raw copy")
        print(f"  native / udf = {results['native'] / results['udf']:.2f}")


if __name__ == "__main__":
    main()
