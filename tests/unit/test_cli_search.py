"""`pantheon search` follows tokens through short pages (bounded listing work per page)."""

from __future__ import annotations

import argparse
from typing import Any

import httpx
import pytest

from pantheon.cli import query
from pantheon.cli.rest import Gateway


def pages(*sizes: int) -> list[dict[str, Any]]:
    """Search pages of `sizes` objects, each but the last with a token."""
    found, n = [], 0
    for i, size in enumerate(sizes):
        objects = [{"id": f"id-{n + k}", "metadata": {}} for k in range(size)]
        n += size
        found.append({"objects": objects, "next_page_token": f"t{i}" if i < len(sizes) - 1 else None})
    return found


def run(monkeypatch: pytest.MonkeyPatch, answers: list[dict[str, Any]], **args: Any) -> list[str]:
    asked: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(dict(request.url.params))
        return httpx.Response(200, json=answers[len(asked) - 1])

    client = httpx.Client(base_url="https://gw.test", transport=httpx.MockTransport(handler))
    monkeypatch.setattr(Gateway, "from_env", classmethod(lambda cls: Gateway(client)))
    defaults = {"data_type": "sensor.x", "source": None, "since": None, "until": None, "bbox": None}
    namespace = argparse.Namespace(**{**defaults, "page_size": None, "all": False, "json": True, **args})
    assert query.run_search(namespace) == 0
    return [a.get("page_token", "") for a in asked]


def test_without_all_short_and_empty_pages_are_followed_until_a_page_s_worth(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tokens = run(monkeypatch, pages(0, 0, 2, 1, 5, 3), page_size=3)
    assert tokens == ["", "t0", "t1", "t2"]  # stops once 3 are shown
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_with_all_every_page_is_followed_and_an_empty_last_page_ends_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(monkeypatch, pages(0, 4, 0, 0), all=True, page_size=2) == ["", "t0", "t1", "t2"]
    assert len(capsys.readouterr().out.splitlines()) == 4
