"""Policy deployments: turn a miner's policy directory into a reachable HTTP server (DESIGN §7).

`LocalDeployment` runs the miner template's server (`uvicorn server:app`) as a subprocess of this
one. **Local mode is NOT isolated**: the miner's code runs as this user, with this machine's
network and files. It is for development, tests and the demo with bundled policies; never point it
at untrusted miners. The isolated `docker` mode (`DockerDeployment` in
`kinitro_dagster.miners.docker_deployment`: no network, read-only snapshot and root fs, non-root,
CPU/memory/process limits) implements the same `Deployment` interface.

Every local server runs in its own process group and is stopped with the whole group (SIGTERM,
then SIGKILL). A server whose deployment object is dropped unstopped, or still running when the
interpreter exits, is stopped by a `weakref.finalize` hook, so a failing test leaves no server behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol, Self, runtime_checkable

from kinitro_dagster.miners.policy_client import PolicyClient, unix_socket_url
from kinitro_dagster.protocol import ObservationRequest, PolicyError, observation_request
from kinitro_dagster.settings import executor_default

logger = logging.getLogger(__name__)

_LOG_TAIL_BYTES = 4000
_STOP_GRACE_S = 5.0
_HEALTH_POLL_S = 0.05
# Variables a miner's process must not see: the seed secret (seeds never reach miners, DESIGN §4),
# the database URL and tokens. Anything starting with one of these prefixes is dropped.
_WITHHELD_ENV_PREFIXES = ("KINITRO_", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "DAGSTER_", "AWS_", "PG")
# Goes on every policy's PYTHONPATH: it holds a small `kinitro` package (kinitro.types,
# kinitro.rl_interface) that Kinitro's miner template imports and does not ship (DESIGN §6).
# Nothing in this process imports it; the miner-runner image carries a copy (build_runner_image).
KINITRO_COMPAT_DIR = Path(__file__).resolve().parent / "compat"


class DeploymentError(RuntimeError):
    """A policy server could not be started (the message carries the tail of its log)."""


@runtime_checkable
class Deployment(Protocol):
    """A running policy server, whatever runs it (a local subprocess or a docker container).

    `start()` is `launch()` then `wait_until_healthy()`; `start_all` calls the two halves so that
    many servers warm up at once.
    """

    @property
    def base_url(self) -> str: ...

    @property
    def pid(self) -> int | None:
        """Process id a worker on this host can watch to tell a crash from a slow server; None if remote."""
        ...

    def start(self) -> None: ...

    def launch(self) -> None:
        """Start the server without waiting for it to answer."""
        ...

    def wait_until_healthy(self) -> None:
        """Block until `GET /health` answers within the warm-up timeout; stop it and raise DeploymentError if not."""
        ...

    def stop(self) -> None: ...

    def is_alive(self) -> bool: ...


class ServedDeployment:
    """What local and docker deployments share: start = launch + warm-up, the warm-up wait on
    `GET /health` (stopping the server when it fails), and use as a context manager.

    A subclass launches (setting `_launched_at`), says whether it is alive, when its server can be
    asked (`_ready_to_ask`), what to do once healthy (`_on_healthy`), and how to explain an exit or
    a timeout to the operator.
    """

    warmup_timeout: float
    _launched_at: float
    warmup_s: float | None = None  # launch to the first healthy answer, once started
    # What its first healthy /health declared it reads (protocol: "Observation negotiation").
    observation: ObservationRequest | None = None

    def launch(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def is_alive(self) -> bool:
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        raise NotImplementedError

    def start(self) -> None:
        """Launch the server and wait until it answers `GET /health` (see `start_all` for many)."""
        self.launch()
        self.wait_until_healthy()

    def wait_until_healthy(self) -> None:
        """Block until the launched server answers `GET /health`; stop it and raise if it never does."""
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wait_healthy(self) -> None:
        deadline = self._launched_at + self.warmup_timeout  # warm-up counts from launch
        last_error = "no answer yet"
        with PolicyClient(self.base_url, connect_timeout_s=1.0) as client:
            while time.monotonic() < deadline:
                if not self.is_alive():
                    raise DeploymentError(self._exited_message())
                if self._ready_to_ask():
                    try:
                        health = client.health(timeout_s=max(0.1, min(2.0, deadline - time.monotonic())))
                    except PolicyError as error:
                        last_error = str(error)
                    else:
                        self.observation = self._declared_observation(health)
                        self._on_healthy()
                        self._log_healthy(time.monotonic() - self._launched_at)
                        return
                time.sleep(_HEALTH_POLL_S)
        raise DeploymentError(self._timed_out_message(last_error))

    def _declared_observation(self, health: dict) -> ObservationRequest | None:
        try:
            return observation_request(health)
        except ValueError as error:
            logger.warning("%s: %s; it gets every camera", self.base_url, error)
            return None

    def _log_healthy(self, warmup_s: float) -> None:
        self.warmup_s = warmup_s
        fields = self._log_fields()
        who = " ".join(f"{k}={v}" for k, v in fields.items())
        logger.info("%s healthy %s warmup_s=%.2f", self._kind, who, warmup_s,
                    extra={**fields, "warmup_s": round(warmup_s, 3)})  # fmt: skip

    def _ready_to_ask(self) -> bool:
        return True

    def _on_healthy(self) -> None:
        pass

    _kind = "policy server"  # what the logs call it

    def _log_fields(self) -> dict[str, object]:
        """Who this deployment is, for its log lines (and their structured fields)."""
        return {}

    def _exited_message(self) -> str:
        raise NotImplementedError

    def _timed_out_message(self, last_error: str) -> str:
        raise NotImplementedError


class LocalDeployment(ServedDeployment):
    """`python -m uvicorn server:app` in `policy_dir`, on a free loopback port or a Unix socket.

    Use as a context manager, or call `start()` / `stop()`. Not isolated (see the module docstring).
    `transport="unix"` serves the policy on a Unix socket in a private temporary directory
    (`--uds`; base URL `http+unix://...`, which `PolicyClient` speaks): cheaper per step than
    loopback TCP for both sides. TCP is the default because any HTTP tool can talk to it.
    `python` runs the server: this venv's interpreter, or a miner runtime's (`miners.runtimes`).
    """

    def __init__(
        self,
        policy_dir: Path,
        *,
        python: str = sys.executable,
        host: str = "127.0.0.1",
        warmup_timeout: float = executor_default("miner_deployment_warmup_timeout"),
        env: dict[str, str] | None = None,
        log_dir: Path | None = None,
        cpus: frozenset[int] | None = None,
        transport: Literal["tcp", "unix"] = "tcp",
    ) -> None:
        self.policy_dir = Path(policy_dir).resolve()
        if not (self.policy_dir / "server.py").is_file():
            raise DeploymentError(
                f"{self.policy_dir} has no server.py: a policy directory follows the miner template "
                "(server.py serving `app`, policy.py with RobotPolicy)"
            )
        self.python = python
        self.host = host
        self.warmup_timeout = warmup_timeout
        self.env = dict(env or {})
        # CPUs the server may run on (its children inherit them): keeps policies off the cores that
        # step envs, as docker mode's CPU limits do. None: wherever the scheduler likes.
        self.cpus = cpus
        if transport not in ("tcp", "unix"):
            raise ValueError(f"transport must be 'tcp' or 'unix', got {transport!r}")
        self.transport = transport
        self.log_dir = log_dir
        self.log_path: Path | None = None
        self.port: int | None = None
        self.socket_path: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize | None = None
        self._launched_at = 0.0

    # -- Deployment -----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self.socket_path is not None:
            return unix_socket_url(self.socket_path)
        if self.port is None:
            raise RuntimeError(f"deployment of {self.policy_dir} is not started: call start() first")
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def launch(self) -> None:
        """Start the server process without waiting for it to be ready."""
        if self._process is not None:
            raise RuntimeError(f"deployment of {self.policy_dir} is already started")
        log_dir = self.log_dir or Path(tempfile.gettempdir())
        log_dir.mkdir(parents=True, exist_ok=True)
        fd, log_name = tempfile.mkstemp(prefix=f"policy-{self.policy_dir.name}-", suffix=".log", dir=log_dir)
        os.close(fd)
        self.log_path = Path(log_name)
        if self.transport == "unix":
            # A private directory: nobody else can connect to (or squat) the socket path.
            self.socket_path = Path(tempfile.mkdtemp(prefix="policy-")) / "policy.sock"  # short: 108-byte limit
            bind = ["--uds", str(self.socket_path)]
        else:
            self.port = _free_port(self.host)
            bind = ["--host", self.host, "--port", str(self.port)]
        self._launched_at = time.monotonic()
        command = [
            self.python, "-m", "uvicorn", "server:app", *bind,
            # One log line per /act would cost the policy time on every step.
            "--no-access-log",
            # Longer than any pause between our episodes, so the keep-alive connection stays open.
            "--timeout-keep-alive", "300",
            # Do not wait on a request the policy never finishes (a hung /act) when stopping.
            "--timeout-graceful-shutdown", "1",
        ]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                command,
                cwd=self.policy_dir,
                env=self._child_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() takes the server's children too
            )
        # Runs on stop(), on garbage collection, or at interpreter exit, whichever comes first.
        self._finalizer = weakref.finalize(self, _stop_process_group, self._process, self.socket_path)
        if self.cpus:
            os.sched_setaffinity(self._process.pid, self.cpus)
        logger.info(
            "policy server starting policy_dir=%s pid=%d url=%s log=%s",
            self.policy_dir, self._process.pid, self.base_url, self.log_path,
            extra={"policy_dir": str(self.policy_dir), "pid": self._process.pid, "url": self.base_url},
        )  # fmt: skip

    def stop(self) -> None:
        process, self._process = self._process, None
        finalizer, self._finalizer = self._finalizer, None
        if process is None or finalizer is None:
            return
        finalizer()  # _stop_process_group(process), once
        logger.info(
            "policy server stopped policy_dir=%s pid=%d returncode=%s",
            self.policy_dir, process.pid, process.returncode,
            extra={"policy_dir": str(self.policy_dir), "pid": process.pid},
        )  # fmt: skip

    def is_alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # -- helpers --------------------------------------------------------------------------------

    def log_tail(self, n_bytes: int = _LOG_TAIL_BYTES) -> str:
        """The end of the server's stdout+stderr, for error messages."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as log:
            log.seek(max(0, self.log_path.stat().st_size - n_bytes))
            return log.read().decode("utf-8", "replace")

    def __repr__(self) -> str:
        return f"LocalDeployment({str(self.policy_dir)!r}, port={self.port}, pid={self.pid})"

    def _child_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_WITHHELD_ENV_PREFIXES)}
        env["PYTHONUNBUFFERED"] = "1"  # the log file shows a crash's last words
        env.update(self.env)
        # The policy's own modules first (a miner that ships its own `kinitro/` keeps it), then any
        # path the caller set, then the `kinitro` compatibility package.
        paths = [str(self.policy_dir), *env.get("PYTHONPATH", "").split(os.pathsep), str(KINITRO_COMPAT_DIR)]
        env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        return env

    def _log_fields(self) -> dict[str, object]:
        return {"policy_dir": str(self.policy_dir), "pid": self.pid}

    def _exited_message(self) -> str:
        code = self._process.returncode if self._process else None
        return (f"policy server in {self.policy_dir} exited with code {code} during warm-up; "
                f"fix the error below (server log {self.log_path}):\n{self.log_tail()}")  # fmt: skip

    def _timed_out_message(self, last_error: str) -> str:
        return (f"policy server in {self.policy_dir} did not answer GET /health within "
                f"{self.warmup_timeout:g} s (last error: {last_error}); a slow model load needs a longer "
                f"warm-up timeout. Server log {self.log_path}:\n{self.log_tail()}")  # fmt: skip


