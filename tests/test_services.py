"""`kinitro dev`, `kinitro scheduler` and `kinitro executor`: they start, and a signal stops all.

The supervisor (kinitro_dagster.services) is tested with small Python process trees; the commands
as real subprocesses on free ports, with the state dir and DAGSTER_HOME under tmp_path. "Nothing
left" is checked from /proc, independently of the supervisor: every process of the command's tree
seen before the signal, and every process of those sessions, has exited (zombies count as exited:
this machine's PID 1 does not reap orphans).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from kinitro_dagster.cli import main
from kinitro_dagster.demo import DAGSTER_YAML
from kinitro_dagster.services import Service, ServiceError, supervise

BIN = Path(sys.executable).parent
STOP_DEADLINE_S = 10.0  # what an operator is promised: everything gone within 10 s of the signal
START_TIMEOUT_S = 180.0  # Dagster's servers on a busy 2-core machine

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc")


# --- the process tree, read from /proc ------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    sid: int
    state: str
    start: int  # clock ticks after boot: tells a pid from a later process that reuses it
    cmd: str


def _processes() -> dict[int, Proc]:
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        table[int(entry.name)] = Proc(int(entry.name), int(fields[1]), int(fields[3]), fields[0], int(fields[19]), cmd)
    return table


def _tree(root: int) -> list[Proc]:
    """`root` and its live descendants."""
    table = _processes()
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in table and table[pid].state not in "ZX":
            found.append(table[pid])
        todo.extend(p.pid for p in table.values() if p.ppid == pid)
    return found


def _still_running(seen: list[Proc]) -> list[Proc]:
    """Processes of `seen`, or of their sessions, that have not exited."""
    sessions = {p.sid for p in seen}
    known = {(p.pid, p.start) for p in seen}
    return [p for p in _processes().values()
            if p.state not in "ZX" and ((p.pid, p.start) in known or p.sid in sessions)]  # fmt: skip


def _wait_for_tree(root: int, size: int, timeout: float = 30.0) -> list[Proc]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tree = _tree(root)
        if len(tree) >= size:
            return tree
        time.sleep(0.1)
    pytest.fail(f"process tree of {root} never reached {size} processes: {_tree(root)}")


def _assert_stops(process: subprocess.Popen, seen: list[Proc], sig: int, *, expected_rc: int = 0) -> float:
    """Send `sig` to `process`; assert it exits with `expected_rc` and leaves nothing of `seen` running
    within STOP_DEADLINE_S. Returns how long that took."""
    sent = time.monotonic()
    process.send_signal(sig)
    while time.monotonic() - sent < STOP_DEADLINE_S:
        if process.poll() is not None and not _still_running(seen):
            break
        time.sleep(0.1)
    took = time.monotonic() - sent
    left = _still_running(seen)
    assert process.poll() is not None, f"{process.args} still running {took:.1f} s after {sig!r}"
    assert not left, f"{took:.1f} s after {sig!r}, still running: " + "; ".join(f"{p.pid} {p.cmd[:120]}" for p in left)
    assert process.returncode == expected_rc
    return took


@contextlib.contextmanager
def _started(argv: list[str], env: dict[str, str], logs: Path) -> Iterator[subprocess.Popen]:
    """`argv` in its own session, stdout/stderr to logs/out, logs/err; whatever survives the test is killed."""
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / "out", "wb") as out, open(logs / "err", "wb") as err:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=err, start_new_session=True)
    try:
        yield process
    finally:
        for proc in _still_running(_tree(process.pid) or [Proc(process.pid, 0, process.pid, "S", 0, "")]):
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _tracebacks(text: str) -> list[str]:
    """Log records holding a traceback, except the sensor's report that the bare state dir has no chain
    file (its ticks log that while the daemon runs; it is not what these tests are about)."""
    records = re.split(r"\n(?=\S*\d{4}-\d\d-\d\d[ T]\d\d:\d\d)", text)
    return [r for r in records if "Traceback" in r and "ChainFileError" not in r]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _wait_until(what: str, ready, process: subprocess.Popen, logs: Path, timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"exited with {process.returncode} before {what}:\n{(logs / 'err').read_text()[-3000:]}")
        with contextlib.suppress(OSError, httpx.HTTPError):
            if ready():
                return
        time.sleep(0.5)
    pytest.fail(f"no {what} after {timeout:.0f} s:\n{(logs / 'err').read_text()[-3000:]}")


def _answers(url: str) -> bool:
    return httpx.get(url, timeout=2.0).status_code == 200


@pytest.fixture
def service_env(tmp_path: Path) -> dict[str, str]:
    """The test's environment with a fresh state dir and a DAGSTER_HOME holding the repo's dagster.yaml."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DAGSTER_YAML, home / "dagster.yaml")
    return {**os.environ, "KINITRO_STATE_DIR": str(tmp_path / "state"), "DAGSTER_HOME": str(home)}


