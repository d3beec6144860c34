"""Pure builders of the three source events (values conforming to the Avro contracts in schemas/avro).

Used by the simulator and by the web UI. Every random choice comes from the ``random.Random`` passed
in (ids too: uuid4-form UUIDs drawn from it), and every timestamp from ``now_ms`` (epoch millis), so
the same rng state and clock give the same records.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

LIFECYCLE_STAGES: tuple[str, ...] = ("prospect", "customer", "evangelist", "churn-risk")
ACTIVATION_CHANNELS: tuple[str, ...] = ("email", "sms", "push", "in_app")  # Avro enum Channel
DELIVERY_STATUSES: tuple[str, ...] = ("delivered", "failed", "bounced")  # Avro enum DeliveryStatus
SALES_CHANNELS: tuple[str, ...] = ("web", "app", "store")
CURRENCY = "EUR"
EMAIL_DOMAIN = "example.com"  # RFC 2606: never a real mailbox

FIRST_NAMES = (
    "Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Frances", "John", "Margaret", "Dennis",
    "Radia", "Ken", "Sophie", "Tim", "Katherine", "Linus", "Hedy", "Claude", "Karen", "Niklaus",
    "Shafi", "Leslie", "Anita", "Guido", "Lynn", "Bjarne", "Mary", "James", "Jean", "Robin",
)
LAST_NAMES = (
    "Lovelace", "Turing", "Hopper", "Dijkstra", "Liskov", "Knuth", "Allen", "McCarthy", "Hamilton",
    "Ritchie", "Perlman", "Thompson", "Wilson", "Berners-Lee", "Johnson", "Torvalds", "Lamarr",
    "Shannon", "Jones", "Wirth", "Goldwasser", "Lamport", "Borg", "Rossum", "Conway", "Stroustrup",
    "Keller", "Gosling", "Sammet", "Milner",
)
# (sku, unit price in EUR at price level 1.0)
CATALOG: tuple[tuple[str, float], ...] = tuple(
    (f"SKU-{i:04d}", price)
    for i, price in enumerate(
        (4.99, 7.5, 9.99, 12.0, 14.99, 19.99, 24.5, 29.99, 34.0, 39.99, 49.0, 59.99, 74.5, 89.0, 99.99,
         129.0, 149.99, 199.0, 249.99, 349.0),
        start=1,
    )
)


_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def new_uuid(rng: random.Random) -> str:
    """A uuid4-form UUID drawn from ``rng`` (deterministic; never ``uuid.uuid4()``).

    Same string as ``str(uuid.UUID(int=rng.getrandbits(128), version=4))``, about 3x faster.
    """
    h = "%032x" % (rng.getrandbits(128) & _UUID4_CLEAR | _UUID4_SET)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _email(first: str, last: str, customer_id: str) -> str:
    local = f"{first}.{last}".lower().replace(" ", "").replace("'", "")
    return f"{local}.{customer_id[:8]}@{EMAIL_DOMAIN}"


def _phone(rng: random.Random) -> str:
    return f"+4930{rng.randrange(10_000_000, 99_999_999)}"  # E.164, Berlin-looking, fictional


def new_profile(
    rng: random.Random,
    now_ms: int,
    *,
    lifecycle_stage: str | None = None,
    first_name: str | None = None,
    last_name: str | None = None,
    email: str | None = None,
) -> dict[str, Any]:
    """A new customer's first profile version (created_at == updated_at == now_ms).

    ``lifecycle_stage`` is the declared stage; when None it is drawn at random from LIFECYCLE_STAGES
    (as the original design does). Missing names are drawn at random; a missing email is derived from
    the names and the customer id (so it is unique).
    """
    if lifecycle_stage is None:
        lifecycle_stage = rng.choice(LIFECYCLE_STAGES)
    elif lifecycle_stage not in LIFECYCLE_STAGES:
        raise ValueError(f"lifecycle_stage {lifecycle_stage!r} is not one of {', '.join(LIFECYCLE_STAGES)}")
    customer_id = new_uuid(rng)
    first = first_name if first_name is not None else rng.choice(FIRST_NAMES)
    last = last_name if last_name is not None else rng.choice(LAST_NAMES)
    phone = _phone(rng) if rng.random() < 0.6 else None
    return {
        "customer_id": customer_id,
        "email": email if email is not None else _email(first, last, customer_id),
        "first_name": first,
        "last_name": last,
        "created_at": int(now_ms),
        "updated_at": int(now_ms),
        "lifecycle_stage": lifecycle_stage,
        "is_active": True,
        "phone": phone,
    }


def edit_profile(rng: random.Random, profile: Mapping[str, Any], now_ms: int, *,
                 deactivate: bool = False) -> dict[str, Any]:
    """A later version of ``profile`` at ``now_ms``: a changed contact detail, or a deactivation.

    The declared lifecycle_stage and created_at never change.
    """
    edited = dict(profile)
    edited["updated_at"] = int(now_ms)
    if deactivate:
        edited["is_active"] = False
        return edited
    what = rng.random()
    if what < 0.4:
        edited["phone"] = _phone(rng)
    elif what < 0.8:
        local = f"{profile['first_name'][0]}{profile['last_name']}".lower().replace(" ", "")
        edited["email"] = f"{local}.{rng.randrange(100, 999)}.{profile['customer_id'][:8]}@{EMAIL_DOMAIN}"
    else:
        edited["last_name"] = rng.choice(LAST_NAMES)
    return edited


def random_items(rng: random.Random, price_level: float = 1.0) -> list[dict[str, Any]]:
    """1-4 line items from CATALOG; ``price_level`` shifts the choice towards dearer products."""
    lines = 1 + min(3, int(rng.expovariate(1.2)))
    items = []
    for _ in range(lines):
        # Dearer customers pick from higher in the (price-sorted) catalog.
        pos = min(len(CATALOG) - 1, max(0, int(rng.gauss(len(CATALOG) * 0.35 * price_level, 4))))
        sku, base = CATALOG[pos]
        quantity = 1 + min(4, int(rng.expovariate(1.5)))
        items.append({"sku": sku, "quantity": quantity, "price": round(base, 2)})
    return items


def new_order(
    rng: random.Random, customer_id: str, now_ms: int, *, items: Sequence[Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """An order placed at ``now_ms``; random line items when ``items`` is None.

    ``items`` are mappings with sku (str), quantity (int >= 1) and price (>= 0); order_total is their
    sum of quantity * price, rounded to cents.
    """
    if items is None:
        lines = random_items(rng)
    else:
        lines = []
        for item in items:
            sku, quantity, price = str(item["sku"]), int(item["quantity"]), float(item["price"])
            if not sku or quantity < 1 or not price >= 0:
                raise ValueError(f"invalid order item {dict(item)!r}: needs a sku, quantity >= 1, price >= 0")
            lines.append({"sku": sku, "quantity": quantity, "price": price})
        if not lines:
            raise ValueError("an order needs at least one item")
    return {
        "order_id": new_uuid(rng),
        "customer_id": customer_id,
        "order_total": round(sum(i["quantity"] * i["price"] for i in lines), 2),
        "items": lines,
        "currency": CURRENCY,
        "channel": rng.choice(SALES_CHANNELS),
        "placed_at": int(now_ms),
    }


def _attempts(rng: random.Random, status: str) -> int:
    if status == "bounced":
        return 1  # a hard bounce is not retried
    if status == "failed":
        return rng.randint(1, 3)  # retries exhausted
    return 1 if rng.random() < 0.85 else 2


def new_activation(
    rng: random.Random,
    customer_id: str,
    now_ms: int,
    *,
    channel: str | None = None,
    status: str | None = None,
    order_id: str | None = None,
) -> dict[str, Any]:
    """The delivery outcome of one marketing activation recorded at ``now_ms``.

    Random channel when None; random status (mostly delivered) when None.
    """
    if channel is None:
        channel = rng.choice(ACTIVATION_CHANNELS)
    elif channel not in ACTIVATION_CHANNELS:
        raise ValueError(f"channel {channel!r} is not one of {', '.join(ACTIVATION_CHANNELS)}")
    if status is None:
        status = rng.choices(DELIVERY_STATUSES, weights=(0.85, 0.1, 0.05))[0]
    elif status not in DELIVERY_STATUSES:
        raise ValueError(f"status {status!r} is not one of {', '.join(DELIVERY_STATUSES)}")
    return {
        "activation_id": new_uuid(rng),
        "customer_id": customer_id,
        "order_id": order_id,
        "channel": channel,
        "status": status,
        "delivered_at": int(now_ms),
        "attempts": _attempts(rng, status),
    }
