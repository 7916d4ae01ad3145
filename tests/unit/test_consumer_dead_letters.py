"""Where the consumer helper dead-letters: never RESTRICTED data on the public topic."""

from __future__ import annotations

from typing import Any

from pantheon.events.consumer import EventConsumer


def _consumer(**options: Any) -> EventConsumer:
    consumer = EventConsumer.__new__(EventConsumer)  # no Kafka: only the routing is under test
    consumer._dlq_topic = options.get("dlq_topic", "pantheon.dead-letter.v1")
    consumer._restricted_dlq_topic = options.get("restricted_dlq_topic")
    consumer._public_topics = frozenset(options.get("public_topics", ("pantheon.data-stored.v1",)))
    return consumer


def test_public_topics_dead_letter_publicly_and_everything_else_restricted() -> None:
    consumer = _consumer()
    assert consumer._dlq_for("pantheon.data-stored.v1") == "pantheon.dead-letter.v1"
    assert consumer._dlq_for("pantheon.restricted.data-stored.v1") == "pantheon.restricted.dead-letter.v1"
    # A renamed topic the consumer was not told is public is treated as restricted.
    assert consumer._dlq_for("acme.secret.data-stored.v1") == "pantheon.restricted.dead-letter.v1"


def test_renamed_dead_letter_topics_must_name_their_restricted_twin() -> None:
    consumer = _consumer(dlq_topic="acme.dlq", public_topics=("acme.events",))
    assert consumer._dlq_for("acme.events") == "acme.dlq"
    try:
        consumer._dlq_for("acme.secret")
    except ValueError:
        pass  # no restricted twin can be derived: the failure is raised, nothing is committed
    else:
        raise AssertionError("a restricted message found a public dead-letter topic")
    assert _consumer(restricted_dlq_topic="acme.secret.dlq")._dlq_for("acme.secret") == "acme.secret.dlq"
