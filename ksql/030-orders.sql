-- Orders: the per-customer order summary and the enriched order stream.

SET 'auto.offset.reset' = 'earliest';

-- Aggregations forward a key's new value at a commit (or when the record cache fills), so a longer
-- commit interval folds more of a burst's per-key updates into one and the consolidated view sees
-- fewer intermediate sums (ksqlDB's default is 2000 ms; the cost is up to this much latency per
-- aggregation step). Applies to the queries below when they are (re)created. See ksql/README.md.
SET 'commit.interval.ms' = '5000';

-- One row per order_id. Producers re-send orders (same order_id); collapsing them here makes the
-- summary count and sum every order once, and a corrected total replaces the old one.
CREATE TABLE IF NOT EXISTS T_ORDER_BY_ID WITH (
    KEY_FORMAT = 'KAFKA',
    VALUE_FORMAT = 'JSON'
) AS SELECT
    `order_id`,
    LATEST_BY_OFFSET(`customer_id`) AS `customer_id`,
    LATEST_BY_OFFSET(`order_total`) AS `order_total`
FROM S_ORDER_PLACED
GROUP BY `order_id`
EMIT CHANGES;

-- Lifetime value and order count per customer: a table aggregation over the de-duplicated orders.
CREATE TABLE IF NOT EXISTS T_ORDER_SUMMARY WITH (
    KEY_FORMAT = 'KAFKA',
    VALUE_FORMAT = 'JSON'
) AS SELECT
    `customer_id`,
    SUM(`order_total`) AS `lifetime_value`,
    COUNT(*)           AS `order_count`
FROM T_ORDER_BY_ID
GROUP BY `customer_id`
EMIT CHANGES;

-- The join below has two inputs in one task (orders, profile topic). Kafka Streams processes them
-- in timestamp order for data already on the brokers as long as max.task.idle.ms >= 0 (KIP-695;
-- -1 would process whatever is buffered, orders possibly before older profiles), and a positive
-- value also waits that long for a partition with nothing buffered. 500 ms is ksqlDB's own default;
-- it is stated here so that a server-wide -1 cannot silently break the enrichment.
SET 'max.task.idle.ms' = '500';

-- Every order with its customer's profile as of the order. LEFT JOIN: an order whose profile has
-- not arrived yet still flows, with null profile columns. It reads T_CUSTOMER_PROFILE_SOURCE, the
-- table declared over the profile topic itself, NOT the derived T_CUSTOMER_PROFILE: see
-- 010-sources.sql for why (a join against another query's output races that query in a backfill).
-- Orders and profiles must be in the same partition for a key (ksqlDB joins partition by
-- partition): every producer in the project places keys by murmur2, as ksqlDB does.
-- Key column renamed so the value can carry customer_id too (JSON consumers then need not read the
-- Kafka key).
CREATE STREAM IF NOT EXISTS S_CUSTOMER_ORDER_ENRICHED WITH (
    KAFKA_TOPIC = 'dom.customer.order.enriched.v1',
    KEY_FORMAT = 'KAFKA',
    VALUE_FORMAT = 'JSON'
) AS SELECT
    o.`customer_id`               AS `customer_key`,
    AS_VALUE(o.`customer_id`)     AS `customer_id`,
    o.`order_id`                  AS `order_id`,
    o.`order_total`               AS `order_total`,
    o.`currency`                  AS `currency`,
    o.`channel`                   AS `channel`,
    ARRAY_LENGTH(o.`items`)       AS `item_count`,
    UNIX_TIMESTAMP(o.`placed_at`) AS `placed_at`,
    p.`first_name`                AS `first_name`,
    p.`last_name`                 AS `last_name`,
    p.`email`                     AS `email`,
    p.`lifecycle_stage`           AS `lifecycle_stage`
FROM S_ORDER_PLACED o
LEFT JOIN T_CUSTOMER_PROFILE_SOURCE p ON o.`customer_id` = p.`customer_id`
EMIT CHANGES;

-- When the customer last ordered (epoch millis). ksqlDB's MAX aggregates streams only, hence a
-- table of its own; re-sent duplicates carry the same placed_at and cannot move it.
CREATE TABLE IF NOT EXISTS T_ORDER_RECENCY WITH (
    KEY_FORMAT = 'KAFKA',
    VALUE_FORMAT = 'JSON'
) AS SELECT
    `customer_id`,
    MAX(UNIX_TIMESTAMP(`placed_at`)) AS `last_order_at`
FROM S_ORDER_PLACED
GROUP BY `customer_id`
EMIT CHANGES;
