"""TEST-ONLY fault injection for the services process. Never enable it in production.

This is the one fault seam of the services: nothing else in pantheon/ kills,
stalls or corrupts on request. It is off by default. Only when the services
start with `PANTHEON_FAULT_INJECTION=1` (`ServiceSettings.fault_injection`)
does pantheon/server.py call `install`, which arms it and says so in a
WARNING line at start-up. `scripts/stack` never sets the variable; only a
caller that passes it in its own environment (the reliability scenarios, on
their private stacks) gets it. Every other fault variable is ignored without
it, so a stray one in a deployment's environment does nothing.

What it arms:

- SIGUSR1 makes the Kafka publisher act as if librdkafka had just reported
  a fatal idempotent-producer error (`KafkaPublisher.inject_fatal_error`).
  A real fatal error cannot be caused on demand against a healthy broker,
  and the recovery path (refuse, retire the dead producer, fail its waiting
  calls, create a new one) must still be exercised in the running process,
  under load, through the public API.
- With `PANTHEON_FAULT_CRASH_BEFORE_PUBLISH=1` as well
  (`ServiceSettings.crash_before_publish`), the crash point `AFTER_STORE`:
  the process exits (status 70) right after an object is stored and before
  its events are published, the one moment the reconciler and a resumed
  retry exist for. `crash_point` is the hook in the ingest pipeline; unarmed
  it returns at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from pantheon.events.producer import EventPublisher, KafkaPublisher

log = logging.getLogger(__name__)

#: The variable that arms fault injection (exactly "1"); without it nothing here does anything.
ENV = "PANTHEON_FAULT_INJECTION"
#: With ENV=1, exactly "1" arms the crash point AFTER_STORE.
CRASH_ENV = "PANTHEON_FAULT_CRASH_BEFORE_PUBLISH"

#: Between the store and the publish of an ingest (pantheon/ingest/pipeline.py).
AFTER_STORE = "after_store"
#: The exit status of an injected crash (EX_SOFTWARE).
CRASH_STATUS = 70

#: The crash points armed at start; empty unless `install` armed one.
_crash_points: frozenset[str] = frozenset()


def install(publisher: EventPublisher, *, crash_after_store: bool = False) -> None:
    """Arm the faults: SIGUSR1 → a fatal producer error in `publisher`, and the
    crash point AFTER_STORE when `crash_after_store`. Call on the running loop,
    and only when `PANTHEON_FAULT_INJECTION=1`."""
    global _crash_points
    armed = []
    if crash_after_store:
        _crash_points = frozenset({AFTER_STORE})
        armed.append(f"the process exits after a store, before its publish ({CRASH_ENV}=1)")
    if isinstance(publisher, KafkaPublisher):
        # The handler runs as a loop callback, not inside the raw signal handler:
        # inject_fatal_error takes the publisher's lock, which a signal arriving
        # while this thread holds it would otherwise deadlock on.
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, _inject, publisher)
        armed.append("SIGUSR1 kills the Kafka producer with a fatal error")
    else:
        log.error("fault injection: %s=1 but the publisher is not a KafkaPublisher; SIGUSR1 not armed", ENV)
    if armed:
        log.warning("FAULT INJECTION ENABLED (%s=1, test stacks only): %s", ENV, "; ".join(armed))


def crash_point(name: str) -> None:
    """Exit the process here if the crash point `name` was armed at start; else nothing."""
    if name in _crash_points:
        log.error("fault injection: crash point %s reached, exiting with status %d", name, CRASH_STATUS)
        os._exit(CRASH_STATUS)


def _inject(publisher: KafkaPublisher) -> None:
    log.error("fault injection: SIGUSR1 received, injecting a fatal Kafka producer error")
    publisher.inject_fatal_error(f"injected by SIGUSR1 ({ENV}=1)")
