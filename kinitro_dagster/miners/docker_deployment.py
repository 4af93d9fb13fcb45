"""Docker mode: each miner's policy snapshot served from the miner-runner image, sandboxed (DESIGN §7).

What a policy container gets (`DockerDeployment`):

- no network: `--network none` leaves only a loopback interface, so there is no route to the
  internet, to this host's services (PostgreSQL, Dagster, the docker daemon) or to other
  containers. We talk to the policy over a Unix socket (`uvicorn --uds`) in a per-deployment
  directory bind-mounted at `/run/policy`; `PolicyClient` speaks `http+unix://`.
- its own snapshot only, read-only at `/policy` (for a hub-cache snapshot, the repo's cache folder,
  so that the snapshot's links into `../../blobs` resolve); a read-only root fs; a small `/tmp`.
- an unprivileged user (uid 65532), no capabilities, `no-new-privileges`, docker's default seccomp.
- limits: CPUs (`--cpus`), memory with no swap (`--memory` = `--memory-swap`; tmpfs writes count
  too, including the socket directory, which lives on `/dev/shm` for that reason), processes
  (`--pids-limit`), open files. The server's output goes to `server.log` in the socket directory,
  not through docker's log driver, so printing costs the policy's own CPU and memory, not dockerd's.
  A policy that breaks a limit is killed or refused; only its own episodes fail.
- once healthy, the socket directory is made read-only to the policy, so it cannot swap its
  socket for a link to one of this host's sockets; its log is read without following links.

Reuse: a process keeps its own containers for a TTL (`deployment_pool.DeploymentPool`); a cycle's
partitions share theirs across processes (`cycle_deployments.CycleDeploymentPool`). Every
container carries labels naming its owner (`host`), so the leftovers of a killed evaluator are
removed by the next one; by hand: `docker rm -f $(docker ps -aq --filter label=kinitro.deployment=1)`.
The engine client is `docker_engine`; the image policies start from is built by `runner_image`.

The evaluator must see the snapshot and the socket directory at the same paths as the docker
daemon does: true when it runs on the host. A containerized evaluator (a run container of
deploy/dagster.yaml's DockerRunLauncher) needs the host's docker socket, the state dir (hub cache)
bind-mounted at its own path, and the socket directories' root (`run_root`, `default_run_root()`)
likewise: deploy/dagster.yaml mounts /var/run/docker.sock, /var/lib/kinitro and /dev/shm/kinitro.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import stat
import subprocess
import time
import uuid
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kinitro_dagster.miners.deployments import (
    DeploymentError,
    ServedDeployment,
    process_is_alive,
)
from kinitro_dagster.miners.docker_engine import DockerSetupError, docker_client, missing_image_message
from kinitro_dagster.miners.host import (
    LABEL,
    OWNER_CONTAINER_LABEL,
    SOCKET_MOUNT,
    host_pid,
    make_run_dir,
    own_container_id,
    owner_id,
)
from kinitro_dagster.miners.hub import hub_identity, storage_folder_of
from kinitro_dagster.miners.policy_client import unix_socket_url
from kinitro_dagster.settings import executor_default
from kinitro_dagster.sizes import parse_memory

if TYPE_CHECKING:
    from docker.models.containers import Container

logger = logging.getLogger(__name__)

DEFAULT_IMAGE: str = executor_default("miner_deployment_image")
POLICY_UID = 65532  # the image's `policy` user; any non-root uid would do
_POLICY_MOUNT = "/policy"
_SOCKET_NAME = "policy.sock"
_LOG_NAME = "server.log"
# The server's output goes to a file next to its socket: written by the policy's own processes
# (its CPU, its memory: the directory is on /dev/shm), readable here after the container is gone.
# Through docker's log driver, a policy printing without end cost dockerd ~half a core here.
_SERVER_COMMAND = [
    "sh", "-c",
    f"exec python -m uvicorn server:app --uds {SOCKET_MOUNT}/{_SOCKET_NAME} --no-access-log "
    f"--timeout-keep-alive 300 --timeout-graceful-shutdown 1 >>{SOCKET_MOUNT}/{_LOG_NAME} 2>&1",
]  # fmt: skip
_LOG_TAIL_BYTES = 4000
_STOP_GRACE_S = 2


@dataclass(frozen=True)
class DockerOptions:
    """How policy containers are run (from `KINITRO_EXECUTOR_MINER_DEPLOYMENT_*`)."""

    image: str = DEFAULT_IMAGE
    cpus: float = executor_default("miner_deployment_cpu")
    memory: str = executor_default("miner_deployment_memory")  # `4Gi`, `512Mi`, bytes...; no swap on top
    pids_limit: int = 256  # processes + threads; a fork bomb stops here
    tmp_size: str = "256Mi"  # the writable /tmp (counts against `memory`)
    # A deployment idle this long (since its last use) is removed; 0: never reused.
    ttl_s: float = executor_default("miner_deployment_ttl_seconds")
    warmup_timeout: float = executor_default("miner_deployment_warmup_timeout")
    gpu_count: int = 0  # NVIDIA GPUs per container (a Docker device request); 0: none
    min_gpu_memory_gb: float | None = None  # each of them must have at least this much memory


class DockerDeployment(ServedDeployment):
    """A miner's policy snapshot served by uvicorn in a sandboxed container (module docstring).

    Implements `Deployment`: `launch()` + `wait_until_healthy()` (or `start()`), `base_url`
    (`http+unix://...`), `pid` (the container's init process as this host sees it, or None when
    the evaluator cannot see it), `is_alive()`, `stop()` (removes the container and its socket
    directory). A deployment dropped unstopped, or alive at interpreter exit, is removed too.
    """

    def __init__(
        self,
        snapshot_dir: Path,
        *,
        options: DockerOptions | None = None,
        repo: str | None = None,
        revision: str | None = None,
        env: dict[str, str] | None = None,
        run_root: Path | None = None,
        labels: dict[str, str] | None = None,
    ) -> None:
        self.snapshot_dir = Path(snapshot_dir).absolute()
        if not (self.snapshot_dir / "server.py").is_file():
            raise DeploymentError(
                f"{self.snapshot_dir} has no server.py: a policy directory follows the miner template "
                "(server.py serving `app`, policy.py with RobotPolicy)"
            )
        self.options = options or DockerOptions()
        guessed_repo, guessed_revision = hub_identity(self.snapshot_dir)
        self.repo = repo or guessed_repo
        self.revision = revision or guessed_revision
        self.env = dict(env or {})
        self.run_root = run_root
        self.extra_labels = dict(labels or {})
        self.run_dir: Path | None = None  # made by launch() unless set before (a lease lives in it)
        self.socket_path: Path | None = None
        self.container_id: str | None = None
        self.last_log = ""
        self._container: Container | None = None
        self._pid: int | None = None
        self._finalizer: weakref.finalize | None = None
        self._launched_at = 0.0

    # -- Deployment -----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self.socket_path is None:
            raise RuntimeError(f"docker deployment of {self.snapshot_dir} is not started: call start() first")
        return unix_socket_url(self.socket_path)

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def warmup_timeout(self) -> float:
        return self.options.warmup_timeout

    def launch(self) -> None:
        """Create and start the container; raises DeploymentError for a missing image or daemon."""
        if self._container is not None:
            raise RuntimeError(f"docker deployment of {self.snapshot_dir} is already started")
        client = docker_client()
        require_gpus(self.options.gpu_count, self.options.min_gpu_memory_gb)
        mount_source, workdir = policy_mount(self.snapshot_dir)
        run_dir = self.run_dir or make_run_dir(self.run_root)
        self.run_dir = run_dir
        socket_dir = run_dir / "s"  # 0777 so the container's user can bind; run_dir (0700) keeps others out
        socket_dir.mkdir()
        socket_dir.chmod(0o777)
        self.socket_path = socket_dir / _SOCKET_NAME
        self._launched_at = time.monotonic()
        name = self._container_name()
        try:
            self._container = client.containers.run(
                self.options.image,
                _SERVER_COMMAND,
                detach=True,
                name=name,
                labels=self._labels(),
                environment=self.env,
                working_dir=workdir,
                volumes={
                    str(mount_source): {"bind": _POLICY_MOUNT, "mode": "ro"},
                    str(socket_dir): {"bind": SOCKET_MOUNT, "mode": "rw"},
                },
                **sandbox_kwargs(self.options),
            )
        except Exception as error:
            # `run` is create + start: a container the engine created but could not start (a
            # device request it cannot serve, say) would stay behind.
            with contextlib.suppress(Exception):
                client.containers.get(name).remove(force=True)
            shutil.rmtree(run_dir, ignore_errors=True)
            self.socket_path = None
            raise self._launch_failure(error) from error
        self.container_id = self._container.id
        self._finalizer = weakref.finalize(self, _remove_container, self._container.id, run_dir, os.getpid())
        self._pid = host_pid(self._container)
        logger.info(
            "policy container starting repo=%s revision=%s container=%s image=%s",
            self.repo, (self.revision or "")[:12], self._container.short_id, self.options.image,
            extra={"repo": self.repo, "revision": self.revision, "container": self._container.id},
        )  # fmt: skip

    def attach(self, container: Container, run_dir: Path) -> None:
        """Take over a running container of this snapshot that another evaluator started (shared deployments)."""
        self._container, self.container_id, self.run_dir = container, container.id, run_dir
        self.socket_path = run_dir / "s" / _SOCKET_NAME
        self._finalizer = weakref.finalize(self, _remove_container, container.id, run_dir, os.getpid())
        self._pid = host_pid(container)
        self._launched_at = time.monotonic()  # a warm-up its starter did not see to the end gets the full timeout

    def detach(self) -> None:
        """Let the container outlive this object and this process (a shared deployment released for reuse)."""
        if self._finalizer is not None:
            self._finalizer.detach()
        self._finalizer, self._container = None, None

    def stop(self) -> None:
        """Stop and remove the container (SIGTERM, then SIGKILL after 2 s) and its socket directory."""
        if self._container is not None:
            self.last_log = self.log_tail()
        container, self._container = self._container, None
        finalizer, self._finalizer = self._finalizer, None
        if container is None or finalizer is None:
            return
        finalizer()
        logger.info(
            "policy container removed repo=%s revision=%s container=%s",
            self.repo, (self.revision or "")[:12], container.short_id,
            extra={"repo": self.repo, "revision": self.revision, "container": container.id},
        )  # fmt: skip

    def is_alive(self) -> bool:
        if self._container is None:
            return False
        if self._pid is not None:
            return process_is_alive(self._pid)
        return self.state().get("Running", False)

    # -- helpers --------------------------------------------------------------------------------

    def log_tail(self) -> str:
        """The end of the server's stdout+stderr (its log file; kept in `last_log` after stop)."""
        if self._container is None or self.socket_path is None:
            return self.last_log
        return _read_tail(self.socket_path.parent / _LOG_NAME)

    def __repr__(self) -> str:
        return f"DockerDeployment({self.repo!r}@{(self.revision or '')[:8]}, container={self.container_id})"

    def _ready_to_ask(self) -> bool:
        return self.socket_path is not None and self.socket_path.exists()

    def _on_healthy(self) -> None:
        self._seal_socket_dir()

    _kind = "policy container"

    def _log_fields(self) -> dict[str, object]:
        return {"repo": self.repo, "revision": (self.revision or "")[:12], "image": self.options.image}

    def _exited_message(self) -> str:
        state = self.state()
        why = "it ran out of memory (OOM-killed)" if state.get("OOMKilled") else "see its log below"
        return (f"policy container for {self._who()} exited with code {state.get('ExitCode')} during warm-up: "
                f"{why}. It runs read-only as uid {POLICY_UID} with no network, so a policy must not download "
                f"or write outside /tmp at start-up. Log:\n{self.log_tail()}")  # fmt: skip

    def _timed_out_message(self, last_error: str) -> str:
        return (f"policy container for {self._who()} did not answer GET /health within "
                f"{self.options.warmup_timeout:g} s (last error: {last_error}); a slow model load needs a longer "
                f"KINITRO_EXECUTOR_MINER_DEPLOYMENT_WARMUP_TIMEOUT. Log:\n{self.log_tail()}")  # fmt: skip

    def _seal_socket_dir(self) -> None:
        """Once serving, the policy may no longer add, remove or swap entries in its socket directory.

        Otherwise it could swap its socket for a link to one of this host's sockets, which we would
        then connect to; after the seal, checking that the socket is a socket is enough.
        """
        assert self.socket_path is not None
        self.socket_path.parent.chmod(0o755)
        if not stat.S_ISSOCK(os.lstat(self.socket_path).st_mode):
            raise DeploymentError(f"policy container for {self._who()} replaced its socket with something else")

    def state(self) -> dict:
        """Docker's `State` of the container (`Running`, `ExitCode`, `OOMKilled`, ...); {} once removed."""
        if self._container is None:
            return {}
        try:
            self._container.reload()
        except Exception:  # removed behind our back
            return {}
        return self._container.attrs.get("State", {})

    def _who(self) -> str:
        return f"{self.repo}@{(self.revision or '')[:12]}" if self.repo else str(self.snapshot_dir)

    def _labels(self) -> dict[str, str]:
        return {
            LABEL: "1",
            "kinitro.repo": self.repo or "",
            "kinitro.revision": self.revision or "",
            "kinitro.owner": owner_id(),
            OWNER_CONTAINER_LABEL: own_container_id() or "",
            **self.extra_labels,
        }

    def _container_name(self) -> str:
        slug = re.sub(r"[^a-zA-Z0-9_.-]+", "-", (self.repo or self.snapshot_dir.name))[-40:].strip("-.") or "policy"
        return f"kinitro-policy-{slug}-{(self.revision or '')[:8]}-{uuid.uuid4().hex[:6]}".replace("--", "-")

    def _launch_failure(self, error: Exception) -> Exception:
        from docker.errors import ImageNotFound

        if isinstance(error, ImageNotFound):
            return DockerSetupError(missing_image_message(self.options.image))
        if self.options.gpu_count and "device driver" in str(error):
            # dockerd has no driver for the GPU request: no NVIDIA Container Toolkit on this engine.
            return DeploymentError(
                f"cannot give {self._who()} {self.options.gpu_count} GPU(s) "
                f"(KINITRO_EXECUTOR_MINER_DEPLOYMENT_GPU_COUNT={self.options.gpu_count}): this Docker engine has "
                f"no NVIDIA runtime ({str(error).strip()}); install the NVIDIA Container Toolkit or set it to 0"
            )
        return DeploymentError(f"cannot start a policy container for {self._who()}: {str(error).strip()}")


