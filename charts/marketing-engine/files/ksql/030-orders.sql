-- Orders: the enriched order stream and the per-customer order summary.

SET 'auto.offset.reset' = 'earliest';

-- Every order with its customer's profile as of the order. LEFT JOIN: an order whose profile has not
-- arrived yet still flows, with null profile columns. Key column renamed so the value can carry
-- customer_id too (JSON consumers then need not read the Kafka key).
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
LEFT JOIN T_CUSTOMER_PROFILE p ON o.`customer_id` = p.`customer_id`
EMIT CHANGES;

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
