"""Where a benchmark's CPU goes: CPU time per operation, by component.

On a small machine every process competes for the same cores, so a path's
throughput is bounded by the CPU it costs in *all* processes, not only in
Pantheon's: the S3 requests it makes cost MinIO CPU, its events cost the
broker's. This reads user + system time from /proc for the dev stack's
Kafka, MinIO, services and gateway processes (every node and replica of a
component summed; the HA profile's haproxy is not counted) and for the
benchmark itself (the client), before and after a run, and divides by the
operations done.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

from pantheon.devstack.settings import Settings

#: The components reported, in order; "client" is the benchmark process.
COMPONENTS = ("services", "gateway", "minio", "kafka", "client")

_TICKS = os.sysconf("SC_CLK_TCK")
#: How long work a run leaves behind (marker sweeps, Kafka flushes) gets to finish
#: before the run's closing snapshot, so that it is counted in this run, not the next.
SETTLE_S = 1.0


def _component(node: str) -> str:
    return node.rsplit("-", 1)[0]  # "minio-2" -> "minio"


def _process_seconds(pid: int) -> float:
    # Fields after the command name (which may hold spaces): utime is the
    # 12th, stime the 13th (proc(5)'s 14 and 15, counting from pid).
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _own_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def snapshot(settings: Settings) -> dict[str, float]:
    """CPU seconds used so far by each component's running processes."""
    used = dict.fromkeys(COMPONENTS, 0.0)
    for node, pidfile in settings.pidfiles.items():
        try:
            used[_component(node)] += _process_seconds(int(pidfile.read_text().split()[0]))
        except (OSError, ValueError):
            continue  # a node that is down costs nothing
    used["client"] = _own_seconds()
    return used


def settled(settings: Settings) -> dict[str, float]:
    """`snapshot` once the work a run left behind is done."""
    time.sleep(SETTLE_S)
    return snapshot(settings)


def per_operation(before: dict[str, float], after: dict[str, float], count: int) -> dict[str, float]:
    """Milliseconds of CPU per operation by component, between two snapshots."""
    return {c: round(1000 * (after[c] - before[c]) / max(count, 1), 2) for c in COMPONENTS}


def mean(*runs: dict[str, float]) -> dict[str, float]:
    """Per component, the mean of several runs' `per_operation`."""
    return {c: round(sum(run[c] for run in runs) / len(runs), 2) for c in COMPONENTS}
