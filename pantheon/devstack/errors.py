"""StackError, how a dev stack operation fails, for every module of the stack."""

from __future__ import annotations

from pathlib import Path

from pantheon.devstack.files import tail


class StackError(RuntimeError):
    """A stack operation failed; the message is meant for the user's terminal."""


def failure(what: str, exc: Exception, log_file: Path) -> StackError:
    """`what` failed with `exc`: the error, with the tail of the log that says why."""
    return StackError(
        f"{what}: {exc}\n--- last 40 lines of {log_file} ---\n{tail(log_file, 40)}\n---\n"
        "processes that did start are left running for inspection; `scripts/stack down` stops them"
    )
