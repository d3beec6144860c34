-- Marketing segments (Avro on dom.segment.materialized.v1, contract schemas/avro/segment_materialized.avsc).
-- The rules live in ksql/segments.yaml; the CASE expression below is generated from it
-- (`make ksql-segments`) and a unit test fails when the two disagree.

SET 'auto.offset.reset' = 'earliest';

-- The consolidated customer view read back as a stream: ksqlDB derives streams from topics, not from
-- tables. Only the columns the segment rules look at are declared (JSON ignores the others).
CREATE STREAM IF NOT EXISTS S_SEGMENT_SOURCE (
    `customer_key`    STRING KEY,
    `customer_id`     STRING,
    `lifecycle_stage` STRING,
    `lifetime_value`  DOUBLE,
    `order_count`     BIGINT
) WITH (
    KAFKA_TOPIC = 'dom.customer.consolidated.v1',
    KEY_FORMAT = 'KAFKA',
    VALUE_FORMAT = 'JSON'
);

-- Every change of a customer's consolidated view re-evaluates the rules. A stateless projection,
-- so CREATE OR REPLACE upgrades it in place when the rules change (no reprocessing).
-- Value columns in the order and with the names of the Avro contract; ksqlDB writes them nullable,
-- as the contract says. The key (customer_id) is also copied into the value (customer_id column of
-- the source stream).
CREATE OR REPLACE STREAM S_SEGMENT_MATERIALIZED WITH (
    KAFKA_TOPIC = 'dom.segment.materialized.v1',
    KEY_FORMAT = 'KAFKA',
    VALUE_FORMAT = 'AVRO',
    VALUE_AVRO_SCHEMA_FULL_NAME = 'io.marketingengine.segment.SegmentMaterialized'
) AS SELECT
    `customer_key`,
    `customer_id`,
    -- BEGIN GENERATED segment rules (from ksql/segments.yaml by `make ksql-segments`; do not edit)
    CASE
        WHEN `lifecycle_stage` = 'evangelist' AND `lifetime_value` >= 1000.0 THEN 'vip_evangelist'
        WHEN `lifecycle_stage` = 'churn-risk' THEN 'at_risk'
        WHEN `order_count` >= 5 THEN 'loyal'
        WHEN `lifetime_value` >= 500.0 THEN 'loyal'
        WHEN `lifecycle_stage` = 'prospect' AND `order_count` <= 0 THEN 'new_prospect'
        ELSE 'nurture'
    END
    -- END GENERATED segment rules
    AS `segment`,
    `lifecycle_stage` AS `lifecycle_stage`,
    `lifetime_value`  AS `lifetime_value`,
    `order_count`     AS `order_count`
FROM S_SEGMENT_SOURCE
EMIT CHANGES;