# --- the supervisor, on small process trees ---------------------------------------------------------

SLEEP = "import time; time.sleep(600)"
# A child with a grandchild in its group, and one in a session of its own (as a policy server).
TREE = textwrap.dedent(f"""
    import subprocess, sys, time
    subprocess.Popen([sys.executable, "-c", {SLEEP!r}])
    subprocess.Popen([sys.executable, "-c", {SLEEP!r}], start_new_session=True)
    time.sleep(600)
""")
DEAF = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
CRASH = "import sys, time; time.sleep(1); sys.exit(3)"
# Exits at once if it was started with SIGINT ignored (what `dagster dev` would turn into ignoring SIGTERM).
HEARS_SIGINT = ("import signal, sys, time\n"
                "sys.exit(5) if signal.getsignal(signal.SIGINT) is signal.SIG_IGN else time.sleep(600)")
SUPERVISOR = textwrap.dedent("""
    import json, os, signal, sys
    from kinitro_dagster.services import Service, ServiceError, supervise
    if os.environ.get("IGNORE_SIGINT"):
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # as `nohup` does to SIGHUP, a script's `cmd &` to SIGINT
    services = [Service(name, [sys.executable, "-c", code]) for name, code in json.loads(sys.argv[1])]
    try:
        supervise(services, stop_timeout_s=float(sys.argv[2]), on_started=lambda: print("started", flush=True))
    except ServiceError as exc:
        sys.exit(f"Error: {exc}")
    print("stopped", flush=True)
""")


def _supervisor(tmp_path: Path, services: list[tuple[str, str]], stop_timeout_s: float = 5.0, **env: str):
    import json

    argv = [sys.executable, "-c", SUPERVISOR, json.dumps(services), str(stop_timeout_s)]
    return _started(argv, {**os.environ, **env}, tmp_path / "logs")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=["SIGTERM", "SIGINT", "SIGHUP"])
def test_a_signal_stops_every_process_the_services_started(tmp_path, sig):
    with _supervisor(tmp_path, [("tree", TREE), ("sleeper", SLEEP)]) as process:
        seen = _wait_for_tree(process.pid, 5)  # supervisor, tree + 2 grandchildren, sleeper
        assert len({p.sid for p in seen}) == 4  # the supervisor's, one per service, the policy-server-like one
        took = _assert_stops(process, seen, sig)
    err = (tmp_path / "logs" / "err").read_text()
    assert err.strip() == f"{sig.name} received: stopping tree, sleeper"
    assert (tmp_path / "logs" / "out").read_text().split() == ["started", "stopped"]
    assert took < 3.0


def test_an_ignored_sigint_stays_ignored_and_is_not_passed_on_to_the_services(tmp_path):
    with _supervisor(tmp_path, [("listener", HEARS_SIGINT)], IGNORE_SIGINT="1") as process:
        seen = _wait_for_tree(process.pid, 2)
        time.sleep(1.0)  # the listener has looked at its SIGINT disposition by now
        process.send_signal(signal.SIGINT)
        time.sleep(0.5)
        assert process.poll() is None and len(_tree(process.pid)) == 2
        _assert_stops(process, seen, signal.SIGTERM)
    assert (tmp_path / "logs" / "err").read_text().strip() == "SIGTERM received: stopping listener"


def test_a_service_that_ignores_sigterm_is_killed_after_the_stop_timeout(tmp_path):
    with _supervisor(tmp_path, [("deaf", DEAF)], stop_timeout_s=1.0) as process:
        seen = _wait_for_tree(process.pid, 2)
        time.sleep(0.5)  # the child has set SIG_IGN by now (the interpreter starts in ~50 ms)
        took = _assert_stops(process, seen, signal.SIGTERM)
    assert 1.0 <= took < 4.0
    err = (tmp_path / "logs" / "err").read_text()
    assert "1 process group" in err and "killing (SIGKILL)" in err and "Traceback" not in err


def test_a_second_signal_kills_at_once(tmp_path):
    with _supervisor(tmp_path, [("deaf", DEAF)], stop_timeout_s=30.0) as process:
        seen = _wait_for_tree(process.pid, 2)
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        took = _assert_stops(process, seen, signal.SIGINT)
    assert took < 2.0
    assert "killing (SIGKILL)" in (tmp_path / "logs" / "err").read_text()