def start_all(deployments: Sequence[Deployment]) -> list[DeploymentError | None]:
    """Start many servers at once (their warm-ups overlap); one entry per deployment, None if it started.

    A deployment that fails is stopped and its error returned, so one broken miner never keeps
    the others from being evaluated.
    """
    errors: list[DeploymentError | None] = []
    for deployment in deployments:
        try:
            deployment.launch()
            errors.append(None)
        except DeploymentError as error:  # e.g. docker mode: the image is missing, the snapshot unusable
            errors.append(error)
    for i, deployment in enumerate(deployments):
        if errors[i] is None:
            try:
                deployment.wait_until_healthy()
            except DeploymentError as error:
                errors[i] = error
        if errors[i] is not None:
            logger.warning("policy server failed to start: %s", str(errors[i]).splitlines()[0])
    return errors


def process_is_alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie; works from any process of this user.

    A worker uses this to tell a crashed local policy server (gone) from a hung one (alive).
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # The state letter follows the parenthesised command name, which may itself hold ')'.
            state = stat.read().rpartition(b")")[2].split()[0]
        return state not in (b"Z", b"X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    except OSError:  # no /proc: fall back to signal 0 (a zombie then still counts as alive)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def _free_port(host: str) -> int:
    # The port is released before uvicorn binds it; a rare collision fails warm-up with a clear log.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _stop_process_group(process: subprocess.Popen[bytes], socket_path: Path | None = None) -> None:
    pgid = process.pid  # start_new_session made the server its group's leader
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    try:
        process.wait(timeout=_STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        logger.warning("policy server pid=%d ignored SIGTERM for %.0f s; killing it", pgid, _STOP_GRACE_S)
    # Children that outlived the leader (or a leader that ignored SIGTERM) go too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=_STOP_GRACE_S)
    if socket_path is not None:
        shutil.rmtree(socket_path.parent, ignore_errors=True)
