"""`pantheon ingest` and `pantheon records`: push files through the REST API.

Idempotency keys are derived from each file's content hash, so running the
same command again after an interruption stores nothing twice: files that
made it are answered from the first result (`replayed`), the rest go in.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import mimetypes
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pantheon.cli.rest import CliError, Gateway, problem_text, progress

#: Content types by extension, for what `mimetypes` does not know well.
TYPES = {
    ".csv": "text/csv",
    ".json": "application/json",
    ".ndjson": "application/x-ndjson",
    ".jsonl": "application/x-ndjson",
    ".geojson": "application/geo+json",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
}
SIDECAR = ".meta.json"
BLOCK = 1 << 20


def content_type(path: Path) -> str:
    return TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def content_key(path: Path, salt: str = "") -> str:
    """`sha256-<hex>` of the file (and of `salt`): the same file, the same key."""
    digest = hashlib.sha256(salt.encode())
    with path.open("rb") as f:
        while block := f.read(BLOCK):
            digest.update(block)
    return f"sha256-{digest.hexdigest()}"


def files_in(paths: list[str]) -> list[Path]:
    found: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and not p.name.endswith(SIDECAR))
        elif path.is_file():
            found.append(path)
        else:
            raise CliError(f"{name}: no such file or directory")
    return found


def _params(args: argparse.Namespace, path: Path) -> dict[str, Any]:
    """Query parameters: flags, overridden by a `<file>.meta.json` sidecar."""
    params: dict[str, Any] = {
        "data_type": args.data_type,
        "lat": args.lat,
        "lon": args.lon,
        "observed_at": args.observed_at,
        "entity_id": args.entity_id,
        "provider": args.provider,
    }
    if args.label:
        params["labels"] = ",".join(args.label)
    sidecar = path.with_name(path.name + SIDECAR)
    if sidecar.is_file():
        params.update(_sidecar(sidecar))
    if params.get("observed_at") is None:
        mtime = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        params["observed_at"] = mtime.strftime("%Y-%m-%dT%H:%M:%SZ")
    missing = [k for k in ("data_type", "lat", "lon") if params.get(k) is None]
    if missing:
        raise CliError(f"{path}: missing {', '.join(missing)} (flags or {path.name}{SIDECAR})")
    return {k: v for k, v in params.items() if v is not None}


def _sidecar(path: Path) -> dict[str, Any]:
    """A sidecar's metadata: a JSON object whose names are query parameters."""
    try:
        extra = json.loads(path.read_text())
    except (OSError, ValueError):
        raise CliError(f"{path}: not a readable JSON file") from None
    if not isinstance(extra, dict):
        raise CliError(f"{path}: must hold a JSON object of metadata")
    if isinstance(extra.get("labels"), dict):
        extra["labels"] = ",".join(f"{k}={v}" for k, v in extra["labels"].items())
    return extra


def _stream(path: Path, done: list[int], total: int, label: str) -> Iterator[bytes]:
    with path.open("rb") as f:
        while block := f.read(BLOCK):
            done[0] += len(block)
            progress(f"{label} {done[0] / 2**20:.1f}/{total / 2**20:.1f} MiB")
            yield block


def run_ingest(args: argparse.Namespace) -> int:
    files = files_in(args.paths)
    total = sum(p.stat().st_size for p in files)
    gateway = Gateway.from_env(timeout_s=600)
    done, failures = [0], 0
    try:
        for number, path in enumerate(files, 1):
            params = _params(args, path)
            # The key covers the metadata too: the same bytes sent again with
            # other metadata are a different ingest, not a replay.
            key = content_key(path, json.dumps(params, sort_keys=True))
            response = gateway.client.post(
                "/v1/objects",
                params=params,
                content=_stream(path, done, total, f"[{number}/{len(files)}]"),
                headers={"Content-Type": content_type(path), "Idempotency-Key": key[:128]},
            )
            progress("")
            if response.is_success:
                _report(args, path, response.json())
            else:
                failures += 1
                _report_error(args, path, response)
    finally:
        gateway.close()
    return 1 if failures else 0