def test_a_service_that_exits_on_its_own_stops_the_others_and_fails(tmp_path):
    with _supervisor(tmp_path, [("crasher", CRASH), ("tree", TREE)]) as process:
        seen = _wait_for_tree(process.pid, 5)
        process.wait(timeout=STOP_DEADLINE_S)
        assert process.returncode == 1
        assert not _still_running(seen)
    err = (tmp_path / "logs" / "err").read_text().strip()
    assert err == "Error: crasher exited with code 3 on its own; stopped tree"


def test_a_command_that_cannot_start_is_one_error_and_stops_those_started():
    sleeper = Service("sleeper", [sys.executable, "-c", SLEEP])
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(ServiceError, match=r"^could not start ghost \(/nonexistent/ghost\): .*No such file"):
        supervise([sleeper, Service("ghost", ["/nonexistent/ghost"])], echo=lambda line: None)
    assert signal.getsignal(signal.SIGTERM) is before
    assert not [p for p in _processes().values() if p.ppid == os.getpid() and SLEEP in p.cmd and p.state not in "ZX"]


# --- the commands: validation, no servers ---------------------------------------------------------


@pytest.fixture
def clean_settings(tmp_path) -> Iterator[None]:
    """No service flag variables set; and the commands write their flags into os.environ (their
    children inherit it): all of that is undone after the test."""
    from unittest import mock

    from kinitro_dagster.cli import _EXECUTOR_FLAGS, _SCHEDULER_FLAGS

    names = [f"KINITRO_SCHEDULER_{field.upper()}" for field in _SCHEDULER_FLAGS]
    names += [f"KINITRO_EXECUTOR_{field.upper()}" for field in _EXECUTOR_FLAGS]
    with mock.patch.dict(os.environ, {"KINITRO_STATE_DIR": str(tmp_path / "state")}):
        for name in [*names, "DAGSTER_HOME"]:
            os.environ.pop(name, None)
        yield


