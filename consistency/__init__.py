"""The consistency check: ksqlDB's consolidated view against gold C360, customer by customer
(``python -m consistency``; docs/consistency.md)."""
