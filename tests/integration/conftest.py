"""Fixtures for tests against the real dev stack (Kafka + MinIO on loopback).

`stack_env` runs `python -m pantheon.devstack up` once per session: it starts
the stack if needed and is fast when it is already running. The servers are
started by that subprocess, so they outlive the test session (stop them with
`scripts/stack down`).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from minio import Minio

from pantheon.devstack import minio_admin
from pantheon.devstack.credentials import KAFKA_INGEST_USER, KAFKA_READER_USER
from pantheon.devstack.environment import environment
from pantheon.devstack.kafka_admin import client_config

REPO_ROOT = Path(__file__).resolve().parents[2]
UP_TIMEOUT_S = 900  # a cold machine builds MinIO from source first

KafkaConfig = Callable[..., dict[str, Any]]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Everything under tests/integration needs the real stack.
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def stack_env() -> dict[str, str]:
    """Bring the shared stack up (idempotent) and return its environment."""
    result = subprocess.run(
        [sys.executable, "-m", "pantheon.devstack", "up"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=UP_TIMEOUT_S,
    )
    if result.returncode != 0:
        pytest.fail(f"scripts/stack up failed:\n{result.stderr}", pytrace=False)
    return environment()


@pytest.fixture(scope="session")
def kafka_config(stack_env: dict[str, str]) -> KafkaConfig:
    """Factory: kafka_config(user="pantheon-reader", password=None, **extra) -> config dict.

    The password defaults to the stack's password for that user.
    """
    passwords = {
        KAFKA_INGEST_USER: stack_env["PANTHEON_KAFKA_PASSWORD"],
        KAFKA_READER_USER: stack_env["KAFKA_SASL_PASSWORD"],
    }

    def make(user: str = KAFKA_READER_USER, password: str | None = None, **extra: Any) -> dict[str, Any]:
        conf = client_config(
            stack_env["KAFKA_BOOTSTRAP"],
            stack_env["PANTHEON_CA_FILE"],
            user,
            password if password is not None else passwords[user],
        )
        conf.update(extra)
        return conf

    return make


def _address(endpoint: str) -> str:
    return endpoint.removeprefix("https://")


@pytest.fixture(scope="session")
def minio_client(stack_env: dict[str, str]) -> Minio:
    """S3 client with the services' least-privilege storage key."""
    return minio_admin.s3_client(
        _address(stack_env["PANTHEON_S3_ENDPOINT"]),
        stack_env["PANTHEON_S3_ACCESS_KEY"],
        stack_env["PANTHEON_S3_SECRET_KEY"],
        Path(stack_env["PANTHEON_CA_FILE"]),
    )


@pytest.fixture(scope="session")
def minio_root_client(stack_env: dict[str, str]) -> Minio:
    """S3 client with the root credentials (test setup and cleanup only)."""
    return minio_admin.s3_client(
        _address(stack_env["MINIO_ENDPOINT"]),
        stack_env["MINIO_ROOT_USER"],
        stack_env["MINIO_ROOT_PASSWORD"],
        Path(stack_env["PANTHEON_CA_FILE"]),
    )
