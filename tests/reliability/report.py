"""Run the fault scenarios on a private stack and print the reliability table.

scripts/reliability            full sizes (10,000 records through a Kafka kill)
scripts/reliability --json     the same rows as a JSON list
scripts/reliability --records 2000 --only kafka,crash
scripts/reliability --only keyless-crash,producer-fatal,consumer-dlq-down,lease-takeover --verbose

Exit status 1 if anything acknowledged was lost, duplicated or out of order,
or a stored object was left unannounced or orphaned; also if, with the
services frozen, a 504 came more than 2 s after the gateway's deadline or
/healthz took more than 0.5 s on average (these times are printed below the
table; on stderr with --json).
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

#: With the services frozen: how much later than the gateway's deadline its 504 may come, and
#: the longest mean /healthz answer (seconds). The tests check the statuses, this the times.
LATE_S = 2.0
HEALTHZ_MEAN_S = 0.5


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


def frozen_times(row: scenarios.Row) -> tuple[str, bool]:
    """The frozen scenario's answers and their times (scenarios.services_frozen's
    notes), and whether any was late or not the answer owed (the gateway's
    own 504, and 200 from /healthz)."""
    parts, bad = [], False
    for call in ("ingest", "read"):
        attempts, took, deadline, _ = row.notes[call]
        bad = bad or took > deadline + LATE_S or attempts != ["504"]
        parts.append(f"{call} {attempts[-1]} after {took:.2f}s (deadline {deadline:g}s)")
    health, mean_s = row.notes["healthz"]
    bad = bad or mean_s > HEALTHZ_MEAN_S or set(health) != {"200"}
    parts.append(f"/healthz {','.join(sorted(set(health)))} in {mean_s:.3f}s on average")
    return "services frozen: " + ", ".join(parts) + (" -- LATE OR WRONG" if bad else ""), bad


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
    times: list[tuple[str, bool]] = []
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
                if name == "frozen":
                    times.append(frozen_times(row))
        finally:
            stack.down()
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
    else:
        print(table(rows))
    for line, _ in times:  # after the JSON, on stderr: stdout stays one JSON document
        print(line, file=sys.stderr if args.json else sys.stdout)
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
    return 1 if bad or any(late for _, late in times) else 0


if __name__ == "__main__":
    sys.exit(main())
