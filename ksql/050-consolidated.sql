-- The consolidated customer view the web UI shows (JSON on dom.customer.consolidated.v1; contract:
-- schemas/json/customer_consolidated.json, column names and meanings shared with gold and the UI).
-- Built FROM the profile table, so a customer without orders or activations is in it too: the
-- LEFT JOINs leave their metrics null and COALESCE turns counts and value into 0.

SET 'auto.offset.reset' = 'earliest';

-- The inputs are tables written by other queries, each at its own pace: a row may briefly combine
-- a newer input with an older one (intermediate rows). Committing less often folds more updates of
-- a key into one (see 030-orders.sql); what remains is documented in ksql/README.md.
SET 'commit.interval.ms' = '5000';

CREATE TABLE IF NOT EXISTS T_CUSTOMER_CONSOLIDATED WITH (
    KAFKA_TOPIC = 'dom.customer.consolidated.v1',
    KEY_FORMAT = 'KAFKA',
    VALUE_FORMAT = 'JSON'
) AS SELECT
    p.`customer_id`                                 AS `customer_key`,
    AS_VALUE(p.`customer_id`)                       AS `customer_id`,
    p.`first_name`                                  AS `first_name`,
    p.`last_name`                                   AS `last_name`,
    p.`email`                                       AS `email`,
    p.`phone`                                       AS `phone`,
    p.`lifecycle_stage`                             AS `lifecycle_stage`,
    p.`is_active`                                   AS `is_active`,
    p.`created_at`                                  AS `created_at`,
    p.`updated_at`                                  AS `profile_updated_at`,
    COALESCE(o.`lifetime_value`, CAST(0 AS DOUBLE)) AS `lifetime_value`,
    COALESCE(o.`order_count`, CAST(0 AS BIGINT))    AS `order_count`,
    -- T_ORDER_RECENCY is one step from the orders, T_ORDER_SUMMARY two (via T_ORDER_BY_ID): shown
    -- only once the summary counts an order, so no row says "ordered at ..., 0 orders".
    CASE WHEN o.`order_count` > 0 THEN r.`last_order_at` END AS `last_order_at`,
    COALESCE(a.`activations_delivered`, 0)          AS `activations_delivered`,
    COALESCE(a.`activations_failed`, 0)             AS `activations_failed`,
    COALESCE(a.`activations_bounced`, 0)            AS `activations_bounced`,
    e.`last_engagement_at`                          AS `last_engagement_at`
FROM T_CUSTOMER_PROFILE p
LEFT JOIN T_ORDER_SUMMARY o ON p.`customer_id` = o.`customer_id`
LEFT JOIN T_ORDER_RECENCY r ON p.`customer_id` = r.`customer_id`
LEFT JOIN T_ACTIVATION_SUMMARY a ON p.`customer_id` = a.`customer_id`
LEFT JOIN T_ENGAGEMENT_RECENCY e ON p.`customer_id` = e.`customer_id`
EMIT CHANGES;
