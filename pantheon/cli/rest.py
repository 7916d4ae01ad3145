"""The HTTPS client the CLI commands share: the gateway's REST API.

Reads `PANTHEON_GATEWAY_URL`, `PANTHEON_CA_FILE` and `PANTHEON_API_KEY`
through `CliSettings` (`eval "$(scripts/stack env)"` sets them for the dev stack).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import httpx

from pantheon.cli.errors import CliError
from pantheon.cli.settings import CliSettings

__all__ = ["CliError", "Gateway", "problem_text", "progress"]


@dataclass
class Gateway:
    """An authenticated HTTPS client of the REST edge."""

    client: httpx.Client

    @classmethod
    def from_env(cls, timeout_s: float = 60.0) -> Gateway:
        settings = CliSettings.from_env()
        client = httpx.Client(
            base_url=settings.require("gateway_url"),
            verify=settings.ca_file or True,
            headers={"Authorization": f"Bearer {settings.require('api_key')}"},
            timeout=httpx.Timeout(timeout_s, connect=10.0),
        )
        return cls(client)

    def check(self, response: httpx.Response) -> Any:
        """The JSON body of a successful response; a CliError otherwise."""
        if response.is_success:
            return response.json()
        raise CliError(problem_text(response))

    def close(self) -> None:
        self.client.close()


def problem_text(response: httpx.Response) -> str:
    """One readable line from a problem+json error."""
    try:
        problem = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    fields = "; ".join(f"{e.get('field')}: {e.get('description')}" for e in problem.get("errors") or [])
    detail = problem.get("detail") or problem.get("title") or ""
    line = f"HTTP {response.status_code} {problem.get('reason', '')}: {detail}"
    return f"{line} ({fields})" if fields else line


def progress(text: str) -> None:
    """A self-overwriting status line on stderr (only on a terminal)."""
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K" + text)
        sys.stderr.flush()
