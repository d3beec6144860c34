"""Every topic the feeder reads has a role on the insights page (a missing one was a KeyError: 500)."""

from webapp.records import FEED_TOPICS
from webapp.ui import TOPIC_ROLES


def test_every_feed_topic_has_a_role_on_the_insights_page():
    assert {t.name for t in FEED_TOPICS} <= set(TOPIC_ROLES)
