-- Marketing segments (Avro on dom.segment.materialized.v1, contract schemas/avro/segment_materialized.avsc).
-- The rules live in ksql/segments.yaml; the CASE expressions below are generated from it
-- (`make ksql-segments`) and a unit test fails when the two disagree.
-- consolidated topic (T_SEGMENT_CUSTOMER) LEFT JOIN scores (T_PROPENSITY_SCORE) -> T_SEGMENT_FACTS -> S_SEGMENT_SOURCE ->
-- T_SEGMENT_INPUTS (last two values of the rule inputs per customer) -> S_SEGMENT_INPUTS ->
-- S_SEGMENT_MATERIALIZED (rules; emits only segment changes).

SET 'auto.offset.reset' = 'earliest';

-- The Spark score job's propensity scores, the latest per customer. The topic is keyed by customer_id
-- and placed by murmur2 like every topic here, with the same partition count, so the join below is
-- co-partitioned. The value's customer_id repeats the key and is not declared a second time.
CREATE TABLE IF NOT EXISTS T_PROPENSITY_SCORE (
    `customer_id`       STRING PRIMARY KEY,
    `score`             DOUBLE,
    `model_version`     STRING,
    `behavioural_stage` STRING,
    `scored_at`         TIMESTAMP
) WITH (
    KAFKA_TOPIC = 'dom.propensity.score.v1',
    KEY_FORMAT = 'KAFKA',
    VALUE_FORMAT = 'AVRO'
);

-- The consolidated view as the segments read it: a table over its topic, not T_CUSTOMER_CONSOLIDATED
-- itself, so that re-creating the view (an edit of 050) leaves the segments' queries alone. Only the
-- columns the rules look at are declared (JSON ignores the others).
CREATE TABLE IF NOT EXISTS T_SEGMENT_CUSTOMER (
    `customer_key`    STRING PRIMARY KEY,
    `customer_id`     STRING,
    `lifecycle_stage` STRING,
    `lifetime_value`  DOUBLE,
    `order_count`     BIGINT
) WITH (
    KAFKA_TOPIC = 'dom.customer.consolidated.v1',
    KEY_FORMAT = 'KAFKA',
    VALUE_FORMAT = 'JSON'
);

-- What the segment rules read per customer: the consolidated view's metrics and declared stage, and
-- what the pipeline learnt from behaviour (behavioural stage, propensity score; null until the customer
-- is first scored). A table-table join emits when either side changes: a new score re-evaluates the
-- customer's segment as a new order does. Both inputs are tables over topics: one task per partition.
CREATE TABLE IF NOT EXISTS T_SEGMENT_FACTS WITH (
    KEY_FORMAT = 'KAFKA',
    VALUE_FORMAT = 'JSON'
) AS SELECT
    c.`customer_key`      AS `customer_key`,
    c.`customer_id`       AS `customer_id`,
    c.`lifecycle_stage`   AS `lifecycle_stage`,
    c.`lifetime_value`    AS `lifetime_value`,
    c.`order_count`       AS `order_count`,
    s.`behavioural_stage` AS `behavioural_stage`,
    s.`score`             AS `score`
FROM T_SEGMENT_CUSTOMER c
LEFT JOIN T_PROPENSITY_SCORE s ON c.`customer_key` = s.`customer_id`
EMIT CHANGES;

-- The facts read back as a stream: ksqlDB derives streams from topics, not from tables.
CREATE STREAM IF NOT EXISTS S_SEGMENT_SOURCE (
    `customer_key`      STRING KEY,
    `customer_id`       STRING,
    `lifecycle_stage`   STRING,
    `lifetime_value`    DOUBLE,
    `order_count`       BIGINT,
    `behavioural_stage` STRING,
    `score`             DOUBLE
) WITH (
    KAFKA_TOPIC = 'T_SEGMENT_FACTS',
    KEY_FORMAT = 'KAFKA',
    VALUE_FORMAT = 'JSON'
);

-- The segment rules' inputs per customer: the latest value and the last two values (oldest first)
-- of each, one row per change of the consolidated view. Independent of the rules, so a rules change
-- never touches this stateful query. Record cache off: every input row must reach
-- S_SEGMENT_MATERIALIZED, which compares a row with the one before it; a cache would fold rows
-- and the comparison could miss a change (A -> B -> B' folded to [B, B'] hides A -> B).
SET 'cache.max.bytes.buffering' = '0';

CREATE TABLE IF NOT EXISTS T_SEGMENT_INPUTS WITH (
    KEY_FORMAT = 'KAFKA',
    VALUE_FORMAT = 'JSON'
) AS SELECT
    `customer_key`,
    LATEST_BY_OFFSET(`customer_id`)               AS `customer_id`,
    LATEST_BY_OFFSET(`lifecycle_stage`, false)    AS `lifecycle_stage`,
    LATEST_BY_OFFSET(`lifetime_value`, false)     AS `lifetime_value`,
    LATEST_BY_OFFSET(`order_count`, false)        AS `order_count`,
    LATEST_BY_OFFSET(`behavioural_stage`, false)  AS `behavioural_stage`,
    LATEST_BY_OFFSET(`score`, false)              AS `score`,
    LATEST_BY_OFFSET(`lifecycle_stage`, 2, false) AS `lifecycle_stage_history`,
    LATEST_BY_OFFSET(`lifetime_value`, 2, false)  AS `lifetime_value_history`,
    LATEST_BY_OFFSET(`order_count`, 2, false)     AS `order_count_history`,
    LATEST_BY_OFFSET(`behavioural_stage`, 2, false) AS `behavioural_stage_history`,
    LATEST_BY_OFFSET(`score`, 2, false)           AS `score_history`
