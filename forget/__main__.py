"""python -m forget <customer_id>: publish a request to forget that customer and print its line.

Exit 0 once the request is acknowledged; 2 with one line when the id is not a customer id, a setting is
wrong, or Kafka / the registry cannot be reached. Each store then erases the customer on its own
(docs/forget.md): the request is the only thing this command does."""

from __future__ import annotations

import sys

from common.settings import ConfigError
from forget import request
from forget.settings import ForgetSettings
from schemas import topics

USAGE = "usage: python -m forget <customer_id>"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(f"forget: {USAGE}", file=sys.stderr)
        return 2
    try:
        settings = ForgetSettings.from_env()
        record = request.build(args[0], settings.requested_by)
        request.publish(settings, record)
    except (ConfigError, request.BadRequest, request.Unreachable) as exc:
        print(f"forget: {exc}", file=sys.stderr)
        return 2
    print(f"forget: requested erasure of customer {record['customer_id']} (request {record['request_id']}, "
          f"by {record['requested_by']}) on {settings.topic(topics.CUSTOMER_ERASURE).name}, and its redacted profile "
          f"on {settings.topic(topics.CUSTOMER_PROFILE).name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
