"""The three source entities: their topic, Delta table names, keys and event-time column."""

from __future__ import annotations

from dataclasses import dataclass

from schemas import topics
from schemas.topics import Topic


@dataclass(frozen=True)
class Entity:
    name: str  # bronze/<name> and silver/<silver>
    silver: str
    topic: Topic
    id_column: str  # unique id of a fact in silver
    event_time: str  # event-time column (timestamp-millis in the contract)


CUSTOMERS = Entity("customer_profile", "customers", topics.CUSTOMER_PROFILE, "customer_id", "updated_at")
ORDERS = Entity("order_placed", "orders", topics.ORDER_PLACED, "order_id", "placed_at")
ACTIVATIONS = Entity("activation_status", "activations", topics.ACTIVATION_STATUS, "activation_id", "delivered_at")

ENTITIES: tuple[Entity, ...] = (CUSTOMERS, ORDERS, ACTIVATIONS)
BY_TOPIC: dict[str, Entity] = {e.topic.name: e for e in ENTITIES}
