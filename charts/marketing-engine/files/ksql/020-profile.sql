-- The customer profile cache: the latest version of every profile, keyed by customer_id.
-- Timestamps become epoch milliseconds (BIGINT) so that every JSON consumer gets plain numbers.
-- phone keeps nulls (a profile that drops its phone number clears it); the other fields are never
-- null in the contract.

SET 'auto.offset.reset' = 'earliest';

CREATE TABLE IF NOT EXISTS T_CUSTOMER_PROFILE WITH (
    KEY_FORMAT = 'KAFKA',
    VALUE_FORMAT = 'JSON'
) AS SELECT
    `customer_id`,
    LATEST_BY_OFFSET(`email`)                      AS `email`,
    LATEST_BY_OFFSET(`first_name`)                 AS `first_name`,
    LATEST_BY_OFFSET(`last_name`)                  AS `last_name`,
    LATEST_BY_OFFSET(`phone`, false)               AS `phone`,
    LATEST_BY_OFFSET(`lifecycle_stage`)            AS `lifecycle_stage`,
    LATEST_BY_OFFSET(`is_active`)                  AS `is_active`,
    LATEST_BY_OFFSET(UNIX_TIMESTAMP(`created_at`)) AS `created_at`,
    LATEST_BY_OFFSET(UNIX_TIMESTAMP(`updated_at`)) AS `updated_at`
FROM S_CUSTOMER_PROFILE_SOURCE
GROUP BY `customer_id`
EMIT CHANGES;
