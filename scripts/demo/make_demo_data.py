"""Writes the bundled demo data set (deterministic; no network).

    .venv/bin/python scripts/demo/make_demo_data.py   # rewrites scripts/demo/data/

A day in a disaster season, in four files that exercise each ingest path:

- vienna-street-temperature.csv  heatwave: 20 street-level sensors in Vienna,
                                 every 15 minutes for a day (records, CSV)
- attica-weather.ndjson          wildfire: 12 weather stations around Attica,
                                 hourly (records, NDJSON)
- attica-wildfire-incident.geojson  the incident report: fire perimeter,
                                 evacuation points (object, GeoJSON)
- attica-uav-thermal.png         a UAV thermal tile over the fire front
                                 (object, PNG)

manifest.json says how each file is ingested (route, data type, place, time).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import random
import struct
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

OUT = Path(os.environ.get("PANTHEON_DEMO_OUT") or Path(__file__).resolve().parent / "data")
DAY = datetime(2026, 7, 23, tzinfo=UTC)
rng = random.Random(20260723)


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def vienna_csv() -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["entity_id", "observed_at", "lat", "lon", "temperature_c", "humidity_pct", "surface"])
    sensors = [
        (
            f"vie-temp-{i:04d}",
            48.17 + rng.random() * 0.08,
            16.31 + rng.random() * 0.12,
            rng.choice(["asphalt", "park", "courtyard"]),
        )
        for i in range(1, 21)
    ]
    for step in range(96):
        t = DAY + timedelta(minutes=15 * step)
        hour = step / 4
        base = 27 + 9 * math.sin((hour - 9) / 24 * 2 * math.pi)  # peak mid-afternoon
        for entity, lat, lon, surface in sensors:
            bonus = {"asphalt": 2.5, "park": -1.5, "courtyard": 0.5}[surface]
            temp = round(base + bonus + rng.gauss(0, 0.4), 1)
            humidity = round(max(18.0, 60 - (temp - 20) * 1.8 + rng.gauss(0, 2)), 1)
            w.writerow([entity, iso(t), f"{lat:.5f}", f"{lon:.5f}", temp, humidity, surface])
    return out.getvalue()


def attica_ndjson() -> str:
    stations = [
        (f"gr-attica-ws-{i:02d}", 37.95 + rng.random() * 0.35, 23.55 + rng.random() * 0.45)
        for i in range(1, 13)
    ]
    lines = []
    for hour in range(24):
        t = DAY + timedelta(hours=hour)
        for entity, lat, lon in stations:
            temp = round(33 + 8 * math.sin((hour - 9) / 24 * 2 * math.pi) + rng.gauss(0, 0.8), 1)
            wind = round(max(0.0, 38 + rng.gauss(0, 9)), 1)
            humidity = round(max(8.0, 22 - (temp - 30) + rng.gauss(0, 2)), 1)
            record = {
                "entity_id": entity,
                "observed_at": iso(t),
                "location": {"lat": round(lat, 5), "lon": round(lon, 5)},
                "payload": {
                    "air_temperature_c": temp,
                    "relative_humidity_pct": humidity,
                    "wind_speed_kmh": wind,
                    "wind_direction_deg": round((20 + rng.gauss(0, 15)) % 360),
                    "fire_weather_index": round(min(100.0, wind * 0.9 + (40 - humidity)), 1),
                },
            }
            lines.append(json.dumps(record, separators=(",", ":")))
    return "\n".join(lines) + "\n"


def incident_geojson() -> str:
    centre = (23.86, 38.13)  # lon, lat: north-east of Athens
    perimeter = []
    for k in range(24):
        angle = 2 * math.pi * k / 24
        radius = 0.035 + 0.01 * math.sin(3 * angle) + rng.random() * 0.004
        perimeter.append(
            [
                round(centre[0] + radius * math.cos(angle) * 1.3, 5),
                round(centre[1] + radius * math.sin(angle), 5),
            ]
        )
    perimeter.append(perimeter[0])
    doc = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [perimeter]},
                "properties": {
                    "kind": "fire_perimeter",
                    "status": "active",
                    "reported_at": iso(DAY + timedelta(hours=14)),
                },
            },
            *(
                {
                    "type": "Feature",
                    "geometry": {"type": "Point", "coordinates": list(point)},
                    "properties": {"kind": "evacuation_point", "name": name, "capacity": capacity},
                }
                for name, point, capacity in [
                    ("Marathon stadium", (23.9627, 38.1529), 2500),
                    ("Nea Makri school", (23.9769, 38.0867), 600),
                    ("Kifisia park", (23.8103, 38.0745), 1800),
                ]
            ),
        ],
    }
    return json.dumps(doc, indent=1) + "\n"


def thermal_png(size: int = 128) -> bytes:
    """A false-colour thermal tile: a hot front crossing a cooler landscape."""
    rows = bytearray()
    for y in range(size):
        rows.append(0)  # filter: none
        for x in range(size):
            front = math.exp(-(((x - y * 0.6 - 30) / 9) ** 2))
            heat = min(1.0, 0.25 + 0.75 * front + rng.random() * 0.05)
            rows += bytes([int(255 * heat), int(180 * heat * (1 - heat) * 2), int(90 * (1 - heat))])

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(rows), 9))
        + chunk(b"IEND", b"")
    )


MANIFEST = [
    {
        "file": "vienna-street-temperature.csv",
        "route": "records",
        "data_type": "sensor.temperature",
        "content_type": "text/csv",
        "provider": "City of Vienna",
        "labels": {"scenario": "heatwave"},
    },
    {
        "file": "attica-weather.ndjson",
        "route": "records",
        "data_type": "weather.observation",
        "content_type": "application/x-ndjson",
        "provider": "Hellenic National Meteorological Service",
        "labels": {"scenario": "wildfire"},
    },
    {
        "file": "attica-wildfire-incident.geojson",
        "route": "objects",
        "data_type": "report.incident",
        "content_type": "application/geo+json",
        "lat": 38.13,
        "lon": 23.86,
        "observed_at": iso(DAY + timedelta(hours=14)),
        "entity_id": "incident-2026-0723-01",
        "provider": "Hellenic Fire Service",
        "labels": {"scenario": "wildfire"},
    },
    {
        "file": "attica-uav-thermal.png",
        "route": "objects",
        "data_type": "imagery.uav",
        "content_type": "image/png",
        "lat": 38.12,
        "lon": 23.88,
        "observed_at": iso(DAY + timedelta(hours=14, minutes=20)),
        "entity_id": "uav-07",
        "provider": "Civil Protection UAV unit",
        "labels": {"scenario": "wildfire", "sensor": "thermal"},
    },
]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "vienna-street-temperature.csv").write_text(vienna_csv())
    (OUT / "attica-weather.ndjson").write_text(attica_ndjson())
    (OUT / "attica-wildfire-incident.geojson").write_text(incident_geojson())
    (OUT / "attica-uav-thermal.png").write_bytes(thermal_png())
    (OUT / "manifest.json").write_text(json.dumps(MANIFEST, indent=2) + "\n")


if __name__ == "__main__":
    main()
