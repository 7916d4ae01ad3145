"""Log lines: JSON when asked, always with the request id, never exception text."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pantheon import context, logs


def test_json_lines_carry_the_request_id_and_no_exception_text(tmp_path: Path) -> None:
    path = tmp_path / "services.log"
    logs.configure(str(path), logs.LogSettings(format="json"))
    token = context.request_id.set("req-123")
    try:
        raise ValueError("password=hunter2")
    except ValueError:
        logging.getLogger("pantheon.test").exception("storing failed")
    finally:
        context.request_id.reset(token)
    logging.getLogger().handlers[0].flush()
    (line,) = [json.loads(x) for x in path.read_text().splitlines()]
    assert line["request_id"] == "req-123"
    assert line["message"] == "storing failed"
    assert line["exception"] == "ValueError"
    assert "hunter2" not in path.read_text()


def test_text_lines_show_the_request_id(tmp_path: Path) -> None:
    path = tmp_path / "services.log"
    logs.configure(str(path), logs.LogSettings(format="text"))
    logging.getLogger("pantheon.test").info("hello")
    logging.getLogger().handlers[0].flush()
    assert "[-] hello" in path.read_text()
