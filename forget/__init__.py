"""Forget a customer: ``python -m forget <customer_id>`` publishes an erasure request (docs/forget.md)."""