def test_scheduler_refuses_zero_episodes_in_one_line_naming_the_setting(clean_settings, tmp_path):
    result = CliRunner().invoke(main, ["scheduler", "--episodes-per-env", "0", "--dagster-home", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: invalid configuration: KINITRO_SCHEDULER_EPISODES_PER_ENV=0 (--episodes-per-env): "
        "Input should be greater than or equal to 1"
    ]


def test_scheduler_needs_dagster_home(clean_settings):
    result = CliRunner().invoke(main, ["scheduler"])
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1
    assert "DAGSTER_HOME is not set" in result.output and "--dagster-home" in result.output


def test_scheduler_refuses_a_misspelt_setting(clean_settings, tmp_path):
    os.environ["KINITRO_SCHEDULER_EPISODES_PER_ENVS"] = "3"
    result = CliRunner().invoke(main, ["scheduler", "--dagster-home", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: unknown setting KINITRO_SCHEDULER_EPISODES_PER_ENVS: did you mean KINITRO_SCHEDULER_EPISODES_PER_ENV?"
    )


@pytest.mark.parametrize(("flag", "value", "variable"), [
    ("--batch-size", "5", "KINITRO_EXECUTOR_BATCH_SIZE"),
    ("--poll-interval", "10", "KINITRO_EXECUTOR_POLL_INTERVAL_SECONDS"),
    ("--eval-images", '{"metaworld": "kinitro/evaluator:v1"}', "KINITRO_EXECUTOR_EVAL_IMAGES"),
])  # fmt: skip
def test_executor_sends_queue_and_launcher_flags_to_the_scheduler(clean_settings, flag, value, variable):
    result = CliRunner().invoke(main, ["executor", flag, value])
    assert result.exit_code == 1
    [line] = result.output.strip().splitlines()
    assert line.startswith(f"Error: {flag} configures the run") and variable in line and "kinitro scheduler" in line


def test_executor_refuses_basilica_in_one_line(clean_settings):
    result = CliRunner().invoke(main, ["executor", "--eval-mode", "basilica"])
    assert result.exit_code == 1
    [line] = result.output.strip().splitlines()
    assert "KINITRO_EXECUTOR_EVAL_MODE=basilica (--eval-mode)" in line and "use docker" in line


# --- the commands, for real ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_dev_stops_dagster_and_the_api_on_a_signal(tmp_path, service_env, sig):
    ui_port, api_port = _free_port(), _free_port()
    argv = [str(BIN / "kinitro"), "dev", "--ui-port", str(ui_port), "--api-port", str(api_port)]
    logs = tmp_path / "logs"
    with _started(argv, service_env, logs) as process:
        _wait_until("weights API", lambda: _answers(f"http://127.0.0.1:{api_port}/health"), process, logs)
        _wait_until("Dagster UI", lambda: _answers(f"http://127.0.0.1:{ui_port}/server_info"), process, logs)
        seen = _tree(process.pid)
        commands = " ".join(p.cmd for p in seen)
        assert "dagster_webserver" in commands and "dagster._daemon" in commands and "kinitro api" in commands
        printed = {name: (logs / name).stat().st_size for name in ("out", "err")}
        _assert_stops(process, seen, sig)
    assert not _port_open(ui_port) and not _port_open(api_port)
    err = (logs / "err").read_text()
    assert not _tracebacks(err), err[-3000:]
    assert f"{sig.name} received: stopping dagster dev, weights API" in err
    after = (logs / "out").read_text()[printed["out"] :]
    assert not _tracebacks(after), after[-3000:]
    assert after.rstrip().endswith("stopped")


def test_dev_fails_in_one_line_and_stops_dagster_when_the_api_cannot_bind(tmp_path, service_env):
    ui_port = _free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        api_port = taken.getsockname()[1]
        argv = [str(BIN / "kinitro"), "dev", "--ui-port", str(ui_port), "--api-port", str(api_port)]
        result = subprocess.run(argv, env=service_env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.rstrip().splitlines()[-1] == (
        "Error: weights API exited with code 3 on its own; stopped dagster dev"  # uvicorn: 3 when it cannot bind
    )
    left = [p for p in _processes().values() if str(ui_port) in p.cmd and p.state not in "ZX"]
    assert not left, left


@pytest.mark.slow
def test_executor_serves_the_code_location_until_sigterm(tmp_path, service_env):
    port, closed = _free_port(), _free_port()
    argv = [str(BIN / "kinitro"), "executor", "--port", str(port), "--api-url", f"http://127.0.0.1:{closed}"]
    logs = tmp_path / "logs"
    with _started(argv, service_env, logs) as process:
        _wait_until(f"code server on port {port}", lambda: _port_open(port), process, logs)
        check = subprocess.run([str(BIN / "dagster"), "api", "grpc-health-check", "-p", str(port)],
                               capture_output=True, text=True, timeout=60)  # fmt: skip
        assert check.returncode == 0, check.stdout + check.stderr
        seen = _tree(process.pid)
        _assert_stops(process, seen, signal.SIGTERM)
    assert not _port_open(port)
    err, out = (logs / "err").read_text(), (logs / "out").read_text()
    assert f"warning: weights API at http://127.0.0.1:{closed}/health does not answer" in err  # not fatal
    assert "Started Dagster code server for module kinitro_dagster.definitions" in out
    assert not _tracebacks(err) and not _tracebacks(out), err[-3000:] + out[-3000:]


@pytest.mark.slow
def test_scheduler_runs_the_daemon_and_webserver_until_sigterm(tmp_path, service_env):
    import dagster as dg

    ui_port = _free_port()
    argv = [str(BIN / "kinitro"), "scheduler", "--with-webserver", "--ui-port", str(ui_port),
            "--episodes-per-env", "2", "--log-level", "debug"]  # fmt: skip
    logs = tmp_path / "logs"
    home = service_env["DAGSTER_HOME"]

    def sensor_daemon_beats() -> bool:
        with dg.DagsterInstance.from_config(home) as instance:
            return "SENSOR" in instance.get_daemon_heartbeats()

    with _started(argv, service_env, logs) as process:
        _wait_until("Dagster UI", lambda: _answers(f"http://127.0.0.1:{ui_port}/server_info"), process, logs)
        _wait_until("a sensor daemon heartbeat", sensor_daemon_beats, process, logs)
        seen = _tree(process.pid)
        daemon = next(p for p in seen if "dagster-daemon run" in p.cmd)
        environ = (Path(f"/proc/{daemon.pid}/environ").read_bytes()).split(b"\0")
        assert b"KINITRO_SCHEDULER_EPISODES_PER_ENV=2" in environ and b"KINITRO_SCHEDULER_LOG_LEVEL=DEBUG" in environ
        assert "--log-level debug" in daemon.cmd
        _assert_stops(process, seen, signal.SIGTERM)
    assert not _port_open(ui_port)
    err, out = (logs / "err").read_text(), (logs / "out").read_text()
    assert not _tracebacks(err) and "Error loading repository location" not in err, err[-3000:]
    assert "more than one head" not in out and "Error while importing code" not in out
    assert "SIGTERM received: stopping dagster-daemon, dagster-webserver" in err
    assert out.rstrip().endswith("stopped")
