"""Search page tokens, sealed: clients can neither read nor change them.

A token says where the previous page stopped (the last object key listed,
which may belong to an object the caller was not shown), the search window
(so "until now" stays fixed while a client pages), and a digest of the rest
of the filter. It is encrypted and authenticated with AES-256-GCM under the
services' token key (`PANTHEON_PAGE_TOKEN_KEY`, the same on every replica):
a token that was changed, forged, or sealed under another key does not open,
and is INVALID_ARGUMENT.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
from datetime import UTC, datetime

from Crypto.Cipher import AES
from pantheon_api.storage.v1 import storage_service_pb2 as pb

from pantheon.errors import InvalidArgument
from pantheon.metadata.naming import is_hour_prefix, parse_key
from pantheon.validation import FieldViolation

KEY_BYTES = 32
_NONCE = 12
_TAG = 16


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def _filter_digest(req: pb.SearchObjectsRequest) -> str:
    """What a continuation must repeat unchanged: everything but the window and paging."""
    plain = pb.SearchObjectsRequest()
    plain.CopyFrom(req)
    for name in ("page_token", "page_size", "observed_after", "observed_before"):
        plain.ClearField(name)
    return hashlib.sha256(plain.SerializeToString(deterministic=True)).hexdigest()[:32]


def _invalid(why: str = "invalid page_token") -> InvalidArgument:
    hint = FieldViolation("page_token", "page_token.sealed", "use next_page_token as returned, unchanged")
    return InvalidArgument(why, reason="invalid_page_token", violations=[hint])


class PageTokens:
    """Seals and opens the page tokens of SearchObjects under one key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"the page token key must be {KEY_BYTES} bytes")
        self._key = key

    def seal(self, req: pb.SearchObjectsRequest, after: datetime, before: datetime, last_key: str) -> str:
        plain = json.dumps(
            {"f": _filter_digest(req), "k": last_key, "a": after.isoformat(), "b": before.isoformat()},
            separators=(",", ":"),
        ).encode()
        nonce = secrets.token_bytes(_NONCE)
        sealed, tag = AES.new(self._key, AES.MODE_GCM, nonce=nonce).encrypt_and_digest(plain)
        return base64.urlsafe_b64encode(nonce + sealed + tag).decode().rstrip("=")

    def _open(self, token: str) -> dict[str, str]:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            if len(raw) <= _NONCE + _TAG:
                raise ValueError("short")
            nonce, sealed, tag = raw[:_NONCE], raw[_NONCE:-_TAG], raw[-_TAG:]
            plain = AES.new(self._key, AES.MODE_GCM, nonce=nonce).decrypt_and_verify(sealed, tag)
            document = json.loads(plain)
        except (ValueError, binascii.Error):
            raise _invalid() from None
        if not isinstance(document, dict) or not all(isinstance(document.get(k), str) for k in "fkab"):
            raise _invalid()
        return document

    def window_and_resume(self, req: pb.SearchObjectsRequest) -> tuple[datetime, datetime, str]:
        """The search window and the key to resume after ("" on the first page).

        A continuation may leave the window out (the token's applies) or
        repeat it; a different window or filter is a different search.
        """
        after = req.observed_after.ToDatetime(tzinfo=UTC) if req.HasField("observed_after") else None
        before = req.observed_before.ToDatetime(tzinfo=UTC) if req.HasField("observed_before") else None
        if not req.page_token:
            assert after is not None and before is not None  # the proto's rules require both
            return after, before, ""
        token = self._open(req.page_token)
        try:
            sealed_after, sealed_before = (
                datetime.fromisoformat(token["a"]),
                datetime.fromisoformat(token["b"]),
            )
            if not is_hour_prefix(token["k"]):  # a page may end at an hour it has not listed yet
                parse_key(token["k"])
        except ValueError:
            raise _invalid() from None
        if token["f"] != _filter_digest(req) or (after or sealed_after, before or sealed_before) != (
            sealed_after,
            sealed_before,
        ):
            raise _invalid("page_token belongs to a different search")
        return sealed_after, sealed_before, token["k"]
