"""python -m forget without a broker: the request record, the id check, the usage line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import fastavro
import pytest

from forget import __main__ as cli
from forget import request
from forget.settings import ForgetSettings
from schemas import topics


def test_request_names_the_customer_and_is_unique_per_call():
    first = request.build("cust-1", "ops", now_ms=1_767_240_000_000)
    second = request.build("cust-1", "ops", now_ms=1_767_240_000_000)
    assert first["customer_id"] == "cust-1" and first["requested_by"] == "ops"
    assert first["requested_at"] == 1_767_240_000_000
    assert first["request_id"] != second["request_id"]  # erasing twice is two requests
    assert request.build("cust-1")["requested_by"]  # defaults to the OS user, never empty


@pytest.mark.parametrize("bad", ["", " ", "a b", "-leading-dash", "x" * 65, "ünïcode", "id\n"])
def test_bad_ids_are_refused_before_anything_is_sent(bad, capsys):
    with pytest.raises(request.BadRequest, match="not a customer id"):
        request.build(bad)
    # the broker address is unroutable: the id check must answer first, in one line
    code = cli.main([bad])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("forget: not a customer id") and err.count("\n") == 1


def test_usage_without_exactly_one_id(capsys):
    assert cli.main([]) == 2
    assert cli.main(["a", "b"]) == 2
    assert capsys.readouterr().err.count("usage: python -m forget <customer_id>") == 2


def test_prefix_applies_to_the_erasure_topic():
    settings = ForgetSettings.from_env({"TOPIC_PREFIX": "t1."})
    assert settings.topic(topics.CUSTOMER_ERASURE).name == "t1.dom.customer.erasure.v1"
    assert ForgetSettings.from_env({}).topic(topics.CUSTOMER_ERASURE).name == "dom.customer.erasure.v1"


def test_redacted_profile_overwrites_every_personal_field_ksqldb_keeps():
    """ksqlDB's profile table keeps the latest value of each field by offset; LATEST_BY_OFFSET(x) skips
    nulls unless told otherwise, so a field the redaction nulls must be read with ignoreNulls=false and a
    field it empties must not be null (an empty string is a value)."""
    record = request.build("cust-1", "ops", now_ms=1_767_240_000_000)
    profile = request.redacted_profile(record)
    sql = (Path(__file__).resolve().parents[2] / "ksql" / "020-profile.sql").read_text()
    for field, value in request.REDACTED.items():
        assert profile[field] == value
        aggregate = re.search(rf"LATEST_BY_OFFSET\(`{field}`(, *(\w+))?\)", sql)
        assert aggregate, f"{field} is not in T_CUSTOMER_PROFILE: update REDACTED"
        if value is None:
            assert aggregate.group(2) == "false", f"{field}: a null would be skipped, the old value kept"
    assert profile["customer_id"] == "cust-1" and profile["updated_at"] == record["requested_at"]
    # the record is valid under the profile contract (the serializer would refuse it otherwise)
    schema = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "avro" / topics.CUSTOMER_PROFILE.schema_file
                         ).read_text())
    assert {f["name"] for f in schema["fields"]} == set(profile)
    fastavro.validate(profile, fastavro.parse_schema(schema), raise_errors=True)
