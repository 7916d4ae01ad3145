"""A minute of seeded random faults under a mixed workload: the checker finds nothing lost,
duplicated, out of order, unannounced or orphaned (see chaos.py for the definitions)."""

from __future__ import annotations

import sys

import pytest

from tests.reliability import chaos
from tests.reliability.stack import PrivateStack

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def log(message: str) -> None:
    print(message, file=sys.stderr)


# A stack start, the minute, the clients' last retries, the reconciler's time and the check.
@pytest.mark.timeout(480)
def test_a_minute_of_random_faults_loses_and_duplicates_nothing(private_stack: PrivateStack) -> None:
    row, schedule = chaos.run(private_stack, seconds=60, seed=1, log=log)
    assert not chaos.failed(row), (row, row.notes)
    assert row.acknowledged > 0 and row.stored == row.distinct_events, row
    # The faults really happened and really hit requests.
    assert len(schedule) >= 3, schedule
    assert not [f for f in schedule if f.error], schedule
    assert row.notes["retried"] >= 1, row.notes