FROM S_SEGMENT_SOURCE
GROUP BY `customer_key`
EMIT CHANGES;

-- The same rows as a stream (ksqlDB derives streams from topics, not from tables).
CREATE STREAM IF NOT EXISTS S_SEGMENT_INPUTS (
    `customer_key`            STRING KEY,
    `customer_id`             STRING,
    `lifecycle_stage`         STRING,
    `lifetime_value`          DOUBLE,
    `order_count`             BIGINT,
    `behavioural_stage`       STRING,
    `score`                   DOUBLE,
    `lifecycle_stage_history` ARRAY<STRING>,
    `lifetime_value_history`  ARRAY<DOUBLE>,
    `order_count_history`     ARRAY<BIGINT>,
    `behavioural_stage_history` ARRAY<STRING>,
    `score_history`           ARRAY<DOUBLE>
) WITH (
    KAFKA_TOPIC = 'T_SEGMENT_INPUTS',
    KEY_FORMAT = 'KAFKA',
    VALUE_FORMAT = 'JSON'
);

-- A segment record only when a customer's segment changes: the rules are evaluated on the current
-- inputs and on the previous ones (history[1]; arrays are 1-based) and the row passes when the two
-- segments differ, or when it is the customer's first. A stateless projection and filter, so
-- CREATE OR REPLACE upgrades it in place when the rules change (no reprocessing; customers are
-- re-evaluated at their next change, see ksql/README.md).
-- Value columns in the order and with the names of the Avro contract; ksqlDB writes them nullable,
-- as the contract says. The key (customer_id) is also copied into the value.
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
        WHEN COALESCE(`behavioural_stage`, `lifecycle_stage`) = 'evangelist' AND `lifetime_value` >= 1000.0 THEN 'vip_evangelist'
        WHEN COALESCE(`behavioural_stage`, `lifecycle_stage`) = 'churn-risk' THEN 'at_risk'
        WHEN `order_count` >= 5 THEN 'loyal'
        WHEN `lifetime_value` >= 500.0 THEN 'loyal'
        WHEN `score` >= 0.4 THEN 'ready_to_buy'
        WHEN COALESCE(`behavioural_stage`, `lifecycle_stage`) = 'prospect' AND `order_count` <= 0 THEN 'new_prospect'
        ELSE 'nurture'
    END
    -- END GENERATED segment rules
    AS `segment`,
    `lifecycle_stage` AS `lifecycle_stage`,
    `lifetime_value`  AS `lifetime_value`,
    `order_count`     AS `order_count`,
    `behavioural_stage` AS `behavioural_stage`,
    `score`           AS `score`
FROM S_SEGMENT_INPUTS
WHERE ARRAY_LENGTH(`order_count_history`) < 2
    OR
    -- BEGIN GENERATED segment rules (from ksql/segments.yaml by `make ksql-segments`; do not edit)
    CASE
        WHEN COALESCE(`behavioural_stage`, `lifecycle_stage`) = 'evangelist' AND `lifetime_value` >= 1000.0 THEN 'vip_evangelist'
        WHEN COALESCE(`behavioural_stage`, `lifecycle_stage`) = 'churn-risk' THEN 'at_risk'
        WHEN `order_count` >= 5 THEN 'loyal'
        WHEN `lifetime_value` >= 500.0 THEN 'loyal'
        WHEN `score` >= 0.4 THEN 'ready_to_buy'
        WHEN COALESCE(`behavioural_stage`, `lifecycle_stage`) = 'prospect' AND `order_count` <= 0 THEN 'new_prospect'
        ELSE 'nurture'
    END
    -- END GENERATED segment rules
    <>
    -- BEGIN GENERATED segment rules [previous] (from ksql/segments.yaml by `make ksql-segments`; do not edit)
    CASE
        WHEN COALESCE(`behavioural_stage_history`[1], `lifecycle_stage_history`[1]) = 'evangelist' AND `lifetime_value_history`[1] >= 1000.0 THEN 'vip_evangelist'
        WHEN COALESCE(`behavioural_stage_history`[1], `lifecycle_stage_history`[1]) = 'churn-risk' THEN 'at_risk'
        WHEN `order_count_history`[1] >= 5 THEN 'loyal'
        WHEN `lifetime_value_history`[1] >= 500.0 THEN 'loyal'
        WHEN `score_history`[1] >= 0.4 THEN 'ready_to_buy'
        WHEN COALESCE(`behavioural_stage_history`[1], `lifecycle_stage_history`[1]) = 'prospect' AND `order_count_history`[1] <= 0 THEN 'new_prospect'
        ELSE 'nurture'
    END
    -- END GENERATED segment rules
EMIT CHANGES;