def sandbox_kwargs(options: DockerOptions) -> dict:
    """`containers.run` arguments that make the sandbox (the module docstring says why each)."""
    from docker.types import LogConfig, Ulimit

    memory = parse_memory(options.memory)
    return {
        "network_mode": "none",
        "read_only": True,
        "tmpfs": {"/tmp": f"rw,nosuid,nodev,size={parse_memory(options.tmp_size)}"},
        "user": f"{POLICY_UID}:{POLICY_UID}",
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "ipc_mode": "private",
        "init": True,  # reaps a policy's orphaned children; its exit ends the container
        "pids_limit": options.pids_limit,
        "mem_limit": memory,
        "memswap_limit": memory,  # equal: no swap on top of the limit
        "oom_score_adj": 1000,  # if the host itself runs short, the policies go first
        "nano_cpus": int(options.cpus * 1e9),
        "ulimits": [Ulimit(name="nofile", soft=1024, hard=1024)],
        "log_config": LogConfig(type=LogConfig.types.NONE),  # the server logs to a file (_SERVER_COMMAND)
        "device_requests": gpu_device_requests(options.gpu_count),
    }


def gpu_device_requests(count: int) -> list:
    """What `docker run --gpus N` sends: a request the engine hands to the NVIDIA runtime."""
    from docker.types import DeviceRequest

    return [DeviceRequest(count=count, capabilities=[["gpu"]])] if count else []


