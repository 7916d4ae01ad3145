"""`pantheon tail`: follow a topic and print its decoded events."""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from typing import Any

from google.protobuf import json_format

from pantheon.cli.settings import CliSettings
from pantheon.events import topics
from pantheon.events.consumer import EventConsumer, Received, reader_config


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "tail",
        help="follow a topic and print decoded events",
        description="Follow a Pantheon topic and print each decoded event, one per line. "
        "Uses KAFKA_BOOTSTRAP, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and PANTHEON_CA_FILE.",
        epilog="examples:\n  pantheon tail\n  pantheon tail pantheon.records.v1 --json --max 10",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("topic", nargs="?", default=topics.DATA_STORED.name, help="default: %(default)s")
    parser.add_argument("--json", action="store_true", help="print each event as one JSON object")
    parser.add_argument("--from-beginning", action="store_true", help="start at the oldest event")
    parser.add_argument("--max", type=int, default=None, help="stop after this many events")
    parser.add_argument("--idle-timeout", type=float, default=None, help="stop after this many idle seconds")
    parser.set_defaults(run=run)


def _line(event: Received, as_json: bool) -> str:
    body = json_format.MessageToDict(event.payload, preserving_proto_field_name=True)
    a = event.attributes
    if as_json:
        head = {"id": a.id, "type": a.type, "source": a.source, "time": a.time.isoformat(), "key": event.key}
        return json.dumps({**head, "data": body}, ensure_ascii=False, sort_keys=True)
    meta = body.get("metadata", {})
    where = meta.get("location", {})
    return (
        f"{a.time:%H:%M:%S} {a.type} id={a.id} key={event.key} data_type={meta.get('data_type', '-')} "
        f"at={meta.get('observed_at', '-')} "
        f"lat={where.get('latitude', '-')} lon={where.get('longitude', '-')}"
    )


def _config() -> dict[str, Any]:
    try:
        return reader_config(os.environ)
    except KeyError as exc:
        raise SystemExit(f'pantheon tail: {exc.args[0]} is not set (eval "$(scripts/stack env)")') from None


def run(args: argparse.Namespace) -> int:
    def show(event: Received) -> None:
        print(_line(event, args.json), flush=True)

    consumer = EventConsumer(
        _config(),
        # A throwaway group: tailing must not move any real consumer's offsets.
        f"pantheon-tail-{uuid.uuid4().hex[:12]}",
        [args.topic],
        show,
        dlq_topic=CliSettings.from_env().dlq_topic,
        from_beginning=args.from_beginning,
    )
    try:
        consumer.run(max_messages=args.max, idle_timeout_s=args.idle_timeout)
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    sys.stdout.flush()
    return 0
