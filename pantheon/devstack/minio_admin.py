"""Buckets, encryption, the storage policy and the storage user in MinIO.

Provisioning runs as root (the only identity that may), then the services
use `pantheon-storage`, whose policy allows object read/write and listing on
exactly Pantheon's buckets: no delete (but of pending markers), no other
bucket, no admin API.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import urllib3
from minio import Minio, MinioAdmin
from minio.credentials.providers import StaticProvider
from minio.error import MinioAdminException, S3Error
from minio.sseconfig import Rule, SSEConfig

from pantheon.devstack.credentials import MINIO_STORAGE_USER
from pantheon.storage.buckets import INDEX_BUCKET, all_buckets
from pantheon.storage.index import PENDING_PREFIX

log = logging.getLogger(__name__)

STORAGE_POLICY = "pantheon-storage"

_BUCKET_ACTIONS = ["s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads"]
_OBJECT_ACTIONS = [
    "s3:GetObject",
    "s3:PutObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
]


def http_client(ca_file: Path, timeout: float = 15.0) -> urllib3.PoolManager:
    """A urllib3 pool that verifies MinIO's certificate against the dev CA only."""
    return urllib3.PoolManager(
        cert_reqs="CERT_REQUIRED",
        ca_certs=str(ca_file),
        timeout=urllib3.Timeout(connect=5.0, read=timeout),
        # Patient, for set-up: a node that just restarted answers 503 for a
        # few seconds (HA profile). MinIO's own Retry-After (up to minutes)
        # is not waited for; the backoff is.
        retries=urllib3.Retry(
            total=8,
            backoff_factor=0.5,
            backoff_max=4.0,
            status_forcelist=(500, 502, 503, 504),
            respect_retry_after_header=False,
        ),
    )


def s3_client(address: str, access_key: str, secret_key: str, ca_file: Path) -> Minio:
    return Minio(
        address,
        access_key=access_key,
        secret_key=secret_key,
        secure=True,
        http_client=http_client(ca_file),
    )


def admin_client(address: str, access_key: str, secret_key: str, ca_file: Path) -> MinioAdmin:
    return MinioAdmin(
        endpoint=address,
        credentials=StaticProvider(access_key, secret_key),
        secure=True,
        http_client=http_client(ca_file),
    )


def storage_policy(buckets: tuple[str, ...]) -> dict[str, Any]:
    """The IAM policy of the storage key: named buckets only, no admin, and no
    delete except of pending markers (`pantheon-index/pending/*`), which the
    storage service removes once their object is announced."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": _BUCKET_ACTIONS,
                "Resource": [f"arn:aws:s3:::{b}" for b in buckets],
            },
            {
                "Effect": "Allow",
                "Action": _OBJECT_ACTIONS,
                # "/*" is the object-key part; bucket names are all literal.
                "Resource": [f"arn:aws:s3:::{b}/*" for b in buckets],
            },
            {
                "Effect": "Allow",
                "Action": ["s3:DeleteObject"],
                "Resource": [f"arn:aws:s3:::{INDEX_BUCKET}/{PENDING_PREFIX}*"],
            },
        ],
    }


def wait_iam_ready(s3: Minio, timeout: float) -> None:
    """Live is not enough: IAM may still be loading right after start."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            s3.list_buckets()
            return
        except (S3Error, urllib3.exceptions.HTTPError) as exc:
            if time.monotonic() > deadline:
                raise TimeoutError(f"MinIO does not accept root requests: {exc}") from exc
            time.sleep(0.25)


def ensure_buckets(s3: Minio) -> list[str]:
    """Create missing buckets and set SSE-S3 default encryption on all of them."""
    created = []
    for bucket in all_buckets():
        if not s3.bucket_exists(bucket):
            try:
                s3.make_bucket(bucket)
                created.append(bucket)
            except S3Error as exc:
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise
        # Setting the same config again is harmless and cheap, and repairs a
        # bucket whose encryption someone removed by hand.
        s3.set_bucket_encryption(bucket, SSEConfig(Rule.new_sse_s3_rule()))
    return created


def ensure_storage_user(admin: MinioAdmin, secret: str) -> None:
    """Upsert the policy and the user, and attach the policy if it is not yet."""
    admin.policy_add(STORAGE_POLICY, policy=storage_policy(all_buckets()))
    # user_add on an existing user just sets its secret again: idempotent.
    admin.user_add(MINIO_STORAGE_USER, secret)
    info = json.loads(admin.user_info(MINIO_STORAGE_USER))
    attached = [p for p in (info.get("policyName") or "").split(",") if p]
    if STORAGE_POLICY not in attached:
        try:
            admin.attach_policy([STORAGE_POLICY], user=MINIO_STORAGE_USER)
        except MinioAdminException as exc:
            # Raced with another `up` that attached it first.
            if "already" not in str(exc).lower():
                raise
