"""Fault injection against a private stack: nothing acknowledged is lost, nothing is duplicated,
per-key order holds, and no event exists without its object (see scenarios.py for the counts)."""

from __future__ import annotations

import pytest

from tests.reliability import scenarios
from tests.reliability.stack import PrivateStack

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _clean(row: scenarios.Row) -> None:
    assert row.acknowledged == row.sent, row
    assert (row.lost, row.duplicated, row.out_of_order) == (0, 0, 0), row
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
def test_frozen_services_give_504_within_the_deadline_and_health_stays_up(
    private_stack: PrivateStack,
) -> None:
    row = scenarios.services_frozen(private_stack)
    statuses, took, deadline = row.notes["ingest"]
    assert statuses == ["504"] and took < deadline + 2, row.notes
    status, took, deadline = row.notes["read"]
    assert status == 504 and took < deadline + 2, row.notes
    health, mean_s = row.notes["healthz"]
    assert set(health) == {200} and mean_s < 0.5, row.notes
    assert row.notes["read_after"] == 200
    _clean(row)


@pytest.mark.timeout(180)
def test_gateway_restart_under_load_never_acknowledges_unstored_data(private_stack: PrivateStack) -> None:
    row = scenarios.gateway_restarted_under_load(private_stack, requests=120, workers=4)
    assert not row.notes["unexpected"], row.notes
    _clean(row)
    assert row.stored == row.distinct_events == 120, row
