"""Settings refuse bad values with one line naming the variable, and the
process entry points print that line and exit 2, never a traceback.

The hostile values are the ones an operator's typo or a broken template
produces: not a number, negative, empty, huge, infinite, not base64, a
plaintext endpoint.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.settings import GatewaySettings
from pantheon.cli.settings import CliSettings
from pantheon.config import ServiceSettings
from pantheon.devstack.variables import StackVariables
from pantheon.envconfig import ConfigError, LogSettings
from tests.unit.test_service_admission import _env as service_env

ROOT = Path(__file__).resolve().parents[2]
HUGE = "9" * 5000

SERVICE_CASES = [
    ("PANTHEON_S3_READ_TIMEOUT_S", "abc", "expected a number of seconds > 0"),
    ("PANTHEON_S3_READ_TIMEOUT_S", "-1", "expected a number of seconds > 0"),
    ("PANTHEON_S3_READ_TIMEOUT_S", "", "expected a number of seconds > 0"),
    ("PANTHEON_S3_READ_TIMEOUT_S", "1e400", "expected a number of seconds > 0"),
    ("PANTHEON_S3_READ_TIMEOUT_S", "nan", "expected a number of seconds > 0"),
    ("PANTHEON_BACKEND_DEADLINE_S", "1e9", "at most 604800"),
    ("PANTHEON_MAX_OBJECT_BYTES", HUGE, "expected a whole number from 1 to"),
    ("PANTHEON_MAX_OBJECT_BYTES", "1.5", "expected a whole number"),
    ("PANTHEON_MAX_CONCURRENT_RPCS", "0", "expected a whole number from 1"),
    ("PANTHEON_KAFKA_LINGER_MS", "-5", "expected a whole number from 0 to 900000"),
    ("PANTHEON_KAFKA_QUEUE_MAX_MESSAGES", "1e3", "expected a whole number"),
    ("PANTHEON_S3_PART_SIZE", "1024", "expected a whole number from 5242880"),
    ("PANTHEON_S3_THREADS", "", "expected a whole number"),
    ("PANTHEON_S3_ENDPOINT", "http://minio:9000", "expected an https:// URL"),
    ("PANTHEON_S3_ENDPOINT", "", "expected an https:// URL"),
    ("PANTHEON_KAFKA_BOOTSTRAP", "", "expected a non-empty value"),
    ("PANTHEON_PAGE_TOKEN_KEY", "not base64!", "expected the base64 of 32 random bytes"),
    ("PANTHEON_FAULT_INJECTION", "yes", "expected 1 (on) or 0 (off)"),
    ("PANTHEON_STORAGE_TARGET", "storage:50051", "required with PANTHEON_STORAGE_TARGET="),
]


def _one_line(message: str, variable: str) -> None:
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith(variable) or variable in message.split(":")[0], message
    assert len(message) < 300, message


@pytest.mark.parametrize(("variable", "value", "expected"), SERVICE_CASES)
def test_a_bad_service_value_is_one_line_naming_the_variable(
    variable: str, value: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        ServiceSettings.from_env(service_env(**{variable: value}))
    message = str(caught.value)
    _one_line(message, "PANTHEON_CLIENT_CERT_FILE" if variable == "PANTHEON_STORAGE_TARGET" else variable)
    assert expected in message
    if value and variable != "PANTHEON_PAGE_TOKEN_KEY":
        assert repr(value)[:30] in message  # what it got, shortened when huge
    assert len(message) < 300


def test_a_missing_value_is_named_and_secrets_are_never_echoed() -> None:
    env = service_env()
    del env["PANTHEON_KAFKA_PASSWORD"]
    with pytest.raises(ConfigError, match=r"^PANTHEON_KAFKA_PASSWORD is not set$"):
        ServiceSettings.from_env(env)
    key = "c2VjcmV0LXZhbHVlLXRoYXQtaXMtbm90LTMyLWJ5dGVz"
    with pytest.raises(ConfigError) as caught:
        ServiceSettings.from_env(service_env(PANTHEON_PAGE_TOKEN_KEY=key))
    assert key not in str(caught.value)
    assert "hunter2" not in repr(ServiceSettings.from_env(service_env(PANTHEON_KAFKA_PASSWORD="hunter2")))


def test_defaults_and_valid_values_still_read_as_before() -> None:
    settings = ServiceSettings.from_env(
        service_env(PANTHEON_S3_READ_TIMEOUT_S="2.5", PANTHEON_METRICS_LISTEN="", PANTHEON_GRPC_AUTHORITY="")
    )
    assert settings.s3.read_timeout_s == 2.5
    assert settings.metrics_listen == ""  # empty turns metrics off
    assert settings.grpc_authority is None  # empty is unset
    assert settings.s3.ca_file == "ca.pem"  # PANTHEON_CA_FILE by default
    assert ServiceSettings.from_env(service_env(PANTHEON_S3_CA_FILE="s3.pem")).s3.ca_file == "s3.pem"
    assert ServiceSettings.from_env(service_env(PANTHEON_FAULT_INJECTION="1")).fault_injection


def _gateway_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {}
    for name in (
        "CA_FILE",
        "TLS_CERT_FILE",
        "TLS_KEY_FILE",
        "API_KEYS_FILE",
        "CLIENT_CERT_FILE",
        "CLIENT_KEY_FILE",
    ):
        path = tmp_path / name.lower()
        path.write_text("placeholder")
        env[f"PANTHEON_{name}"] = str(path)
    return {**env, **extra}


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PANTHEON_GATEWAY_RATE_PER_S", "fast"),
        ("PANTHEON_GATEWAY_RATE_PER_S", "-1"),
        ("PANTHEON_GATEWAY_RATE_PER_S", "inf"),
        ("PANTHEON_GATEWAY_MAX_RECORDS", ""),
        ("PANTHEON_GATEWAY_MAX_RECORDS", HUGE),
        ("PANTHEON_GATEWAY_REPLICAS", "0"),
        ("PANTHEON_GATEWAY_READ_DEADLINE_S", "1e400"),
        ("PANTHEON_GATEWAY_LISTEN", "localhost"),
        ("PANTHEON_GATEWAY_LISTEN", "localhost:99999"),
        ("PANTHEON_GRPC_TARGET", "http://127.0.0.1:50051"),
        ("PANTHEON_GRPC_AUTHORITY", "evil.example/x"),
        ("PANTHEON_CA_FILE", "/nonexistent/ca.pem"),
        ("PANTHEON_API_KEYS_FILE", ""),
    ],
)
def test_a_bad_gateway_value_is_one_line_naming_the_variable(
    tmp_path: Path, variable: str, value: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        GatewaySettings.from_env(_gateway_env(tmp_path, **{variable: value}))
    _one_line(str(caught.value), variable)


def test_the_gateway_certificate_falls_back_to_the_services_one(tmp_path: Path) -> None:
    env = _gateway_env(tmp_path)
    assert GatewaySettings.from_env(env).tls_cert_file == env["PANTHEON_TLS_CERT_FILE"]
    own = tmp_path / "gateway.crt"
    own.write_text("placeholder")
    tuned = GatewaySettings.from_env({**env, "PANTHEON_GATEWAY_TLS_CERT_FILE": str(own)})
    assert tuned.tls_cert_file == str(own)
    blank = GatewaySettings.from_env({**env, "PANTHEON_GATEWAY_TLS_CERT_FILE": ""})
    assert blank.tls_cert_file == env["PANTHEON_TLS_CERT_FILE"]


def test_log_and_cli_settings_refuse_bad_values() -> None:
    assert LogSettings.from_env({"PANTHEON_LOG_FORMAT": "JSON"}).format == "json"
    for variable, value in (("PANTHEON_LOG_FORMAT", "xml"), ("PANTHEON_LOG_LEVEL", "loud")):
        with pytest.raises(ConfigError) as caught:
            LogSettings.from_env({variable: value})
        _one_line(str(caught.value), variable)
    with pytest.raises(ConfigError, match=r"^PANTHEON_GATEWAY_URL: expected an https:// URL"):
        CliSettings.from_env({"PANTHEON_GATEWAY_URL": "http://127.0.0.1:8443"})
    assert CliSettings.from_env({}).gateway_url is None


# -- the entry points ------------------------------------------------------------


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PANTHEON_", "MINIO_"))}
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _one_stderr_line(done: subprocess.CompletedProcess[str], *parts: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for part in parts:
        assert part in lines[0], lines[0]


@pytest.mark.slow
def test_pantheon_serve_prints_one_line_and_exits_2() -> None:
    done = _run(["-m", "pantheon", "serve"], service_env(PANTHEON_S3_READ_TIMEOUT_S="abc"))
    _one_stderr_line(
        done,
        "pantheon serve: configuration: ",
        "PANTHEON_S3_READ_TIMEOUT_S: expected a number of seconds > 0",
        "got 'abc'",
    )
    done = _run(["-m", "pantheon", "serve"], service_env(PANTHEON_LOG_FORMAT="xml"))
    _one_stderr_line(done, "PANTHEON_LOG_FORMAT: expected text or json, got 'xml'")


@pytest.mark.slow
def test_the_gateway_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    done = _run(["-m", "gateway"], _gateway_env(tmp_path, PANTHEON_GATEWAY_RATE_PER_S="-3"))
    _one_stderr_line(done, "gateway: configuration: PANTHEON_GATEWAY_RATE_PER_S: expected a rate > 0")
    done = _run(["-m", "gateway"], _gateway_env(tmp_path, PANTHEON_GRPC_TARGET="http://services:50051"))
    _one_stderr_line(done, "PANTHEON_GRPC_TARGET", "TLS is implied")


@pytest.mark.slow
def test_the_cli_prints_one_line_and_exits_2() -> None:
    done = _run(
        ["-m", "pantheon", "search", "--data-type", "weather.observation"],
        {"PANTHEON_GATEWAY_URL": "http://127.0.0.1:8443", "PANTHEON_API_KEY": "k"},
    )
    _one_stderr_line(done, "pantheon search: configuration: PANTHEON_GATEWAY_URL: expected an https:// URL")


@pytest.mark.parametrize("value", ["x", "0", "-1", "65536", "", "1e3", HUGE])
def test_a_bad_dev_stack_port_is_one_line_naming_the_variable(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        StackVariables.from_env({"PANTHEON_KAFKA_PORT": value})
    _one_line(str(caught.value), "PANTHEON_KAFKA_PORT")
    assert "expected a whole number from 1 to 65535" in str(caught.value)
