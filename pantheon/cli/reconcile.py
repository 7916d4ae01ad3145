"""`pantheon reconcile`: run one reconciler pass now (IngestionService.Reconcile)."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import grpc
from google.protobuf import json_format
from pantheon_api.ingest.v1 import ingest_service_pb2 as pb
from pantheon_api.ingest.v1 import ingest_service_pb2_grpc as pb_grpc

from pantheon.cli.errors import CliError
from pantheon.cli.settings import CliSettings
from pantheon.config import ClientIdentity
from pantheon.server import secure_channel


async def _reconcile(older_than_s: float | None) -> pb.ReconcileResponse:
    settings = CliSettings.from_env()
    target, ca_file = settings.require("grpc_target"), settings.require("ca_file")
    identity = ClientIdentity(
        cert_file=settings.require("client_cert_file"), key_file=settings.require("client_key_file")
    )
    request = pb.ReconcileRequest()
    if older_than_s is not None:
        request.older_than.FromMilliseconds(int(older_than_s * 1000))
    async with secure_channel(target, ca_file, identity, authority=settings.grpc_authority) as channel:
        try:
            response: pb.ReconcileResponse = await pb_grpc.IngestionServiceStub(channel).Reconcile(
                request, timeout=300
            )
        except grpc.aio.AioRpcError as exc:
            raise CliError(f"{exc.code().name}: {exc.details()}") from None
    return response


def run(args: argparse.Namespace) -> int:
    report = asyncio.run(_reconcile(args.older_than))
    if args.json:
        print(json.dumps(json_format.MessageToDict(report, always_print_fields_with_no_presence=True)))
    else:
        print(
            f"announced {report.announced}, discarded {report.discarded}, cleaned {report.cleaned}, "
            f"waiting {report.waiting} (oldest {report.oldest_waiting.ToTimedelta().total_seconds():.0f} s)"
        )
    return 0


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "reconcile",
        help="announce objects whose ingest call died before announcing them (one pass, now)",
        description="Run one reconciler pass in the services now: every object stored but never "
        "announced (its call crashed or failed after the store) is announced with the events its "
        "call would have published, then made visible; markers of uploads that never completed are "
        "discarded after the longest upload. The services also run this every "
        "PANTHEON_RECONCILE_INTERVAL_S seconds. Needs a mesh identity allowed to call "
        "IngestionService/Reconcile (the dev stack's dev-client is).\n\n"
        "example:\n  pantheon reconcile\n  pantheon reconcile --older-than 0 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--older-than",
        type=float,
        metavar="SECONDS",
        help="only markers at least this old (default: the services' PANTHEON_RECONCILE_AFTER_S); "
        "0 also takes calls that may still be running (harmless: event ids repeat)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(run=run)
