"""The action forms (CSRF-protected by Flask-WTF) and the validation of the table's query parameters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask_wtf import FlaskForm
from wtforms import DecimalField, IntegerField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length, NumberRange, Optional, Regexp

from seed.events import ACTIVATION_CHANNELS, DELIVERY_STATUSES, LIFECYCLE_STAGES
from webapp import model

RANDOM = "random"
NAME_RE = r"^[^\W\d_]+(?:[ '.-][^\W\d_]+)*\.?$"  # letters (any script), single spaces, ' . -
EMAIL_RE = r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+$"
SKU_RE = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$"
MAX_PER_PAGE = 200
MAX_PAGE = 1_000_000
MAX_QUERY = 100


def _strip(value: str | None) -> str | None:
    return value.strip() if isinstance(value, str) else value


class CreateCustomerForm(FlaskForm):
    first_name = StringField(
        "First name", filters=[_strip],
        validators=[Optional(), Length(max=50, message="First name: at most 50 characters."),
                    Regexp(NAME_RE, message="First name: letters only, with single spaces, hyphens or apostrophes.")],
    )
    last_name = StringField(
        "Last name", filters=[_strip],
        validators=[Optional(), Length(max=50, message="Last name: at most 50 characters."),
                    Regexp(NAME_RE, message="Last name: letters only, with single spaces, hyphens or apostrophes.")],
    )
    email = StringField(
        "Email", filters=[_strip],
        validators=[Optional(), Length(max=254, message="Email: at most 254 characters."),
                    Regexp(EMAIL_RE, message="Email: enter an address like name@example.com.")],
    )
    lifecycle_stage = SelectField(
        "Declared lifecycle stage",
        choices=[SelectChoice(RANDOM, "random (original design)")] + [SelectChoice(s, s) for s in LIFECYCLE_STAGES],
        default=RANDOM,
        validate_choice=True,
    )

    def choice(self) -> str | None:
        return None if self.lifecycle_stage.data == RANDOM else self.lifecycle_stage.data


class OrderForm(FlaskForm):
    sku = StringField(
        "SKU", filters=[_strip],
        validators=[Optional(), Regexp(SKU_RE, message="SKU: 1-32 letters, digits, - or _ (e.g. SKU-0001).")],
    )
    quantity = IntegerField(
        "Quantity", validators=[Optional(), NumberRange(1, 99, message="Quantity: a whole number from 1 to 99.")],
    )
    price = DecimalField(
        "Unit price (EUR)", places=2,
        validators=[Optional(), NumberRange(0, 100_000, message="Unit price: a number from 0 to 100000.")],
    )

    def validate(self, extra_validators: Any = None) -> bool:
        ok = super().validate(extra_validators)
        given = [bool(self.sku.raw_data and self.sku.raw_data[0].strip())] + [
            bool(f.raw_data and str(f.raw_data[0]).strip()) for f in (self.quantity, self.price)]
        if any(given) and not all(given):
            self.sku.errors = [*self.sku.errors,
                               "Order: give SKU, quantity and unit price together, or none for a random order."]
            return False
        return ok

    def items(self) -> list[dict] | None:
        if not self.sku.data:
            return None
        return [{"sku": self.sku.data, "quantity": int(self.quantity.data), "price": float(self.price.data)}]


class EngagementForm(FlaskForm):
    channel = SelectField(
        "Channel", choices=[SelectChoice(RANDOM, "random")] + [SelectChoice(c, c) for c in ACTIVATION_CHANNELS],
        default=RANDOM,
    )
    status = SelectField(
        "Outcome",
        choices=[SelectChoice(RANDOM, "random (mostly delivered)")] + [SelectChoice(s, s) for s in DELIVERY_STATUSES],
        default=RANDOM,
    )

    def picked(self) -> tuple[str | None, str | None]:
        return (None if self.channel.data == RANDOM else self.channel.data,
                None if self.status.data == RANDOM else self.status.data)


class ForgetForm(FlaskForm):
    """Forgetting a customer cannot be undone: the visitor types the customer's id to confirm."""

    confirm = StringField("Type the customer id to confirm", filters=[_strip],
                          validators=[Length(max=64, message="Confirmation: at most 64 characters.")])

    def confirms(self, customer_id: str) -> bool:
        return self.confirm.data == customer_id


def form_errors(form: FlaskForm) -> list[str]:
    """Every error of a form as a readable sentence (the CSRF one included)."""
    out: list[str] = []
    for name, errors in form.errors.items():
        for error in errors:
            if name == "csrf_token":
                out.append("The form expired or was not sent from this page: reload the page and try again.")
            elif isinstance(error, str):
                out.append(error if ":" in error else f"{getattr(form, name).label.text}: {error}")
    return out


# ---- the table's query parameters --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListQuery:
    sort: str = model.DEFAULT_SORT
    direction: str = model.DEFAULT_DIR
    page: int = 1
    per_page: int = 25
    q: str = ""

    def args(self, **changes: object) -> dict[str, object]:
        """URL arguments for this query with ``changes`` (only the non-default ones)."""
        values = {"sort": self.sort, "dir": self.direction, "page": self.page, "per_page": self.per_page,
                  "q": self.q}
        values.update(changes)
        defaults = {"sort": model.DEFAULT_SORT, "dir": model.DEFAULT_DIR, "page": 1, "q": ""}
        return {k: v for k, v in values.items() if defaults.get(k, object()) != v}


def _int(raw: str, name: str, low: int, high: int, errors: list[str]) -> int | None:
    try:
        value = int(raw)
    except ValueError:
        errors.append(f"{name} must be a whole number from {low} to {high}, not {raw[:20]!r}.")
        return None
    if not low <= value <= high:
        errors.append(f"{name} must be from {low} to {high}, not {value}.")
        return None
    return value


def parse_list_query(args: Mapping[str, str], default_per_page: int) -> tuple[ListQuery, list[str]]:
    """The validated query, and a readable message per invalid parameter (defaults used instead)."""
    errors: list[str] = []
    sort = args.get("sort", model.DEFAULT_SORT)
    if sort not in model.COLUMN_BY_KEY:
        errors.append(f"sort must be one of {', '.join(model.COLUMN_BY_KEY)}, not {sort[:30]!r}.")
        sort = model.DEFAULT_SORT
    direction = args.get("dir", model.DEFAULT_DIR)
    if direction not in {"asc", "desc"}:
        errors.append(f"dir must be asc or desc, not {direction[:10]!r}.")
        direction = model.DEFAULT_DIR
    page = _int(args["page"], "page", 1, MAX_PAGE, errors) if "page" in args else 1
    per_page = (_int(args["per_page"], "per_page", 1, MAX_PER_PAGE, errors) if "per_page" in args
                else min(default_per_page, MAX_PER_PAGE))
    raw_q = args.get("q", "")
    if len(raw_q) > MAX_QUERY:
        errors.append(f"search must be at most {MAX_QUERY} characters.")
        raw_q = raw_q[:MAX_QUERY]
    return ListQuery(sort, direction, page or 1, per_page or min(default_per_page, MAX_PER_PAGE),
                     model.normalize_search(raw_q)), errors
