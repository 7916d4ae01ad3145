"""Background server processes with a log file and a pidfile.

A pidfile alone is not proof: the pid may have been reused by an unrelated
process since. We only treat (and only ever signal) a pid as ours while its
/proc/<pid>/cmdline still mentions our state dir, so `down` stops exactly
what `up` started and two stacks with different state dirs never touch each
other's processes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)


def cmdline(pid: int) -> str:
    """The command line of `pid` joined by spaces ('' if gone or a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


Expect = str | tuple[str, ...]


def is_ours(pid: int, marker: str, expect: Expect = "") -> bool:
    """Whether `pid` is alive and its command line references `marker` (the state dir).

    `expect` (e.g. the main class, and a path of the one node) additionally
    guards against a reused pid that now belongs to, say, a `tail -f` on one
    of our log files, or to another node of the same stack.
    """
    line = cmdline(pid)
    expects = (expect,) if isinstance(expect, str) else expect
    return marker in line and all(e in line for e in expects)


def pids_referencing(marker: str) -> list[int]:
    """Every live process whose command line mentions `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and is_ours(int(entry.name), marker):
            found.append(int(entry.name))
    return found


def read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def running_pid(pidfile: Path, marker: str, expect: Expect = "") -> int | None:
    """The pid from `pidfile` if that process is still ours, else None."""
    pid = read_pid(pidfile)
    if pid is not None and is_ours(pid, marker, expect):
        return pid
    return None


def start(
    argv: Sequence[str],
    *,
    pidfile: Path,
    log_file: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start `argv` detached (own session, stdin closed, output to `log_file`).

    The child gets its own session so Ctrl-C in the terminal that ran `up`
    does not reach it; when `up` exits the child is re-parented to init.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
    pidfile.write_text(f"{proc.pid}\n")
    log.debug("started pid %d: %s", proc.pid, " ".join(argv))
    return proc.pid


def _gone(pid: int) -> bool:
    # Reap it if it happens to be our own child (e.g. `up` and `down` in one
    # Python process), otherwise a zombie would look alive forever.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    return cmdline(pid) == ""


def stop(pidfile: Path, marker: str, expect: Expect = "", *, timeout: float = 30.0) -> int | None:
    """Stop the process in `pidfile` if it is ours: SIGTERM, wait, then SIGKILL.

    Returns the pid that was stopped, or None if nothing of ours was running.
    The pidfile is removed either way.
    """
    pid = running_pid(pidfile, marker, expect)
    if pid is None:
        pidfile.unlink(missing_ok=True)
        return None
    log.debug("sending SIGTERM to %d", pid)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _gone(pid):
            break
        time.sleep(0.1)
    else:
        log.warning("pid %d did not exit within %.0fs; sending SIGKILL", pid, timeout)
        if is_ours(pid, marker, expect):
            os.kill(pid, signal.SIGKILL)
        kill_deadline = time.monotonic() + 10.0
        while not _gone(pid) and time.monotonic() < kill_deadline:
            time.sleep(0.05)
    pidfile.unlink(missing_ok=True)
    return pid
