"""`scripts/bench --quick --json` runs and reports every scenario as ratios
against the raw backends (numbers are not asserted: speed is the bench's
business, not the tests')."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bench(stack_env: dict[str, str], *args: str) -> Any:
    """`scripts/bench <args> --json` against the test stack: its JSON result."""
    done = subprocess.run(
        [str(ROOT / "scripts/bench"), *args, "--json"],
        env={**os.environ, **stack_env},
        capture_output=True,
        text=True,
        timeout=280,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_quick_bench_reports_every_scenario(stack_env: dict[str, str]) -> None:
    result = _bench(stack_env, "--quick")
    names = {s["name"] for s in result["scenarios"]}
    assert names == {
        "grpc_object_64MiB",
        "rest_object_64MiB",
        "floor_grpc_object_64MiB",
        "floor_rest_object_64MiB",
        "grpc_records_1000_per_batch",
        "rest_records_1000_per_batch",
        "rest_small_x16",
        "grpc_small_x16",
        "rest_small_x64",
        "grpc_small_x64",
        "floor_small_x16",
        "floor_small_x64",
    }
    for s in result["scenarios"]:
        assert set(s) == {
            "name",
            "unit",
            "throughput",
            "raw_throughput",
            "ratio",
            "cpu_ms",
            "raw_cpu_ms",
            "raw_runs",
        }
        assert s["throughput"] > 0 and min(s["raw_runs"]) > 0
        # Against the raw runs before and after Pantheon's: their mean.
        assert s["raw_throughput"] == pytest.approx(sum(s["raw_runs"]) / 2, rel=0.01)
        assert s["ratio"] == pytest.approx(s["throughput"] / s["raw_throughput"], rel=0.02)
        if "_small_" in s["name"]:
            # Metered from the stack's own processes: the path cost the services and
            # MinIO CPU (and the gateway, for REST); the raw PUTs cost MinIO only.
            components = {"services", "gateway", "minio", "kafka", "client"}
            assert set(s["cpu_ms"]) == set(s["raw_cpu_ms"]) == components
            assert s["cpu_ms"]["minio"] > 0
            if s["name"].startswith("floor_"):
                # The design's requests, sent by the bench itself: no service in the way.
                assert s["cpu_ms"]["client"] > 0
            else:
                assert s["cpu_ms"]["services"] > 0
            if s["name"].startswith("rest_"):
                assert s["cpu_ms"]["gateway"] > 0
            assert s["raw_cpu_ms"]["minio"] > 0
        else:
            assert s["cpu_ms"] is None and s["raw_cpu_ms"] is None
    assert [figures["path"] for figures in result["latency_ms"]] == [
        "rest_small_object",
        "floor_small_ingest",
        "raw_small_put",
    ]
    # The report's shape only: how fast is the bench's business, not the test's.
    for figures in result["latency_ms"]:
        assert set(figures) == {"path", "rate_per_s", "count", "p50", "p99", "p999"}
        assert (figures["rate_per_s"], figures["count"]) == (100.0, 100)
    assert set(result["peak_rss_mib"]) == {"services", "gateway"}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_quick_search_bench_reports_every_query_and_finds_the_whole_set(stack_env: dict[str, str]) -> None:
    rows = {r["query"]: r for r in _bench(stack_env, "--only", "search", "--quick")["search"]}
    assert set(rows) == {"type", "type+source", "type+bbox", "type+time"}
    assert {(r["objects"], r["sources"]) for r in rows.values()} == {(1000, 1)}
    # Every object of the set, once a client has followed every token.
    assert rows["type"]["full_scan_found"] == rows["type+source"]["full_scan_found"] == 1000
    assert rows["type"]["first_page_found"] == 100
    assert 0 < rows["type+time"]["full_scan_found"] < 1000
    for r in rows.values():  # the timings are reported, not judged here
        assert {"first_page_ms", "raw_first_ms", "full_scan_s", "raw_full_s", "pages"} <= set(r)
