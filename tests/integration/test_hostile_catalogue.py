"""The hostile-input catalogue (tests/hostile_cases.py) against the real stack.

Every case is one crafted request with the demo-city key (REST) or the
dev-client identity (gRPC), and the test asserts, for its own data type:

(a) the status: one of the case's statuses, with the reason the code defines
    (never a 5xx, never a hang: every request has a client timeout of a few
    seconds, and the slow-loris cases go to a gateway of this module's own
    with 2-second slow-client timeouts);
(b) what was stored: nothing, or exactly the objects a valid input makes
    (listed with the MinIO root client under `v1/<data_type>`);
(c) what was published: nothing, or exactly the events a valid input makes,
    by kind (read from every topic, restricted ones included, as the
    `simulation-engine` Kafka user). A last sweep at the end of the module
    checks that no refused case's event arrived late.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
from minio import Minio

from pantheon.devstack.credentials import KAFKA_SIMULATION_USER
from pantheon.events.topics import ALL_TOPICS
from tests.hostile_cases import CASES, Case, Target, data_type_for, event_kind, make_seed
from tests.integration.conftest import KafkaConfig
from tests.integration.gateway_support import bucket_of, own_gateway
from tests.integration.support import EventWatcher, Seen

pytestmark = pytest.mark.timeout(120)

#: Part of every data type of this run, so reruns never see each other's objects.
RUN = uuid.uuid4().hex[:8]
#: Header and body timeouts of the slow-loris cases' own gateway.
SLOW_CLIENT_TIMEOUT_S = 2.0
#: How long a refused case waits for events that should not come (the final
#: sweep waits longer, once): events are published before a call is answered.
NO_EVENTS_WAIT_S = 0.3


@pytest.fixture(scope="module")
def target(stack_env: dict[str, str]) -> Target:
    base = Target.from_env(stack_env)
    return replace(base, seed=make_seed(base, f"sensor.hostile_seed_{RUN}"))


@pytest.fixture(scope="module")
def slow_gateway(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    timeout = str(SLOW_CLIENT_TIMEOUT_S)
    settings = {"PANTHEON_GATEWAY_BODY_TIMEOUT_S": timeout, "PANTHEON_GATEWAY_HEADER_TIMEOUT_S": timeout}
    with own_gateway(stack_env, tmp_path_factory.mktemp("slow-gateway"), **settings) as gateway:
        yield gateway.url


@pytest.fixture(scope="module")
def watcher(target: Target, stack_env: dict[str, str], kafka_config: KafkaConfig) -> Iterator[EventWatcher]:
    # Created after the seed objects, so their events are not seen. The
    # simulation user reads every topic, the restricted ones included.
    config = kafka_config(KAFKA_SIMULATION_USER, stack_env["KAFKA_SIMULATION_PASSWORD"])
    found = EventWatcher(config, [topic.name for topic in ALL_TOPICS])
    yield found
    found.close()


@pytest.fixture(scope="module")
def refused_types(watcher: EventWatcher) -> Iterator[dict[str, str]]:
    """Data type -> case, for the cases that must publish nothing; checked once more at the end."""
    refused: dict[str, str] = {}
    yield refused
    late = watcher.collect(_about(*refused), wait_s=3) if refused else []
    assert not late, "events about refused input arrived late: " + ", ".join(
        f"{refused[next(t for t in refused if e.data_type.startswith(t))]} ({e.topic})" for e in late
    )


def _about(*data_types: str) -> Callable[[Seen], bool]:
    # A prefix, so an event under a data type built from the case's (bait
    # appended to it) counts too.
    return lambda event: event.data_type.startswith(data_types)


def _stored(client: Minio, data_type: str) -> dict[str, int]:
    """Object name -> size, for everything under `v1/<data_type>` (and longer names built from it)."""
    found = client.list_objects(bucket_of(data_type), prefix=f"v1/{data_type}", recursive=True)
    return {o.object_name or "": o.size or 0 for o in found}


def _published(watcher: EventWatcher, data_type: str, expected: int) -> Counter[str]:
    """The events about `data_type`, by kind: waits for `expected`, then a moment for any extra."""
    if expected:
        watcher.collect(_about(data_type), count=expected, wait_s=15)
    found = watcher.collect(_about(data_type), wait_s=NO_EVENTS_WAIT_S)
    return Counter(event_kind(e.headers.get("ce_type", "")) for e in found)


def test_the_catalogue_has_every_class() -> None:
    assert len(CASES) >= 30
    assert {case.transport for case in CASES} == {"rest", "grpc"}
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_hostile_input(
    case: Case,
    request: pytest.FixtureRequest,
    target: Target,
    watcher: EventWatcher,
    refused_types: dict[str, str],
    minio_root_client: Minio,
) -> None:
    assert target.seed is not None
    expect = case.expect
    data_type = data_type_for(CASES.index(case), RUN)
    # Read cases store nothing of their own: what must not change is the seed's.
    scope = target.seed.data_type if case.reads_seed else data_type
    if case.slow:
        target = replace(
            target,
            slow_gateway_url=request.getfixturevalue("slow_gateway"),
            body_timeout_s=SLOW_CLIENT_TIMEOUT_S,
            header_timeout_s=SLOW_CLIENT_TIMEOUT_S,
        )
    if expect.refused:
        refused_types[scope] = case.name
    before = _stored(minio_root_client, scope)

    outcome = case.send(target, data_type)

    # (a) the status: never a 5xx or a hang; the expected 4xx and reason, or a 2xx.
    assert not outcome.unacceptable, f"{case.what}: {outcome}"
    assert outcome.status in expect.statuses, f"{case.what}: {outcome}"
    if expect.reason is not None:
        assert outcome.reason == expect.reason, f"{case.what}: {outcome}"
    if expect.rejected is not None:
        assert isinstance(outcome.body, dict) and outcome.body["rejected"] == expect.rejected, str(outcome)
    # (b) what was stored.
    new = {name: size for name, size in _stored(minio_root_client, scope).items() if name not in before}
    assert len(new) == expect.stored, f"{case.what}: stored {sorted(new)}"
    if expect.stored_max_bytes is not None:
        assert all(size <= expect.stored_max_bytes for size in new.values()), new
    # (c) what was published.
    assert _published(watcher, scope, sum(expect.events.values())) == Counter(expect.events)
