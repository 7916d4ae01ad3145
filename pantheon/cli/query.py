"""`pantheon search` and `pantheon get`: read through the REST API."""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from pantheon.cli.rest import CliError, Gateway, problem_text
from pantheon.storage.search import DEFAULT_PAGE_SIZE


def run_search(args: argparse.Namespace) -> int:
    params = {
        "data_type": args.data_type,
        "source": args.source,
        "since": args.since,
        "until": args.until,
        "bbox": args.bbox,
        "page_size": args.page_size,
    }
    params = {k: v for k, v in params.items() if v is not None}
    gateway = Gateway.from_env()
    shown = 0
    try:
        while True:
            page = gateway.check(gateway.client.get("/v1/objects", params=params))
            for found in page.get("objects", []):
                shown += 1
                print(json.dumps(found, sort_keys=True) if args.json else _line(found))
            token = page.get("next_page_token")
            # A page may be short, even empty, and not the last (bounded
            # listing work per page): without --all, go on until a page's worth.
            if not token or (not args.all and shown >= (args.page_size or DEFAULT_PAGE_SIZE)):
                break
            params["page_token"] = token
    finally:
        gateway.close()
    if not args.json:
        print(f"{shown} object(s)", file=sys.stderr)
    return 0


def _line(found: dict[str, Any]) -> str:
    meta = found.get("metadata", {})
    where = meta.get("location", {})
    size = found.get("size", meta.get("size_bytes", "-"))
    place = f"{where.get('latitude', '-')},{where.get('longitude', '-')}"
    return (
        f"{found.get('id', meta.get('id'))}  {meta.get('observed_at', '-')}  {meta.get('source', '-')}  "
        f"{place}  {size} bytes  {found.get('key', '')}"
    )


def run_get(args: argparse.Namespace) -> int:
    gateway = Gateway.from_env(timeout_s=600)
    try:
        if args.metadata:
            print(json.dumps(gateway.check(gateway.client.get(f"/v1/objects/{args.id}/metadata")), indent=2))
            return 0
        with gateway.client.stream("GET", f"/v1/objects/{args.id}") as response:
            if not response.is_success:
                response.read()
                raise CliError(problem_text(response))
            with Path(args.output).open("wb") if args.output else nullcontext(sys.stdout.buffer) as out:
                for block in response.iter_bytes():
                    out.write(block)
        if args.output:
            print(f"wrote {args.output}", file=sys.stderr)
    finally:
        gateway.close()
    return 0


def add_parsers(commands: Any) -> None:
    search = commands.add_parser(
        "search",
        help="find objects by data type, source, time and area",
        description="Search stored objects (newest hour first). Times are RFC 3339; bbox is "
        "minLon,minLat,maxLon,maxLat. By default the last 24 hours.",
        epilog="example:\n  pantheon search --data-type sensor.temperature --since 2026-07-23T00:00:00Z "
        "--until 2026-07-24T00:00:00Z --all",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    search.add_argument("--data-type", required=True)
    search.add_argument("--source")
    search.add_argument("--since", help="observed at or after (RFC 3339)")
    search.add_argument("--until", help="observed before (RFC 3339)")
    search.add_argument("--bbox", help="minLon,minLat,maxLon,maxLat")
    search.add_argument(
        "--page-size",
        type=int,
        help=f"results a page (default {DEFAULT_PAGE_SIZE}); without --all, one page's worth is shown",
    )
    search.add_argument("--all", action="store_true", help="follow every page")
    search.add_argument("--json", action="store_true", help="one JSON object per line")
    search.set_defaults(run=run_search)

    get = commands.add_parser(
        "get",
        help="download an object (or its metadata) by id",
        epilog="examples:\n  pantheon get 01K... -o tile.png\n  pantheon get 01K... --metadata",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    get.add_argument("id", metavar="ID")
    get.add_argument("-o", "--output", help="write the bytes here (default: stdout)")
    get.add_argument("--metadata", action="store_true", help="print the metadata instead of the bytes")
    get.set_defaults(run=run_get)
