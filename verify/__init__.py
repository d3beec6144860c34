"""``make verify`` / ``python -m verify``: prove a running stack end to end with one probe customer
(``verify.follow``)."""
