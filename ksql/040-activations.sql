-- Marketing engagement: delivered / failed / bounced activations and the last delivered one per customer.

SET 'auto.offset.reset' = 'earliest';

-- Fewer intermediate per-key updates forwarded to the consolidated view (see 030-orders.sql).
SET 'commit.interval.ms' = '5000';

-- The latest status of every activation. Status updates of one activation share its activation_id
-- (a failed send that is retried and delivered counts once, as delivered).
CREATE TABLE IF NOT EXISTS T_ACTIVATION_BY_ID WITH (
    KEY_FORMAT = 'KAFKA',
    VALUE_FORMAT = 'JSON'
) AS SELECT
    `activation_id`,
    LATEST_BY_OFFSET(`customer_id`) AS `customer_id`,
    LATEST_BY_OFFSET(`channel`)     AS `channel`,
    LATEST_BY_OFFSET(`status`)      AS `status`
FROM S_ACTIVATION_STATUS
GROUP BY `activation_id`
EMIT CHANGES;

-- Activations per customer by latest status. Names and meanings are gold's (spark/transforms/gold.py)
-- and the web UI's: activations_failed is every activation not delivered (failed or bounced);
-- activations_bounced is the bounced part of it. Contract: schemas/json/customer_consolidated.json.
CREATE TABLE IF NOT EXISTS T_ACTIVATION_SUMMARY WITH (
    KEY_FORMAT = 'KAFKA',
    VALUE_FORMAT = 'JSON'
) AS SELECT
    `customer_id`,
    SUM(CASE WHEN `status` = 'delivered' THEN 1 ELSE 0 END)                      AS `activations_delivered`,
    SUM(CASE WHEN `status` = 'failed' OR `status` = 'bounced' THEN 1 ELSE 0 END) AS `activations_failed`,
    SUM(CASE WHEN `status` = 'bounced' THEN 1 ELSE 0 END)                        AS `activations_bounced`,
    COUNT(*)                                                                     AS `activation_count`
FROM T_ACTIVATION_BY_ID
GROUP BY `customer_id`
EMIT CHANGES;

-- Last engagement: when a message last reached the customer (epoch millis).
CREATE TABLE IF NOT EXISTS T_ENGAGEMENT_RECENCY WITH (
    KEY_FORMAT = 'KAFKA',
    VALUE_FORMAT = 'JSON'
) AS SELECT
    `customer_id`,
    MAX(UNIX_TIMESTAMP(`delivered_at`)) AS `last_engagement_at`
FROM S_ACTIVATION_STATUS
WHERE `status` = 'delivered'
GROUP BY `customer_id`
EMIT CHANGES;
