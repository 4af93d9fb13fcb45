"""Run a few long-lived commands side by side and stop them all together.

`kinitro dev`, `kinitro scheduler` and `kinitro executor` start their servers with `supervise`.
Pure Python, no Dagster import.

Each service starts in its own session, so its process group holds the servers it starts in
turn (Dagster's webserver, daemon, code servers and run workers stay in their parent's group),
and a terminal's Ctrl-C reaches only the supervisor, which decides what to stop:

- SIGTERM, SIGINT or SIGHUP: every group (and any group a descendant opened with its own session, such
  as a local policy server) gets SIGTERM; what is still running after `stop_timeout_s` in total
  gets SIGKILL. A second signal while stopping kills at once. `supervise` then returns.
- A service exits on its own: the others are stopped the same way and `ServiceExited` says which.

Processes that have exited but that nobody reaps (zombies, where PID 1 does not reap orphans) count
as stopped. On systems without /proc only the services' own groups are signalled and watched.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# SIGTERM to SIGKILL. Everything is gone within ~10 s of the request, inside `docker stop`'s
# default grace; Dagster's servers need 3-7 s to shut down on a busy 2-core machine.
STOP_TIMEOUT_S = 8.0
_POLL_S = 0.1
_PROC = Path("/proc")
# SIGHUP too: in their own sessions the services no longer get the terminal's hang-up themselves.
# SIGINT and SIGHUP stay ignored where the caller ignores them (`nohup`, a script's `cmd &`).
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@dataclass(frozen=True)
class Service:
    """One command to run: `name` is how messages call it ("dagster dev", "weights API")."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] | None = None  # None: this process's environment
    cwd: Path | None = None


class ServiceError(RuntimeError):
    """A service could not start or ended on its own; the message is one line for the operator."""


class ServiceExited(ServiceError):
    """A service exited without being asked to; the others have been stopped."""

    def __init__(self, name: str, returncode: int, stopped: Sequence[str]) -> None:
        self.name, self.returncode = name, returncode
        how = f"was killed by {_signal_name(-returncode)}" if returncode < 0 else f"exited with code {returncode}"
        others = f"; stopped {', '.join(stopped)}" if stopped else ""
        super().__init__(f"{name} {how} on its own{others}")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def supervise(
    services: Sequence[Service],
    *,
    stop_timeout_s: float = STOP_TIMEOUT_S,
    on_started: Callable[[], None] | None = None,
    echo: Callable[[str], None] = _stderr,
) -> None:
    """Start `services` and block until SIGTERM/SIGINT/SIGHUP (then stop them all and return) or until one
    exits on its own (then stop the others and raise `ServiceExited`).

    Must run on the main thread (it installs the signal handlers, and restores them on return).
    """
    received: list[int] = []
    previous = {sig: signal.getsignal(sig) for sig in _STOP_SIGNALS}

    def on_signal(signum: int, _frame: object) -> None:
        if signum == signal.SIGTERM or previous[signum] != signal.SIG_IGN:
            received.append(signum)

    # A handler even where the caller ignores the signal: unlike SIG_IGN it is not inherited through
    # exec, so the services start with the default dispositions (`dagster dev` gives SIGTERM whatever
    # SIGINT has: ignoring SIGINT would have it ignore SIGTERM too).
    for sig in _STOP_SIGNALS:
        signal.signal(sig, on_signal)
    running: list[tuple[Service, subprocess.Popen[bytes]]] = []
    exited: tuple[Service, int] | None = None
    try:
        for service in services:
            if received:
                break
            try:
                process = subprocess.Popen(
                    list(service.argv),
                    env=None if service.env is None else dict(service.env),
                    cwd=service.cwd,
                    start_new_session=True,  # own session and group: the whole subtree is signalled together
                )
            except OSError as exc:
                raise ServiceError(f"could not start {service.name} ({service.argv[0]}): {exc}") from exc
            running.append((service, process))
        if on_started is not None and not received:
            on_started()
        while not received and exited is None:
            time.sleep(_POLL_S)
            exited = next(((s, p.returncode) for s, p in running if p.poll() is not None), None)
    finally:
        if running:
            if received:
                echo(f"{_signal_name(received[0])} received: stopping {', '.join(s.name for s, _ in running)}")
            stop([p for _, p in running], timeout_s=stop_timeout_s, hurry=lambda: len(received) > 1, echo=echo)
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
    if exited is not None and not received:
        service, returncode = exited
        raise ServiceExited(service.name, returncode, [s.name for s, _ in running if s is not service])


def stop(
    processes: Sequence[subprocess.Popen[bytes]],
    *,
    timeout_s: float = STOP_TIMEOUT_S,
    hurry: Callable[[], bool] = lambda: False,
    echo: Callable[[str], None] = _stderr,
) -> None:
    """SIGTERM the process groups of `processes` (each its group's leader) and of their descendants;
    SIGKILL what remains after `timeout_s`, or as soon as `hurry()` is true."""
    table = _process_table()
    groups = {p.pid for p in processes}
    for process in processes:
        groups.update(table[pid][1] for pid in _descendants(process.pid, table))
    _signal_groups(groups, signal.SIGTERM)
    started = time.monotonic()
    while True:
        for process in processes:
            process.poll()  # reap the leaders, so that they do not count as running
        remaining = _running_groups(groups)
        if not remaining:
            return
        if hurry() or time.monotonic() - started >= timeout_s:
            break
        time.sleep(_POLL_S)
    echo(f"{_count(remaining)} still running {time.monotonic() - started:.1f} s after SIGTERM: killing (SIGKILL)")
    _signal_groups(remaining, signal.SIGKILL)
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)


def _count(groups: set[int]) -> str:
    return f"{len(groups)} process group{'s' if len(groups) != 1 else ''} ({', '.join(map(str, sorted(groups)))})"


def _signal_groups(groups: set[int], sig: int) -> None:
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)


def _running_groups(groups: set[int]) -> set[int]:
    """The groups that still have a member that has not exited (zombies do not count)."""
    remaining = set()
    for pgid in groups:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            continue
        except PermissionError:
            pass
        remaining.add(pgid)
    if remaining and _PROC.is_dir():  # a group of zombies answers kill(0) too
        remaining &= {pgid for _ppid, pgid, state in _process_table().values() if state not in "ZX"}
    return remaining


def _process_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, process group, state) of every process in /proc; empty without /proc."""
    table = {}
    if not _PROC.is_dir():
        return table
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited while we looked
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        fields = stat[stat.rfind(")") + 2 :].split()
        table[int(entry.name)] = (int(fields[1]), int(fields[2]), fields[0])
    return table


def _descendants(pid: int, table: Mapping[int, tuple[int, int, str]]) -> set[int]:
    children: dict[int, list[int]] = {}
    for child, (parent, _pgid, _state) in table.items():
        children.setdefault(parent, []).append(child)
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found
