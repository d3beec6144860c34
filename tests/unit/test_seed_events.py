from __future__ import annotations

import json
import random
import re
import uuid

import fastavro
import pytest
from fastavro.validation import validate

from schemas import topics
from seed import events

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
NOW = 1_767_225_600_000


def _schema(topic):
    return fastavro.parse_schema(json.loads(topic.schema_str))


def test_new_uuid_is_a_uuid4_drawn_from_the_rng():
    a, b = random.Random(7), random.Random(7)
    ids = [events.new_uuid(a) for _ in range(200)]
    assert ids == [events.new_uuid(b) for _ in range(200)]
    assert all(UUID4.match(i) and uuid.UUID(i).version == 4 for i in ids)
    assert len(set(ids)) == 200
    ref = random.Random(3)
    assert events.new_uuid(random.Random(3)) == str(uuid.UUID(int=ref.getrandbits(128), version=4))


def test_builders_conform_to_the_avro_contracts():
    rng = random.Random(1)
    for _ in range(50):
        profile = events.new_profile(rng, NOW)
        order = events.new_order(rng, profile["customer_id"], NOW + 1)
        activation = events.new_activation(rng, profile["customer_id"], NOW + 2, order_id=order["order_id"])
        edited = events.edit_profile(rng, profile, NOW + 3)
        assert validate(profile, _schema(topics.CUSTOMER_PROFILE))
        assert validate(edited, _schema(topics.CUSTOMER_PROFILE))
        assert validate(order, _schema(topics.ORDER_PLACED))
        assert validate(activation, _schema(topics.ACTIVATION_STATUS))
        assert profile["lifecycle_stage"] in events.LIFECYCLE_STAGES
        assert edited["lifecycle_stage"] == profile["lifecycle_stage"]
        assert edited["created_at"] == NOW and edited["updated_at"] == NOW + 3
        assert order["order_total"] == round(sum(i["quantity"] * i["price"] for i in order["items"]), 2)


def test_profile_uses_what_it_is_given_and_draws_the_rest():
    rng = random.Random(2)
    got = events.new_profile(rng, NOW, lifecycle_stage="evangelist", first_name="Ada", last_name="Lovelace",
                             email="ada@example.com")
    assert (got["lifecycle_stage"], got["first_name"], got["last_name"], got["email"]) == (
        "evangelist", "Ada", "Lovelace", "ada@example.com")
    assert got["created_at"] == got["updated_at"] == NOW and got["is_active"] is True
    drawn = events.new_profile(rng, NOW, first_name="Grace", last_name="Hopper")
    assert drawn["email"].startswith("grace.hopper.") and drawn["email"].endswith("@example.com")
    stages = {events.new_profile(rng, NOW)["lifecycle_stage"] for _ in range(200)}
    assert stages == set(events.LIFECYCLE_STAGES) == {"prospect", "customer", "evangelist", "churn-risk"}


def test_order_with_given_items_totals_them():
    got = events.new_order(random.Random(3), "c-1", NOW, items=[{"sku": "A", "quantity": 2, "price": 1.25},
                                                                  {"sku": "B", "quantity": 1, "price": 10}])
    assert got["order_total"] == 12.5 and got["customer_id"] == "c-1" and got["placed_at"] == NOW
    assert got["items"][1] == {"sku": "B", "quantity": 1, "price": 10.0}


def test_deactivation_edit():
    rng = random.Random(4)
    profile = events.new_profile(rng, NOW)
    assert events.edit_profile(rng, profile, NOW + 5, deactivate=True)["is_active"] is False


@pytest.mark.parametrize("call", [
    lambda r: events.new_profile(r, NOW, lifecycle_stage="vip"),
    lambda r: events.new_order(r, "c", NOW, items=[]),
    lambda r: events.new_order(r, "c", NOW, items=[{"sku": "A", "quantity": 0, "price": 1.0}]),
    lambda r: events.new_activation(r, "c", NOW, channel="fax"),
    lambda r: events.new_activation(r, "c", NOW, status="opened"),
])
def test_invalid_inputs_are_rejected(call):
    with pytest.raises(ValueError):
        call(random.Random(0))


def test_activation_attempts_follow_the_status():
    rng = random.Random(5)
    for status in events.DELIVERY_STATUSES:
        got = [events.new_activation(rng, "c", NOW, status=status)["attempts"] for _ in range(100)]
        assert min(got) >= 1
        if status == "bounced":
            assert set(got) == {1}