def host_gpu_memory_gb() -> list[float]:
    """Memory of each NVIDIA GPU this host has (nvidia-smi), [] where there is none or no driver."""
    try:
        result = subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                                capture_output=True, text=True, timeout=30)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return []
    if result.returncode != 0:
        return []
    return [float(line) / 1024 for line in result.stdout.split() if line.replace(".", "", 1).isdigit()]


def require_gpus(count: int, min_memory_gb: float | None) -> None:
    """Refuse a GPU deployment on a host without enough GPUs: never fall back to the CPU silently."""
    if not count:
        return
    gpus = host_gpu_memory_gb()
    fitting = [m for m in gpus if min_memory_gb is None or m >= min_memory_gb]
    if len(fitting) >= count:
        return
    setting = f"KINITRO_EXECUTOR_MINER_DEPLOYMENT_GPU_COUNT={count}"
    if min_memory_gb is not None:
        setting += f" with _MIN_GPU_MEMORY_GB={min_memory_gb:g}"
    found = (f"{len(gpus)} NVIDIA GPU(s), {len(fitting)} with enough memory" if gpus
             else "no NVIDIA GPU (nvidia-smi finds none)")
    raise DeploymentError(f"{setting}, but this host has {found}: run the evaluator on a GPU host or lower the setting")


