"""Load the bundled demo data through the public REST API and summarise it.

Used by scripts/run: every file in scripts/demo/data/manifest.json goes in
with the `pantheon` CLI (the same commands a data provider uses), then the
events Kafka holds for what was stored are read back, and a summary with
copy-paste examples is printed. Exit status 1 if anything failed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from pantheon.events.cloudevents import decode, parse_headers
from pantheon.events.consumer import reader_config

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "scripts" / "demo" / "data"
PANTHEON = [sys.executable, "-m", "pantheon"]


def ingest(entry: dict[str, Any]) -> dict[str, Any]:
    """One manifest entry through `pantheon ingest` or `pantheon records`."""
    path = str(DATA / entry["file"])
    labels = [f"--label={k}={v}" for k, v in entry.get("labels", {}).items()]
    common = ["--data-type", entry["data_type"], "--provider", entry["provider"], *labels, "--json"]
    if entry["route"] == "records":
        argv = [*PANTHEON, "records", path, *common]
    else:
        place = [
            "--lat",
            str(entry["lat"]),
            "--lon",
            str(entry["lon"]),
            "--observed-at",
            entry["observed_at"],
        ]
        argv = [*PANTHEON, "ingest", path, *place, "--entity-id", entry["entity_id"], *common]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=ROOT)
    if done.returncode != 0:
        return {"file": entry["file"], "error": (done.stderr or done.stdout).strip()[-500:]}
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    result["file"] = entry["file"]
    return result


def events_for(ids: set[str], wait_s: float = 20.0) -> dict[str, list[str]]:
    """The event types Kafka holds for `ids` (ce_id), read from the start."""
    consumer = Consumer(
        {
            **reader_config(os.environ),
            "group.id": f"pantheon-run-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    assignment, ends = [], {}
    for topic in (os.environ["PANTHEON_EVENTS_TOPIC"], os.environ["PANTHEON_RECORDS_TOPIC"]):
        for partition in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high > low:
                assignment.append(TopicPartition(topic, partition, low))
                ends[(topic, partition)] = high
    consumer.assign(assignment)
    found: dict[str, list[str]] = {}
    deadline = time.monotonic() + wait_s
    while ends and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None or message.error() is not None:
            continue
        if message.offset() + 1 >= ends.get((message.topic(), message.partition()), 0):
            ends.pop((message.topic(), message.partition()), None)
        headers = parse_headers(message.headers())
        if headers.get("ce_id") in ids:
            attributes, _ = decode(headers, message.value() or b"")
            found.setdefault(attributes.type, []).append(attributes.id)
    consumer.close()
    return {kind: sorted(set(event_ids)) for kind, event_ids in found.items()}


def main() -> int:
    manifest = json.loads((DATA / "manifest.json").read_text())
    results = [ingest(entry) for entry in manifest]
    failed = [r for r in results if "error" in r]
    ids = {r["id"] for r in results if "id" in r}
    ids |= {x["id"] for r in results for x in r.get("results", []) if x.get("id")}
    events = events_for(ids)

    gateway = os.environ["PANTHEON_GATEWAY_URL"]
    print("\n== Pantheon is up ==")
    print(f"  REST API (HTTPS)   {gateway}   docs: {gateway}/docs")
    print(f"  gRPC services      {os.environ['PANTHEON_GRPC_TARGET']} (TLS, reflection on)")
    print(f"  Kafka (SASL_SSL)   {os.environ['KAFKA_BOOTSTRAP']}")
    print(f"  MinIO (TLS, SSE)   {os.environ['MINIO_ENDPOINT']}")
    print(f"  metrics            {gateway}/metrics   {os.environ.get('PANTHEON_METRICS_URL', '')}")
    print("\n== Demo data stored ==")
    for r in results:
        if "error" in r:
            print(f"  FAILED {r['file']}: {r['error']}")
            continue
        what = f"{r['accepted']} records" if "accepted" in r else f"{r['size']} bytes"
        again = "  (already stored, replayed)" if r.get("replayed") else ""
        print(f"  {r['file']:<34} {what:>14}  {r['bucket']}/{r['key']}{again}")
    print("\n== Events on Kafka for it ==")
    for kind, event_ids in sorted(events.items()):
        print(f"  {kind:<30} {len(event_ids):>6} events")
    expected = len(ids)
    seen = sum(len(v) for v in events.values())
    print(f"  {seen} of {expected} expected events found")
    print("\n== Try it ==")
    print('  eval "$(scripts/stack env)"')
    print(
        '  curl --cacert "$PANTHEON_CA_FILE" -H "Authorization: Bearer $PANTHEON_API_KEY" '
        '-H "Content-Type: application/json" --data \'{"pm10": 17}\' \\\n'
        '    "$PANTHEON_GATEWAY_URL/v1/objects?data_type=sensor.air_quality&lat=48.2&lon=16.37'
        '&observed_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)"'
    )
    print(
        '  curl --cacert "$PANTHEON_CA_FILE" -H "Authorization: Bearer $PANTHEON_API_KEY" '
        '"$PANTHEON_GATEWAY_URL/v1/objects?data_type=weather.observation'
        '&since=2026-07-23T00:00:00Z&until=2026-07-24T00:00:00Z"'
    )
    print("  .venv/bin/pantheon tail pantheon.records.v1 --from-beginning --max 5")
    if failed or seen < expected:
        print("\nSomething failed: see above.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
