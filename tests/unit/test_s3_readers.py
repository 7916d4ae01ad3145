"""RESTRICTED objects in buckets of their own, searches over both, and the
policies of read-only S3 keys for downstream readers.

No MinIO here: the bucket choice, the storage servicer over an in-memory
store, and the reader policy as data. tests/integration/test_s3_readers.py
proves the same against the real MinIO.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pantheon_api.metadata.v1 import metadata_pb2 as md
from pantheon_api.storage.v1 import storage_service_pb2 as pb

from pantheon.cli import main
from pantheon.cli.reader_policy import (
    check_name,
    check_patterns,
    readable_resources,
    reader_policy,
    reader_scopes,
)
from pantheon.cli.rest import CliError
from pantheon.cli.s3_reader import _endpoint
from pantheon.devstack.minio_admin import storage_policy
from pantheon.metadata.ulid import new_ulid
from pantheon.policy import Grant, Rule, current_grant
from pantheon.storage import listing
from pantheon.storage.buckets import (
    DOMAINS,
    INDEX_BUCKET,
    all_buckets,
    bucket_for,
    buckets_to_search,
    is_restricted,
)
from pantheon.storage.object_store import Listing
from pantheon.storage.page_tokens import KEY_BYTES, PageTokens
from pantheon.storage.service import StorageServicer
from tests.unit.fakes import MemoryObjectStore, store_visible

UNRESTRICTED = (md.CLASSIFICATION_UNSPECIFIED, md.CLASSIFICATION_PUBLIC, md.CLASSIFICATION_INTERNAL)
S3_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")

# -- which bucket ---------------------------------------------------------------------------------


@pytest.mark.parametrize("domain", DOMAINS)
def test_restricted_data_of_every_domain_has_a_bucket_of_its_own(domain: str) -> None:
    data_type = f"{domain}.observation"
    for level in UNRESTRICTED:
        assert bucket_for(data_type, level) == f"pantheon-{domain}"
    assert bucket_for(data_type, md.CLASSIFICATION_RESTRICTED) == f"pantheon-{domain}-restricted"


def test_an_unknown_classification_fails_closed_into_the_restricted_bucket() -> None:
    assert is_restricted(99) and bucket_for("sensor.temperature", 99) == "pantheon-sensor-restricted"
    assert not any(is_restricted(level) for level in UNRESTRICTED)


def test_an_unknown_domain_has_no_bucket() -> None:
    with pytest.raises(ValueError, match="unknown data-type domain"):
        bucket_for("telemetry.x", md.CLASSIFICATION_RESTRICTED)


def test_every_bucket_is_a_distinct_valid_name_and_the_storage_key_covers_them_all() -> None:
    buckets = all_buckets()
    assert len(set(buckets)) == len(buckets) == 2 * len(DOMAINS) + 1
    assert all(S3_BUCKET_NAME.fullmatch(b) for b in buckets)
    assert {f"pantheon-{d}-restricted" for d in DOMAINS} | {INDEX_BUCKET} <= set(buckets)
    statements = storage_policy(buckets)["Statement"]
    assert all(f"arn:aws:s3:::{b}" in statements[0]["Resource"] for b in buckets)
    assert all(f"arn:aws:s3:::{b}/*" in statements[1]["Resource"] for b in buckets)


def test_only_a_restricted_grant_searches_the_restricted_bucket() -> None:
    assert buckets_to_search("weather.observation", restricted=False) == ("pantheon-weather",)
    assert buckets_to_search("weather.observation", restricted=True) == (
        "pantheon-weather",
        "pantheon-weather-restricted",
    )


# -- the storage service over both buckets ----------------------------------------------------------

DATA_TYPE = "weather.observation"
NOW = datetime.now(UTC).replace(minute=30, second=0, microsecond=0) - timedelta(hours=3)


class CountingStore(MemoryObjectStore):
    """Remembers which buckets were listed."""

    def __init__(self) -> None:
        super().__init__()
        self.listed: list[str] = []

    async def list(
        self, bucket: str, prefix: str, *, delimiter: str = "", start_after: str = "", limit: int = 1000
    ) -> Listing:
        self.listed.append(bucket)
        # Small pages, so the merge crosses page boundaries in both buckets.
        return await super().list(bucket, prefix, delimiter=delimiter, start_after=start_after, limit=2)


async def _put(servicer: StorageServicer, source: str, at: datetime, level: int) -> pb.PutObjectResponse:
    meta = md.Metadata(
        id=new_ulid(),
        data_type=DATA_TYPE,
        source=source,
        format=md.FORMAT_JSON,
        classification=level,
        location=md.GeoPoint(latitude=48.2, longitude=16.37),
    )
    meta.observed_at.FromDatetime(at)

    return await store_visible(servicer, meta, b'{"t":1}\n')


def _grant(restricted: bool) -> Grant:
    return Grant(Rule("reader", read_types=("*",), read_restricted=restricted))


async def _search_all(servicer: StorageServicer, grant: Grant, page_size: int) -> list[str]:
    request = pb.SearchObjectsRequest(data_type=DATA_TYPE, page_size=page_size)
    request.observed_after.FromDatetime(NOW - timedelta(hours=5))
    request.observed_before.FromDatetime(NOW + timedelta(hours=2))
    token = current_grant.set(grant)
    try:
        found: list[str] = []
        while True:
            page = await servicer.SearchObjects(request, None)  # type: ignore[arg-type]
            found += [o.metadata.id for o in page.objects]
            if not page.next_page_token:
                return found
            request.page_token = page.next_page_token
    finally:
        current_grant.reset(token)


@pytest.fixture
async def stored() -> tuple[StorageServicer, CountingStore, list[pb.PutObjectResponse]]:
    store = CountingStore()
    servicer = StorageServicer(store, PageTokens(b"k" * KEY_BYTES))
    plan = [
        # (source, hours ago, minutes, classification): both buckets, two hours,
        # a source with RESTRICTED data only, interleaved times.
        ("city", 0, 1, md.CLASSIFICATION_PUBLIC),
        ("city", 0, 2, md.CLASSIFICATION_RESTRICTED),
        ("city", 0, 3, md.CLASSIFICATION_INTERNAL),
        ("city", 0, 4, md.CLASSIFICATION_RESTRICTED),
        ("city", 0, 5, md.CLASSIFICATION_RESTRICTED),
        ("agency", 0, 6, md.CLASSIFICATION_UNSPECIFIED),
        ("secret-only", 0, 7, md.CLASSIFICATION_RESTRICTED),
        ("city", 1, 8, md.CLASSIFICATION_RESTRICTED),
        ("city", 1, 9, md.CLASSIFICATION_PUBLIC),
        ("agency", 1, 10, md.CLASSIFICATION_RESTRICTED),
    ]
    responses = [
        await _put(servicer, source, NOW - timedelta(hours=hours) + timedelta(minutes=minutes), level)
        for source, hours, minutes, level in plan
    ]
    return servicer, store, responses


def _page_order(responses: list[pb.PutObjectResponse]) -> list[str]:
    """Hours newest first, sources in name order, keys in key order: the order of one bucket."""

    def order(r: pb.PutObjectResponse) -> tuple[Any, ...]:
        hour = r.object.key.split("/")[3:7]
        return (tuple(-int(x) for x in hour), r.metadata.source, r.object.key)

    return [r.metadata.id for r in sorted(responses, key=order)]


async def test_restricted_objects_land_in_the_restricted_bucket(stored: Any) -> None:
    _, store, responses = stored
    for r in responses:
        restricted = r.metadata.classification == md.CLASSIFICATION_RESTRICTED
        expected = "pantheon-weather-restricted" if restricted else "pantheon-weather"
        assert r.object.bucket == expected
        assert (expected, r.object.key) in store.objects
        assert (
            "pantheon-weather" if restricted else "pantheon-weather-restricted",
            r.object.key,
        ) not in store.objects


@pytest.mark.parametrize("page_size", [1, 2, 3, 100])
async def test_a_granted_search_merges_both_buckets_in_page_order(stored: Any, page_size: int) -> None:
    servicer, _, responses = stored
    assert await _search_all(servicer, _grant(restricted=True), page_size) == _page_order(responses)


@pytest.mark.parametrize("page_size", [1, 2, 100])
async def test_a_search_without_the_grant_never_lists_the_restricted_bucket(
    stored: Any, page_size: int
) -> None:
    servicer, store, responses = stored
    store.listed.clear()
    public = [r for r in responses if r.metadata.classification != md.CLASSIFICATION_RESTRICTED]
    assert await _search_all(servicer, _grant(restricted=False), page_size) == _page_order(public)
    assert store.listed and set(store.listed) - {INDEX_BUCKET} == {"pantheon-weather"}


async def test_merged_streams_come_out_in_key_order_and_are_closed() -> None:
    closed: list[str] = []

    async def stream(name: str, keys: list[str]) -> AsyncIterator[tuple[str, bool]]:
        try:
            for key in keys:
                yield key, key != "k4"  # whether it may match travels with the key
        finally:
            closed.append(name)

    streams = [stream("a", ["k1", "k4", "k5"]), stream("b", ["k2", "k3", "k6", "k7"]), stream("c", [])]
    merged = [item async for item in listing.merged(streams)]  # type: ignore[arg-type]
    assert [k for k, _ in merged] == ["k1", "k2", "k3", "k4", "k5", "k6", "k7"]
    assert [k for k, candidate in merged if not candidate] == ["k4"]
    assert sorted(closed) == ["a", "b", "c"]
    closed.clear()
    early = listing.merged([stream("a", ["k1", "k3"]), stream("b", ["k2"])])  # type: ignore[list-item]
    assert await anext(early) == ("k1", True)
    await early.aclose()  # type: ignore[attr-defined]
    assert sorted(closed) == ["a", "b"]


# -- the policy of a reader key -------------------------------------------------------------------

ARN = "arn:aws:s3:::"


def test_a_domain_pattern_reads_and_lists_its_whole_bucket_and_nothing_else() -> None:
    assert reader_policy(["weather.*"], restricted=False) == {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["s3:GetBucketLocation"], "Resource": [ARN + "pantheon-weather"]},
            {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [ARN + "pantheon-weather"]},
            {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [ARN + "pantheon-weather/*"]},
        ],
    }


def test_an_exact_data_type_is_limited_to_its_prefix_for_reading_and_listing() -> None:
    policy = reader_policy(["sensor.air_quality"], restricted=False)
    assert policy["Statement"] == [
        {"Effect": "Allow", "Action": ["s3:GetBucketLocation"], "Resource": [ARN + "pantheon-sensor"]},
        {
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [ARN + "pantheon-sensor"],
            "Condition": {"StringLike": {"s3:prefix": ["v1/sensor.air_quality/*"]}},
        },
        {
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [ARN + "pantheon-sensor/v1/sensor.air_quality/*"],
        },
    ]


def test_patterns_combine_per_bucket_and_a_wider_one_wins() -> None:
    scopes = reader_scopes(
        ["weather.*", "sensor.air_quality", "sensor.air.*", "sensor.air.pm10", "weather.observation"],
        restricted=False,
    )
    assert scopes == {
        "pantheon-sensor": ("v1/sensor.air.", "v1/sensor.air_quality/"),
        "pantheon-weather": (),
    }


def test_star_covers_every_public_bucket_and_restricted_adds_the_twins_only() -> None:
    public = reader_scopes(["*"], restricted=False)
    assert set(public) == {f"pantheon-{d}" for d in DOMAINS} and all(p == () for p in public.values())
    both = reader_scopes(["*"], restricted=True)
    assert set(both) == set(all_buckets()) - {INDEX_BUCKET}
    twins = reader_scopes(["sensor.air_quality"], restricted=True)
    assert twins == {
        "pantheon-sensor": ("v1/sensor.air_quality/",),
        "pantheon-sensor-restricted": ("v1/sensor.air_quality/",),
    }


@pytest.mark.parametrize(
    "patterns",
    [["*"], ["weather.*"], ["sensor.air_quality", "hazard.*"], ["report.a.b.*", "imagery.uav.rgb.v2"]],
)
@pytest.mark.parametrize("restricted", [False, True])
def test_a_reader_may_only_read_list_and_locate_never_the_index(
    patterns: list[str], restricted: bool
) -> None:
    policy = reader_policy(patterns, restricted=restricted)
    actions = {a for s in policy["Statement"] for a in s["Action"]}
    assert actions == {"s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation"}
    assert all(s["Effect"] == "Allow" for s in policy["Statement"])
    resources = [r for s in policy["Statement"] for r in s["Resource"]]
    assert not any("pantheon-index" in r for r in resources)
    assert any("-restricted" in r for r in resources) is restricted
    # Every object it may read lies in a bucket it may locate.
    located = set(policy["Statement"][0]["Resource"])
    assert {r.split("/", 1)[0] for r in readable_resources(policy)} == {r.removeprefix(ARN) for r in located}


def test_the_listing_shows_what_a_policy_lets_its_key_read() -> None:
    policy = reader_policy(["weather.*", "sensor.air_quality"], restricted=True)
    assert readable_resources(policy) == [
        "pantheon-sensor-restricted/v1/sensor.air_quality/*",
        "pantheon-sensor/v1/sensor.air_quality/*",
        "pantheon-weather-restricted/*",
        "pantheon-weather/*",
    ]


@pytest.mark.parametrize("name", ["viz", "crisis-desk-2", "a1", "x" * 41])
def test_valid_reader_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["v", "Viz", "-viz", "viz_1", "viz.1", "x" * 42, "", "viz desk"])
def test_invalid_reader_names(name: str) -> None:
    with pytest.raises(CliError, match="reader name"):
        check_name(name)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "pattern '' is invalid"),
        ("weather.*,", "pattern '' is invalid"),
        ("sens*", "pattern 'sens*' is invalid"),
        ("Weather.*", "pattern 'Weather.*' is invalid"),
        ("a.b.c.d.e", "pattern 'a.b.c.d.e' is invalid"),
        ("telemetry.*", "unknown domain 'telemetry'"),
        ("weather", "matches no data type"),
        ("weather.a.b.c.*", "matches no data type"),
    ],
)
def test_invalid_patterns_are_named(text: str, message: str) -> None:
    with pytest.raises(CliError, match=re.escape(message)):
        check_patterns(text)


def test_patterns_are_kept_in_order_without_duplicates() -> None:
    assert check_patterns("weather.*, sensor.air_quality,weather.*") == ["weather.*", "sensor.air_quality"]


@pytest.mark.parametrize(
    ("value", "address"),
    [("https://minio.example:9000", "minio.example:9000"), ("127.0.0.1:9000", "127.0.0.1:9000")],
)
def test_endpoints_are_https_only(value: str, address: str) -> None:
    assert _endpoint(value) == address
    with pytest.raises(CliError, match="plain HTTP"):
        _endpoint("http://127.0.0.1:9000")
    with pytest.raises(CliError, match="not https"):
        _endpoint("https://minio.example:9000/bucket")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["s3-reader", "create", "Viz", "--data-types", "weather.*"], "reader name 'Viz' is invalid"),
        (["s3-reader", "create", "viz", "--data-types", "nope.*"], "unknown domain 'nope'"),
        (["s3-reader", "revoke", "viz_1"], "reader name 'viz_1' is invalid"),
        (["s3-reader", "list", "--endpoint", "http://127.0.0.1:1"], "plain HTTP"),
    ],
)
def test_bad_input_fails_before_any_request(
    args: list[str], message: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Port 1: a request would fail with "cannot reach", not with the input's problem.
    monkeypatch.setenv("MINIO_ENDPOINT", "https://127.0.0.1:1")
    monkeypatch.setenv("MINIO_ROOT_USER", "root")
    monkeypatch.setenv("MINIO_ROOT_PASSWORD", "unused-password")
    monkeypatch.delenv("PANTHEON_CA_FILE", raising=False)
    assert main(args) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_missing_root_credentials_are_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MINIO_ENDPOINT", "https://127.0.0.1:1")
    monkeypatch.delenv("MINIO_ROOT_USER", raising=False)
    monkeypatch.delenv("MINIO_ROOT_PASSWORD", raising=False)
    assert main(["s3-reader", "list"]) == 1
    assert "MINIO_ROOT_USER" in capsys.readouterr().err
