"""Run the fault scenarios on a private stack and print the reliability table.

scripts/reliability            full sizes (10,000 records through a Kafka kill)
scripts/reliability --json     the same rows as a JSON list
scripts/reliability --records 2000 --only kafka,crash
scripts/reliability --only keyless-crash,producer-fatal,consumer-dlq-down,lease-takeover --verbose

Exit status 1 if anything acknowledged was lost, duplicated or out of order,
or a stored object was left unannounced or orphaned.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from tests.reliability import scenarios
from tests.reliability.stack import PrivateStack

COLUMNS = (
    "scenario",
    "sent",
    "acknowledged",
    "stored",
    "distinct_events",
    "lost",
    "duplicated",
    "out_of_order",
    "unannounced",
    "orphaned",
)
HEADINGS = (
    "scenario",
    "sent",
    "acknowledged",
    "stored",
    "distinct events",
    "lost",
    "duplicated",
    "wrong order",
    "unannounced",
    "orphaned",
)


def table(rows: list[scenarios.Row], unavailability: bool = False) -> str:
    """A Markdown table of `rows`; with `unavailability`, the HA scenarios' extra column."""
    columns = (*COLUMNS, "unavailable_s") if unavailability else COLUMNS
    headings = (*HEADINGS, "longest unavailability (s)") if unavailability else HEADINGS
    cells = [headings] + [tuple(str(r.as_dict()[c]) for c in columns) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = []
    for n, row in enumerate(cells):
        lines.append(
            "| "
            + " | ".join(
                v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths, strict=True))
            )
            + " |"
        )
        if n == 0:
            lines.append("| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", action="store_true", help="print the rows as a JSON list")
    parser.add_argument("--records", type=int, default=10_000, help="records in the Kafka-kill ingest")
    parser.add_argument("--batch", type=int, default=100, help="records per request")
    parser.add_argument("--load", type=int, default=200, help="requests in the gateway-restart scenario")
    parser.add_argument("--only", default=",".join(scenarios.SCENARIOS), help="comma-separated scenarios")
    parser.add_argument("--verbose", action="store_true", help="print each scenario's notes to stderr")
    args = parser.parse_args(argv)
    sizes = {
        "kafka": {"records": args.records, "batch": args.batch},
        "gateway": {"requests": args.load},
    }
    rows: list[scenarios.Row] = []
    with tempfile.TemporaryDirectory(prefix="pantheon-reliability-") as tmp:
        stack = PrivateStack.create(Path(tmp) / "stack")
        print(f"starting a private stack in {tmp} ...", file=sys.stderr)
        try:
            stack.up()
            for name in args.only.split(","):
                started = time.monotonic()
                print(f"scenario {name} ...", file=sys.stderr)
                row = scenarios.SCENARIOS[name](stack, **sizes.get(name, {}))
                print(f"  {time.monotonic() - started:.1f}s", file=sys.stderr)
                if args.verbose:
                    print(f"  notes: {row.notes}", file=sys.stderr)
                rows.append(row)
        finally:
            stack.down()
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
    else:
        print(table(rows))
    # A scenario whose client errors are the fault itself (keyless crash) acknowledges nothing.
    bad = [
        r
        for r in rows
        if r.lost
        or r.duplicated
        or r.out_of_order
        or r.unannounced
        or r.orphaned
        or (r.acknowledged != r.sent and not r.notes.get("client_errors_expected"))
    ]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
