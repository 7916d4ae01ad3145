"""minio-py's private request layer, pinned (pantheon/storage/minio_calls.py).

The adapter calls private minio-py methods because the public API cannot
send conditional writes or run a multipart upload part by part. Nothing
guarantees private methods across releases, so these tests make a minio-py
upgrade fail here, loudly: the private methods still exist and take what
we pass, each adapter function still sends exactly the S3 request we mean,
and no other module calls a private minio-py method. The S3 object store
is checked on top, through the same fake HTTP client: the requests of a
conditional PUT, of a multipart upload and of its abort. No network: a
urllib3 PoolManager that records requests and answers from a script.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import io
import re
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import urllib3
from minio import Minio
from minio.error import S3Error, ServerError

from pantheon.config import S3Settings
from pantheon.errors import AlreadyExists, Unavailable
from pantheon.storage import minio_calls
from pantheon.storage.object_store import PreconditionFailed
from pantheon.storage.quorum import WriteQuorum
from pantheon.storage.s3 import S3ObjectStore

ROOT = Path(__file__).resolve().parents[2]
XML = {"Content-Type": "application/xml"}


@dataclass
class Sent:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes


Answer = Callable[[Sent], urllib3.HTTPResponse]


def response(status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> urllib3.HTTPResponse:
    # From a file, as from a socket: an empty body reads as b"", not None.
    return urllib3.HTTPResponse(
        body=io.BytesIO(body), headers=headers or {}, status=status, preload_content=True
    )


def ok(headers: dict[str, str] | None = None, body: bytes = b"") -> urllib3.HTTPResponse:
    return response(200, headers, body)


def s3_error(status: int, code: str) -> urllib3.HTTPResponse:
    return response(status, XML, f"<Error><Code>{code}</Code><Message>m</Message></Error>".encode())


@dataclass
class FakeHTTP(urllib3.PoolManager):
    """Records every request minio-py makes; `answer` builds each response."""

    answer: Answer = field(default=lambda sent: ok())
    sent: list[Sent] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    def urlopen(self, method: str, url: str, redirect: bool = True, **kw: Any) -> urllib3.HTTPResponse:  # type: ignore[override]
        parts = urlsplit(url)
        headers = {k.lower(): v for k, v in (kw.get("headers") or {}).items()}
        sent = Sent(
            method,
            parts.path,
            dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers,
            kw.get("body") or b"",
        )
        self.sent.append(sent)
        return self.answer(sent)


def client(http: FakeHTTP) -> Minio:
    return minio_calls.Client(
        "s3.test:9000", access_key="a", secret_key="s", secure=True, region="us-east-1", http_client=http
    )


# -- the private methods, as the adapter calls them -------------------------------------


#: Per private method: the leading parameters (we pass these positionally),
#: and the keyword parameters we pass by name.
PRIVATE = {
    "_put_object": (["self", "bucket_name", "object_name", "data", "headers"], []),
    "_create_multipart_upload": (["self", "bucket_name", "object_name", "headers"], []),
    "_upload_part": (
        ["self", "bucket_name", "object_name", "data", "headers", "upload_id", "part_number"],
        [],
    ),
    "_execute": (["self", "method", "bucket_name", "object_name"], ["body", "headers", "query_params"]),
    "_abort_multipart_upload": (["self", "bucket_name", "object_name", "upload_id"], []),
    # Overridden by minio_calls.Client (called by minio-py itself, with these).
    "_build_headers": (["self", "host", "headers", "body", "creds"], []),
}


@pytest.mark.parametrize("name", sorted(PRIVATE))
def test_the_private_methods_take_what_the_adapter_passes(name: str) -> None:
    leading, keywords = PRIVATE[name]
    method = getattr(Minio, name, None)
    assert callable(method), f"minio-py no longer has Minio.{name}: update pantheon/storage/minio_calls.py"
    parameters = inspect.signature(method).parameters
    assert list(parameters)[: len(leading)] == leading, f"Minio.{name}{inspect.signature(method)}"
    assert set(keywords) <= set(parameters), f"Minio.{name}{inspect.signature(method)}"
    required = [p for p in parameters.values() if p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD]
    assert [p.name for p in required] == leading[: len(required)], f"Minio.{name} requires more than we pass"


def test_no_module_but_the_adapter_calls_a_private_minio_method() -> None:
    private = sorted(n for n in vars(Minio) if n.startswith("_") and not n.startswith("__"))
    # Called on a Minio client (`self._client._put_object(...)`, `client._execute(...)`).
    call = re.compile(r"(?i:client|minio)\.(" + "|".join(map(re.escape, private)) + r")\b")
    adapter = ROOT / "pantheon/storage/minio_calls.py"
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for package in ("pantheon", "gateway")
        for path in sorted((ROOT / package).rglob("*.py"))
        if path != adapter
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if call.search(line)
    ]
    assert offenders == []


# -- the requests each adapter function sends ------------------------------------------------


def assert_checksummed(sent: Sent) -> None:
    """The body goes with its CRC32 (which the store verifies), and is not hashed with MD5."""
    crc = base64.b64encode(zlib.crc32(sent.body).to_bytes(4, "big")).decode()
    assert sent.headers["x-amz-checksum-crc32"] == crc
    assert "content-md5" not in sent.headers
    # Signed like every other header; the placeholder that spares the MD5 is gone before signing.
    signed = sent.headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    assert "x-amz-checksum-crc32" in signed and "content-md5" not in signed


def test_the_checksum_is_s3s_crc32() -> None:
    # Known values: CRC32 of nothing is 0, of "The quick brown fox..." 0x414FA339.
    assert minio_calls.crc32(b"") == "AAAAAA=="
    assert minio_calls.crc32(b"The quick brown fox jumps over the lazy dog") == "QU+jOQ=="


def test_the_store_uses_the_checksumming_client() -> None:
    settings = S3Settings(endpoint="https://127.0.0.1:9", access_key="a", secret_key="s", ca_file=None)
    assert isinstance(S3ObjectStore(settings)._client, minio_calls.Client)


def test_a_body_without_a_checksum_still_gets_minio_pys_content_md5() -> None:
    http = FakeHTTP()
    complete = [minio_calls.UploadedPart(1, "p1", "c1")]
    minio_calls.complete_multipart_upload_if_absent(client(http), "b", "k", "U1", complete)
    (sent,) = http.sent
    assert sent.headers["content-md5"] == base64.b64encode(hashlib.md5(sent.body).digest()).decode()


def test_put_object_sends_the_conditions_as_headers_not_as_metadata() -> None:
    http = FakeHTTP(
        lambda s: ok({"ETag": '"e1"', "x-amz-version-id": "v1", "x-amz-server-side-encryption": "AES256"})
    )
    headers = {
        "Content-Type": "text/csv",
        "X-Amz-Server-Side-Encryption": "AES256",
        "X-Amz-Meta-Sha256": "abc",
        "If-None-Match": "*",
    }
    given = dict(headers)
    result = minio_calls.put_object(client(http), "b", "k/1", b"data", headers)
    assert headers == given  # minio-py fills in a copy
    (sent,) = http.sent
    assert (sent.method, sent.path, sent.query, sent.body) == ("PUT", "/b/k/1", {}, b"data")
    assert sent.headers["if-none-match"] == "*"
    assert sent.headers["content-type"] == "text/csv"
    assert sent.headers["x-amz-server-side-encryption"] == "AES256"
    assert sent.headers["x-amz-meta-sha256"] == "abc"
    assert not [h for h in sent.headers if h.startswith("x-amz-meta-if")]
    assert_checksummed(sent)
    assert (result.etag, result.version_id) == ("e1", "v1")
    assert result.http_headers["x-amz-server-side-encryption"] == "AES256"


def test_put_object_sends_if_match() -> None:
    http = FakeHTTP()
    minio_calls.put_object(client(http), "b", "k", b"x", {"If-Match": '"e1"'})
    assert http.sent[0].headers["if-match"] == '"e1"'


def test_a_refused_condition_is_an_s3_error() -> None:
    http = FakeHTTP(lambda s: s3_error(412, "PreconditionFailed"))
    with pytest.raises(S3Error) as caught:
        minio_calls.put_object(client(http), "b", "k", b"x", {"If-None-Match": "*"})
    assert caught.value.code == "PreconditionFailed"


def test_create_multipart_upload() -> None:
    body = b"<InitiateMultipartUploadResult><UploadId>U1</UploadId></InitiateMultipartUploadResult>"
    http = FakeHTTP(lambda s: ok(XML, body))
    headers = {"Content-Type": "text/csv", "X-Amz-Server-Side-Encryption": "AES256", "X-Amz-Meta-A": "1"}
    assert minio_calls.create_multipart_upload(client(http), "b", "k", headers) == "U1"
    (sent,) = http.sent
    assert (sent.method, sent.path, sent.query) == ("POST", "/b/k", {"uploads": ""})
    assert sent.headers["content-type"] == "text/csv"
    assert sent.headers["x-amz-server-side-encryption"] == "AES256"
    assert sent.headers["x-amz-meta-a"] == "1"
    # Parts carry their CRC32, so the upload declares it (S3 refuses them otherwise).
    assert sent.headers["x-amz-checksum-algorithm"] == "CRC32"
    assert "if-none-match" not in sent.headers


def test_upload_part() -> None:
    http = FakeHTTP(lambda s: ok({"ETag": '"p2"'}))
    part = minio_calls.upload_part(client(http), "b", "k", "U1", 2, b"part two")
    assert part == minio_calls.UploadedPart(2, "p2", minio_calls.crc32(b"part two"))
    (sent,) = http.sent
    assert (sent.method, sent.path, sent.query, sent.body) == (
        "PUT",
        "/b/k",
        {"partNumber": "2", "uploadId": "U1"},
        b"part two",
    )
    assert "x-amz-server-side-encryption" not in sent.headers  # given once, on create
    assert_checksummed(sent)


def test_complete_multipart_upload_if_absent() -> None:
    http = FakeHTTP(
        lambda s: ok({"ETag": '"e-2"', "x-amz-version-id": "v9", "x-amz-server-side-encryption": "AES256"})
    )
    parts = [minio_calls.UploadedPart(1, "p1", "c1"), minio_calls.UploadedPart(2, "p2", "c2")]
    result = minio_calls.complete_multipart_upload_if_absent(client(http), "b", "k", "U1", parts)
    (sent,) = http.sent
    assert (sent.method, sent.path, sent.query) == ("POST", "/b/k", {"uploadId": "U1"})
    assert sent.headers["if-none-match"] == "*"
    assert sent.headers["content-type"] == "application/xml"
    assert sent.body == (
        b"<CompleteMultipartUpload>"
        b'<Part><PartNumber>1</PartNumber><ETag>"p1"</ETag><ChecksumCRC32>c1</ChecksumCRC32></Part>'
        b'<Part><PartNumber>2</PartNumber><ETag>"p2"</ETag><ChecksumCRC32>c2</ChecksumCRC32></Part>'
        b"</CompleteMultipartUpload>"
    )
    assert (result.etag, result.version_id) == ("e-2", "v9")
    assert result.http_headers["x-amz-server-side-encryption"] == "AES256"


def test_a_completion_that_fails_inside_a_200_is_an_error() -> None:
    http = FakeHTTP(lambda s: ok(XML, b"<Error><Code>InternalError</Code></Error>"))
    with pytest.raises(ServerError):
        minio_calls.complete_multipart_upload_if_absent(
            client(http), "b", "k", "U1", [minio_calls.UploadedPart(1, "p1", "c1")]
        )


def test_abort_multipart_upload() -> None:
    http = FakeHTTP(lambda s: response(204))
    minio_calls.abort_multipart_upload(client(http), "b", "k", "U1")
    (sent,) = http.sent
    assert (sent.method, sent.path, sent.query) == ("DELETE", "/b/k", {"uploadId": "U1"})


# -- the S3 object store on top ---------------------------------------------------------------

PART = 5 * 2**20  # the smallest part S3 takes, and the store's floor


def quorum(status: int) -> WriteQuorum:
    """A write gate whose cluster always answers `status`."""

    async def fetch() -> int:
        return status

    return WriteQuorum(fetch)


def store_on(http: FakeHTTP, gate: WriteQuorum | None = None) -> S3ObjectStore:
    settings = S3Settings(
        endpoint="https://s3.test:9000", access_key="a", secret_key="s", ca_file=None, part_size=PART
    )
    store = S3ObjectStore(settings, gate or quorum(200))
    store._client = client(http)
    return store


def multipart(complete: Callable[[Sent], urllib3.HTTPResponse] | None = None) -> Answer:
    def answer(sent: Sent) -> urllib3.HTTPResponse:
        if sent.method == "POST" and "uploads" in sent.query:
            return ok(
                XML, b"<InitiateMultipartUploadResult><UploadId>U1</UploadId></InitiateMultipartUploadResult>"
            )
        if sent.method == "PUT":
            return ok({"ETag": f'"p{sent.query["partNumber"]}"'})
        if sent.method == "POST":
            return (
                complete(sent)
                if complete
                else ok({"ETag": '"e-3"', "x-amz-server-side-encryption": "AES256"})
            )
        return response(204)

    return answer


async def chunks(data: bytes, size: int = 2**20) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_put_bytes_if_absent_and_if_match() -> None:
    http = FakeHTTP(lambda s: ok({"ETag": '"e1"'}))
    store = store_on(http)
    stored = await store.put_bytes("b", "k", b"abc", if_absent=True)
    assert (stored.etag, stored.size, stored.sha256) == ("e1", 3, hashlib.sha256(b"abc").hexdigest())
    await store.put_bytes("b", "k", b"abc", if_absent=False, if_match="e1")
    first, second = http.sent
    assert first.headers["if-none-match"] == "*" and "if-match" not in first.headers
    assert second.headers["if-match"] == '"e1"' and "if-none-match" not in second.headers
    assert first.headers["x-amz-server-side-encryption"] == "AES256"


async def test_refused_conditions_keep_their_meaning() -> None:
    store = store_on(FakeHTTP(lambda s: s3_error(412, "PreconditionFailed")))
    with pytest.raises(AlreadyExists):
        await store.put_bytes("b", "k", b"abc", if_absent=True)
    with pytest.raises(PreconditionFailed):
        await store.put_bytes("b", "k", b"abc", if_absent=False, if_match="e1")


async def test_a_large_stream_is_a_conditional_multipart_upload() -> None:
    http = FakeHTTP(multipart())
    data = bytes(range(256)) * (11 * 2**20 // 256)  # 11 MiB: parts of 5, 5 and 1 MiB
    stored = await store_on(http).put_stream("b", "k", chunks(data), "text/csv", {"sha256": "x"})
    create, *parts, complete = http.sent
    assert (create.method, create.query) == ("POST", {"uploads": ""})
    # Two parts may be in flight at once: they may reach the store in any order.
    parts.sort(key=lambda p: int(p.query["partNumber"]))
    assert [(p.method, p.query) for p in parts] == [
        ("PUT", {"partNumber": str(n), "uploadId": "U1"}) for n in (1, 2, 3)
    ]
    assert [len(p.body) for p in parts] == [PART, PART, len(data) - 2 * PART]
    assert (complete.method, complete.query) == ("POST", {"uploadId": "U1"})
    assert b'<PartNumber>3</PartNumber><ETag>"p3"</ETag>' in complete.body
    assert create.headers["x-amz-meta-sha256"] == "x" and create.headers["content-type"] == "text/csv"
    assert b"".join(p.body for p in parts) == data
    assert complete.headers["if-none-match"] == "*"
    assert (stored.size, stored.etag, stored.encryption) == (len(data), "e-3", "AES256")
    assert stored.sha256 == hashlib.sha256(data).hexdigest()


async def test_a_part_is_read_only_once_the_part_before_the_last_is_sent() -> None:
    read = 0  # chunks of 1 MiB the store has taken from the stream
    seen: list[tuple[int, int]] = []  # (part number, chunks read when its PUT was sent)

    async def counted(data: bytes) -> AsyncIterator[bytes]:
        nonlocal read
        async for chunk in chunks(data):
            read += 1
            yield chunk

    def answer(sent: Sent) -> urllib3.HTTPResponse:
        if sent.method == "PUT":
            seen.append((int(sent.query["partNumber"]), read))
        return multipart()(sent)

    data = b"x" * (6 * PART + 2**20)  # 31 MiB: six parts of 5 MiB and one of 1
    await store_on(FakeHTTP(answer)).put_stream("b", "k", counted(data), "text/csv", {})
    # Two parts may be in flight (n-1 and n), but part n+1 is read only once
    # part n-1 is sent: when part n is sent, at most part n+1 has been read
    # (5 chunks a part), so no part is read and left waiting while the store is slow.
    assert sorted(n for n, _ in seen) == [1, 2, 3, 4, 5, 6, 7]
    assert all(chunks_read <= 5 * (n + 1) for n, chunks_read in seen), seen


class Forgetful(FakeHTTP):
    """A FakeHTTP that keeps no request body, so a test can measure what the store holds."""

    def urlopen(self, method: str, url: str, redirect: bool = True, **kw: Any) -> urllib3.HTTPResponse:  # type: ignore[override]
        return super().urlopen(method, url, redirect, **{**kw, "body": b""})


async def test_an_upload_of_any_size_holds_about_two_parts() -> None:
    async def fresh(parts: int) -> AsyncIterator[bytes]:
        for _ in range(parts * 5):
            yield bytes(2**20)  # a new 1 MiB chunk, as the network gives them

    tracemalloc.start()
    try:
        await store_on(Forgetful(multipart())).put_stream("b", "k", fresh(8), "text/csv", {})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The part being sent, the next one's chunks and their join: three parts
    # at the worst moment. Holding a third part besides, or keeping the first
    # two for the whole upload, comes to four or five.
    assert peak < 3.5 * PART, peak / 2**20


async def test_writes_are_refused_without_a_request_while_the_cluster_has_no_write_quorum() -> None:
    http = FakeHTTP(lambda s: ok({"ETag": '"e1"', "Content-Length": "3"}, b"abc"))
    gate = quorum(503)
    await gate.refresh()
    store = store_on(http, gate)
    for write in (
        store.put_bytes("b", "k", b"abc", if_absent=True),
        store.put_stream("b", "k", chunks(b"abc"), "text/csv", {}),
        store.delete("b", "k"),
    ):
        with pytest.raises(Unavailable) as refused:
            await write
        assert refused.value.reason == "store_degraded"
    assert http.sent == []
    # Reads are not gated.
    await store.get_bytes("bucket", "k")
    assert [s.method for s in http.sent] == ["GET"]


async def test_a_multipart_upload_that_loses_the_race_is_aborted() -> None:
    http = FakeHTTP(multipart(complete=lambda s: s3_error(412, "PreconditionFailed")))
    with pytest.raises(AlreadyExists):
        await store_on(http).put_stream("b", "k", chunks(b"z" * (6 * 2**20)), "text/csv", {})
    assert (http.sent[-1].method, http.sent[-1].query) == ("DELETE", {"uploadId": "U1"})
