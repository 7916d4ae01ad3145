"""Fault injection against a private stack: nothing acknowledged is lost, nothing is duplicated,
per-key order holds, every stored object is announced, and nothing stored is orphaned and no
event exists without its object (see scenarios.py for the counts)."""

from __future__ import annotations

import pytest

from tests.reliability import scenarios
from tests.reliability.stack import PrivateStack

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _clean(row: scenarios.Row) -> None:
    assert row.acknowledged == row.sent, row
    assert (row.lost, row.duplicated, row.out_of_order) == (0, 0, 0), row
    assert (row.unannounced, row.orphaned) == (0, 0), row
    assert row.stored == row.distinct_events or row.notes.get("objects") is not None, row


@pytest.mark.timeout(240)
def test_kafka_sigkill_during_a_records_ingest(private_stack: PrivateStack) -> None:
    row = scenarios.kafka_killed_during_records(private_stack, records=2000, batch=100)
    _clean(row)
    assert row.stored == row.distinct_events == 2000, row
    assert row.notes["batches_retried"] >= 1, "the kill did not hit any request"


@pytest.mark.timeout(180)
def test_minio_sigkill_mid_upload_and_batch(private_stack: PrivateStack) -> None:
    row = scenarios.minio_killed_during_upload(private_stack, side=8192)  # a 64 MiB TIFF
    _clean(row)
    assert row.stored == row.distinct_events == 2, row
    assert row.notes["during"][0] == 0, "something was stored while MinIO was down"
    assert row.notes["replayed"], row.notes
    batch = row.notes["first_attempts"]["batch"]
    assert batch[-1] in ("503", "504") or not batch[-1].isdigit(), batch


@pytest.mark.timeout(180)
def test_minio_down_upload_gets_503_not_500(private_stack: PrivateStack) -> None:
    row = scenarios.minio_killed_during_upload(private_stack, side=4096)
    upload = row.notes["first_attempts"]["upload"]
    assert upload[-1] in ("503", "504") or not upload[-1].isdigit(), upload
    assert "500" not in row.notes["retry_attempts"]["upload"], row.notes


@pytest.mark.timeout(180)
def test_services_crash_between_store_and_publish_is_repaired_by_the_retry(
    private_stack: PrivateStack,
) -> None:
    row = scenarios.crash_between_store_and_publish(private_stack)
    # The fault really happened: stored, not announced, the client got an error.
    assert row.notes["stored_before_retry"] == 2 and row.notes["announced_before_retry"] == 0, row.notes
    for attempts in row.notes["first_attempts"].values():
        assert not attempts[-1].startswith("2"), row.notes
    _clean(row)
    assert row.stored == row.distinct_events == 2, row
    assert row.notes["replayed"]


@pytest.mark.timeout(120)
def test_frozen_services_give_the_gateways_own_504_and_health_stays_up(
    private_stack: PrivateStack,
) -> None:
    row = scenarios.services_frozen(private_stack)
    # A 504 the gateway made when its deadline expired; a hang would be the client's own
    # timeout (HANG_FACTOR times the deadline). How long they took is scripts/reliability's.
    for call in ("ingest", "read"):
        attempts, _, _, reason = row.notes[call]
        assert attempts == ["504"] and reason == "deadline_exceeded", row.notes
    health, _ = row.notes["healthz"]
    assert set(health) == {"200"}, row.notes
    assert row.notes["read_after"] == 200
    _clean(row)


@pytest.mark.timeout(180)
def test_gateway_restart_under_load_never_acknowledges_unstored_data(private_stack: PrivateStack) -> None:
    row = scenarios.gateway_restarted_under_load(private_stack, requests=120, workers=4)
    assert not row.notes["unexpected"], row.notes
    _clean(row)
    assert row.stored == row.distinct_events == 120, row


@pytest.mark.timeout(300)
def test_keyless_calls_dying_before_publish_are_announced_by_the_reconciler(
    private_stack: PrivateStack,
) -> None:
    row = scenarios.keyless_crash(private_stack, records=20)
    # The fault really happened: the client got errors, the bytes were stored,
    # nothing was announced or visible, and each object waited under pending/.
    for attempts in row.notes["first_attempts"].values():
        assert not attempts[-1].startswith("2"), row.notes
    for before in row.notes["before_restart"].values():
        assert before == {"stored": 1, "data_stored": 0, "record_events": 0, "bound": 0, "pending": 1}, (
            row.notes
        )
    # After the restart the reconciler announced both, once, and made them visible.
    assert row.acknowledged == 0, row
    assert (row.lost, row.duplicated, row.out_of_order, row.unannounced, row.orphaned) == (0, 0, 0, 0, 0), row
    assert not row.notes["not_reconciled"], row.notes
    assert row.stored == row.distinct_events == 21, row  # the object and the 20 records
    assert row.notes["doc"]["not_visible"] == row.notes["batch"]["not_visible"] == [], row.notes
    assert row.notes["batch"]["data_stored"] == 1 and row.notes["batch"]["raw_record_events"] >= 20, row.notes


@pytest.mark.timeout(300)
def test_a_fatal_producer_error_under_load_loses_and_duplicates_nothing(private_stack: PrivateStack) -> None:
    row = scenarios.producer_fatal(private_stack, objects=60, batches=30, batch=10, workers=3, faults=2)
    # The fault really happened: both signals reached the seam and each killed a producer.
    assert row.notes["injected"] == 2 and row.notes["producers_replaced"] == 2, row.notes
    _clean(row)
    assert row.stored == row.distinct_events == 60 + 300, row


@pytest.mark.timeout(240)
def test_a_consumer_that_cannot_dead_letter_stops_and_the_group_gets_the_event_again(
    private_stack: PrivateStack,
) -> None:
    row = scenarios.consumer_dlq_down(private_stack, records=8)
    _clean(row)
    stopped = row.notes["stopped"]
    # The handler failed and the dead letter was not acknowledged: the consumer raised ...
    assert row.notes["failed_event"] is not None and stopped is not None, row.notes
    # ... without committing past the event, and the next member handled it.
    assert row.notes["committed_after_stop"] == stopped["offset"], row.notes
    assert row.notes["failed_redelivered"], row.notes
    assert row.notes["skipped"] == [], row.notes


@pytest.mark.timeout(300)
def test_a_slow_keyed_upload_keeps_its_lease_and_a_dead_one_is_taken_over(
    private_stack: PrivateStack,
) -> None:
    row = scenarios.lease_takeover(private_stack, side=2048)
    stale_s = float(private_stack.env["PANTHEON_STALE_CLAIM_S"])
    lease = row.notes["lease"]
    # Retried throughout the upload, past twice the stale-claim age: always "in progress".
    assert lease["claimed"] and lease["retries"] and max(at for at, _, _ in lease["retries"]) > 2 * stale_s, (
        lease
    )
    assert {(status, reason) for _, status, reason in lease["retries"]} == {("409", "in_progress")}, lease
    assert lease["upload"] == ["201"] and lease["replayed"] and lease["took_over"] == 0, lease
    takeover = row.notes["takeover"]
    assert takeover["claimed"] and takeover["killed"] and not takeover["dead_upload"][-1].startswith("2"), (
        takeover
    )
    assert takeover["retry"][-1] == "201" and takeover["took_over"] >= 1 and takeover["replayed"], takeover
    _clean(row)
    assert row.stored == row.distinct_events == 2, row
