"""Where the consumer helper dead-letters: never RESTRICTED data on the public topic."""

from __future__ import annotations

from typing import Any

from pantheon.events.dead_letters import DeadLetters


def _consumer(**options: Any) -> DeadLetters:
    consumer = DeadLetters.__new__(DeadLetters)  # no Kafka: only the routing is under test
    consumer._dlq_topic = options.get("dlq_topic", "pantheon.dead-letter.v1")
    consumer._restricted_dlq_topic = options.get("restricted_dlq_topic")
    consumer._public_topics = frozenset(options.get("public_topics", ("pantheon.data-stored.v1",)))
    return consumer


def test_public_topics_dead_letter_publicly_and_everything_else_restricted() -> None:
    consumer = _consumer()
    assert consumer.topic_for("pantheon.data-stored.v1") == "pantheon.dead-letter.v1"
    assert consumer.topic_for("pantheon.restricted.data-stored.v1") == "pantheon.restricted.dead-letter.v1"
    # A renamed topic the consumer was not told is public is treated as restricted.
    assert consumer.topic_for("acme.secret.data-stored.v1") == "pantheon.restricted.dead-letter.v1"


def test_renamed_dead_letter_topics_must_name_their_restricted_twin() -> None:
    consumer = _consumer(dlq_topic="acme.dlq", public_topics=("acme.events",))
    assert consumer.topic_for("acme.events") == "acme.dlq"
    try:
        consumer.topic_for("acme.secret")
    except ValueError:
        pass  # no restricted twin can be derived: the failure is raised, nothing is committed
    else:
        raise AssertionError("a restricted message found a public dead-letter topic")
    assert _consumer(restricted_dlq_topic="acme.secret.dlq").topic_for("acme.secret") == "acme.secret.dlq"