def policy_mount(snapshot_dir: Path) -> tuple[Path, str]:
    """(host directory to mount read-only at /policy, the snapshot's directory inside the container).

    A hub-cache snapshot (`.../models--org--name/snapshots/<rev>`) holds relative links into
    `../../blobs`; mounting the repo's cache folder keeps them resolvable. Any link that leads
    outside the mounted folder, or is absolute, would dangle in the container: refused.
    """
    snapshot_dir = Path(snapshot_dir).absolute()
    root = storage_folder_of(snapshot_dir) or snapshot_dir
    real_root = root.resolve()
    for path in snapshot_dir.rglob("*"):
        if not path.is_symlink():
            continue
        target = os.readlink(path)
        if os.path.isabs(target) or not path.resolve().is_relative_to(real_root):
            raise DeploymentError(
                f"{path} links to {target}, outside {root}: it would not resolve in the container. "
                "Re-fetch the snapshot into the hub cache or copy it without links."
            )
    inside = Path(_POLICY_MOUNT) / snapshot_dir.relative_to(root)
    return real_root, inside.as_posix()


def _read_tail(path: Path, n_bytes: int = _LOG_TAIL_BYTES) -> str:
    """The end of a file the policy wrote; never follows a link or blocks on a pipe it left there."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return ""
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return ""
        os.lseek(fd, max(0, info.st_size - n_bytes), os.SEEK_SET)
        return os.read(fd, n_bytes).decode("utf-8", "replace")
    finally:
        os.close(fd)


def _remove_container(container_id: str, run_dir: Path, owner_pid: int) -> None:
    if os.getpid() != owner_pid:  # a forked child exiting: the container is its parent's
        return
    try:
        client = docker_client()
        container = client.containers.get(container_id)
        with contextlib.suppress(Exception):
            container.stop(timeout=_STOP_GRACE_S)
        container.remove(force=True)
    except Exception as error:
        if type(error).__name__ != "NotFound":
            logger.warning("could not remove policy container %s: %s", container_id[:12], error)
    shutil.rmtree(run_dir, ignore_errors=True)