def _report(args: argparse.Namespace, path: Path, body: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps({"file": str(path), **body}, sort_keys=True))
    else:
        state = "already stored" if body.get("replayed") else "stored"
        print(f"{path}: {state} {body['id']} {body['size']} bytes -> {body['bucket']}/{body['key']}")


def _report_error(args: argparse.Namespace, path: Path, response: Any) -> None:
    if args.json:
        print(
            json.dumps({"file": str(path), "status": response.status_code, "error": problem_text(response)})
        )
    else:
        print(f"{path}: FAILED {problem_text(response)}")


def run_records(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"{args.file}: no such file")
    kind = content_type(path)
    if kind not in ("text/csv", "application/x-ndjson"):
        raise CliError(f"{path}: records must be CSV or NDJSON (.csv, .ndjson, .jsonl)")
    gateway = Gateway.from_env()
    try:
        params: dict[str, Any] = {"data_type": args.data_type, "provider": args.provider}
        if args.label:
            params["labels"] = ",".join(args.label)
        response = gateway.client.post(
            "/v1/records",
            params={k: v for k, v in params.items() if v is not None},
            content=path.read_bytes(),
            # Keyed by content and parameters, like `ingest`.
            headers={
                "Content-Type": kind,
                "Idempotency-Key": content_key(path, json.dumps(params, sort_keys=True)),
            },
        )
        body = gateway.check(response) if response.status_code != 207 else response.json()
    finally:
        gateway.close()
    if args.json:
        print(json.dumps(body, sort_keys=True))
    else:
        again = " (already stored)" if body.get("replayed") else ""
        print(
            f"{path}: {body['accepted']} records accepted, {body['rejected']} rejected{again}"
            f" -> {body['bucket']}/{body['key']}"
        )
        for result in body["results"]:
            if result["status"] != "accepted":
                fields = ", ".join(e["field"] for e in result["errors"])
                print(f"  record {result['index']}: {result['reason']} ({fields})")
    return 0 if response.status_code in (200, 201) else 1


def add_parsers(commands: Any) -> None:
    ingest = commands.add_parser(
        "ingest",
        help="upload files and folders through the REST API",
        description="Upload files (folders recursively) as objects. Metadata comes from flags or a "
        f"sidecar file <file>{SIDECAR} with the same names as the query parameters. Safe to re-run: "
        "each upload's idempotency key is its content hash.",
        epilog="examples:\n"
        "  pantheon ingest scripts/demo/data/attica-uav-thermal.png --data-type imagery.uav \\\n"
        "      --lat 38.12 --lon 23.88 --observed-at 2026-07-23T14:20:00Z\n"
        "  pantheon ingest drone-flight-7/ --data-type imagery.uav --lat 38.1 --lon 23.9 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ingest.add_argument("paths", nargs="+", metavar="PATH")
    ingest.add_argument("--data-type", help="registered data type, such as imagery.uav")
    ingest.add_argument("--lat", type=float, help="latitude (WGS84)")
    ingest.add_argument("--lon", type=float, help="longitude (WGS84)")
    ingest.add_argument("--observed-at", help="RFC 3339 time (default: the file's modification time)")
    ingest.add_argument("--entity-id", help="device, sensor or entity")
    ingest.add_argument("--provider", help="organisation providing the data")
    ingest.add_argument("--label", action="append", metavar="K=V", help="a label (repeatable)")
    ingest.add_argument("--json", action="store_true", help="one JSON result per line")
    ingest.set_defaults(run=run_ingest)

    records = commands.add_parser(
        "records",
        help="send a CSV or NDJSON file of records as one batch",
        description="Send a batch of records: CSV with entity_id,observed_at,lat,lon[,alt] and value "
        "columns, or NDJSON with one record per line. Safe to re-run.",
        epilog="example:\n  pantheon records scripts/demo/data/vienna-street-temperature.csv \\\n"
        "      --data-type sensor.temperature",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    records.add_argument("file", metavar="FILE")
    records.add_argument("--data-type", required=True, help="registered data type of every record")
    records.add_argument("--provider", help="organisation providing the data")
    records.add_argument("--label", action="append", metavar="K=V", help="a batch label (repeatable)")
    records.add_argument("--json", action="store_true", help="print the whole response as JSON")
    records.set_defaults(run=run_records)
