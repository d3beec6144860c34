-- Source streams over the raw event topics (Avro in Schema Registry, contracts in schemas/avro/).
--
-- * Keys are the customer_id as a plain UTF-8 string (KEY_FORMAT='KAFKA'), so every join below is a
--   key join and needs no repartition.
-- * The value's own customer_id field repeats the key; a key and a value column cannot share a
--   name, so it is not declared a second time.
-- * Column names are the Avro field names, back-quoted to keep them lower case.
-- * Explicit columns + an existing subject: ksqlDB reads with the producers' schema and registers
--   nothing. (If the subject did not exist yet, ksqlDB would register its own all-nullable schema and
--   the producers' later registration would fail as incompatible: the operator waits for the
--   subjects before it creates these streams.)

CREATE STREAM IF NOT EXISTS S_CUSTOMER_PROFILE_SOURCE (
    `customer_id`     STRING KEY,
    `email`           STRING,
    `first_name`      STRING,
    `last_name`       STRING,
    `created_at`      TIMESTAMP,
    `updated_at`      TIMESTAMP,
    `lifecycle_stage` STRING,
    `is_active`       BOOLEAN,
    `phone`           STRING
) WITH (
    KAFKA_TOPIC = 'dom.customer.profile.upsert.v1',
    KEY_FORMAT = 'KAFKA',
    VALUE_FORMAT = 'AVRO'
);

CREATE STREAM IF NOT EXISTS S_ORDER_PLACED (
    `customer_id` STRING KEY,
    `order_id`    STRING,
    `order_total` DOUBLE,
    `items`       ARRAY<STRUCT<`sku` STRING, `quantity` INT, `price` DOUBLE>>,
    `currency`    STRING,
    `channel`     STRING,
    `placed_at`   TIMESTAMP
) WITH (
    KAFKA_TOPIC = 'dom.order.placed.v1',
    KEY_FORMAT = 'KAFKA',
    VALUE_FORMAT = 'AVRO'
);

-- channel and status are Avro enums: ksqlDB reads them as STRING.
CREATE STREAM IF NOT EXISTS S_ACTIVATION_STATUS (
    `customer_id`   STRING KEY,
    `activation_id` STRING,
    `order_id`      STRING,
    `channel`       STRING,
    `status`        STRING,
    `delivered_at`  TIMESTAMP,
    `attempts`      INT
) WITH (
    KAFKA_TOPIC = 'dom.activation.delivery.status.v1',
    KEY_FORMAT = 'KAFKA',
    VALUE_FORMAT = 'AVRO'
);

-- The latest profile per customer as a TABLE declared directly over the profile topic, for the
-- order enrichment in 030-orders.sql. Why not T_CUSTOMER_PROFILE (020): that table is written by a
-- persistent query of its own, and Kafka Streams time-aligns only the input partitions of ONE task.
-- Joining orders against a table another query writes races that query: in a backfill from
-- `earliest` the join can read every order before the profile query has written the profiles
-- (observed on ksqlDB 0.29: every enriched order null). With this table the order stream and the
-- profile topic are inputs of the same task, which processes them in record-timestamp order, so an
-- order sees every profile published before it (same partition: producers place keys by murmur2).
-- Same columns as S_CUSTOMER_PROFILE_SOURCE; the table keeps the latest record per key (nulls included).
CREATE TABLE IF NOT EXISTS T_CUSTOMER_PROFILE_SOURCE (
    `customer_id`     STRING PRIMARY KEY,
    `email`           STRING,
    `first_name`      STRING,
    `last_name`       STRING,
    `created_at`      TIMESTAMP,
    `updated_at`      TIMESTAMP,
    `lifecycle_stage` STRING,
    `is_active`       BOOLEAN,
    `phone`           STRING
) WITH (
    KAFKA_TOPIC = 'dom.customer.profile.upsert.v1',
    KEY_FORMAT = 'KAFKA',
    VALUE_FORMAT = 'AVRO'
);
