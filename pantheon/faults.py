"""TEST-ONLY fault injection for the services process. Never enable it in production.

Off by default. Only when the services start with `PANTHEON_FAULT_INJECTION=1`
(`ServiceSettings.fault_injection`) does `install` arm it, and it then says
so in a WARNING line at start-up. `scripts/stack` never sets the variable;
only a caller that passes it in its own environment (the reliability
scenarios, on their private stacks) gets it.

What it arms: SIGUSR1 makes the Kafka publisher act as if librdkafka had
just reported a fatal idempotent-producer error (`KafkaPublisher.
inject_fatal_error`). A real fatal error cannot be caused on demand against
a healthy broker, and the recovery path (refuse, retire the dead producer,
fail its waiting calls, create a new one) must still be exercised in the
running process, under load, through the public API.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from pantheon.events.producer import EventPublisher, KafkaPublisher

log = logging.getLogger(__name__)

#: The variable that arms fault injection (exactly "1").
ENV = "PANTHEON_FAULT_INJECTION"


def install(publisher: EventPublisher) -> None:
    """Make SIGUSR1 inject a fatal producer error into `publisher`; call on the running loop."""
    if not isinstance(publisher, KafkaPublisher):
        log.error("fault injection: %s=1 but the publisher is not a KafkaPublisher; nothing armed", ENV)
        return
    # The handler runs as a loop callback, not inside the raw signal handler:
    # inject_fatal_error takes the publisher's lock, which a signal arriving
    # while this thread holds it would otherwise deadlock on.
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, _inject, publisher)
    log.warning(
        "FAULT INJECTION ENABLED (%s=1, test stacks only): SIGUSR1 kills the Kafka producer "
        "with a fatal error",
        ENV,
    )


def _inject(publisher: KafkaPublisher) -> None:
    log.error("fault injection: SIGUSR1 received, injecting a fatal Kafka producer error")
    publisher.inject_fatal_error(f"injected by SIGUSR1 ({ENV}=1)")
