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

Deployments are cached by (repo, revision) — and image and limits — for a TTL (`DeploymentPool`):
a partition reuses a running container of the same snapshot; one that crashed, failed or outlived
its TTL is torn down at the end of the partition, the rest when the process exits (atexit). Every
container carries labels (`kinitro.deployment=1`, repo, revision, owner process, and the owner's
own container when the evaluator runs in one), so a new pool removes the leftovers of dead owner
processes on this host and of owner containers that are gone (a killed run container); by hand:
`docker rm -f $(docker ps -aq --filter label=kinitro.deployment=1)`.

The evaluator must see the snapshot and the socket directory at the same paths as the docker
daemon does: true when it runs on the host. A containerized evaluator (a run container of
deploy/dagster.yaml's DockerRunLauncher) needs the host's docker socket, the state dir (hub cache)
bind-mounted at its own path, and the socket directories' root (`run_root`, `default_run_root()`)
likewise: deploy/dagster.yaml mounts /var/run/docker.sock, /var/lib/kinitro and /dev/shm/kinitro.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kinitro_dagster.miners.deployments import KINITRO_COMPAT_DIR, DeploymentError, process_is_alive
from kinitro_dagster.miners.policy_client import PolicyClient, PolicyError, unix_socket_url

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

logger = logging.getLogger(__name__)

DEFAULT_IMAGE = "kinitro/miner-runner:v1"
LABEL = "kinitro.deployment"
OWNER_CONTAINER_LABEL = "kinitro.owner_container"  # the evaluator's own container id, when it runs in one
SHARED_RUN_ROOT = Path("/dev/shm/kinitro")  # socket directories, when the host shares it (default_run_root)
POLICY_UID = 65532  # the image's `policy` user; any non-root uid would do
_POLICY_MOUNT = "/policy"
_SOCKET_MOUNT = "/run/policy"
_SOCKET_NAME = "policy.sock"
_LOG_NAME = "server.log"
# The server's output goes to a file next to its socket: written by the policy's own processes
# (its CPU, its memory: the directory is on /dev/shm), readable here after the container is gone.
# Through docker's log driver, a policy printing without end cost dockerd ~half a core here.
_SERVER_COMMAND = [
    "sh", "-c",
    f"exec python -m uvicorn server:app --uds {_SOCKET_MOUNT}/{_SOCKET_NAME} --no-access-log "
    f"--timeout-keep-alive 300 --timeout-graceful-shutdown 1 >>{_SOCKET_MOUNT}/{_LOG_NAME} 2>&1",
]  # fmt: skip
_LOG_TAIL_BYTES = 4000
_STOP_GRACE_S = 2
_HEALTH_POLL_S = 0.05
_MEMORY_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


class DockerSetupError(RuntimeError):
    """Docker mode cannot run at all here (no daemon, no image): the evaluator's problem, not a miner's."""


@dataclass(frozen=True)
class DockerOptions:
    """How policy containers are run (from `KINITRO_EXECUTOR_MINER_DEPLOYMENT_*`)."""

    image: str = DEFAULT_IMAGE
    cpus: float = 1.0
    memory: str = "4Gi"  # `4Gi`, `4g`, `512Mi`, `512m` or bytes; there is no swap on top
    pids_limit: int = 256  # processes + threads; a fork bomb stops here
    tmp_size: str = "256Mi"  # the writable /tmp (counts against `memory`)
    ttl_s: float = 600.0  # a running deployment is reused for this long after it started; 0: never
    warmup_timeout_s: float = 300.0
    gpu_count: int = 0  # NVIDIA GPUs per container (a Docker device request); 0: none
    min_gpu_memory_gb: float | None = None  # each of them must have at least this much memory


def parse_memory(text: str | int) -> int:
    """Bytes in `4Gi`, `4G`, `4g`, `4GB`, `512Mi`, `1048576` (all binary units, as docker reads them)."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgtKMGT]?)(?:i?[bB]?|i)?\s*", text)
    if not match:
        raise ValueError(f"memory {text!r} is not a size: use e.g. 4Gi, 512Mi or a number of bytes")
    return int(float(match.group(1)) * _MEMORY_UNITS[match.group(2).lower()])


class DockerDeployment:
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
        self.socket_path: Path | None = None
        self.container_id: str | None = None
        self.last_log = ""
        self._container: Container | None = None
        self._pid: int | None = None
        self._finalizer: weakref.finalize | None = None
        self._launched_at = 0.0
        self.warmup_s: float | None = None  # launch to the first healthy answer, once started

    # -- Deployment -----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self.socket_path is None:
            raise RuntimeError(f"docker deployment of {self.snapshot_dir} is not started: call start() first")
        return unix_socket_url(self.socket_path)

    @property
    def pid(self) -> int | None:
        return self._pid

    def start(self) -> None:
        self.launch()
        self.wait_until_healthy()

    def launch(self) -> None:
        """Create and start the container; raises DeploymentError for a missing image or daemon."""
        if self._container is not None:
            raise RuntimeError(f"docker deployment of {self.snapshot_dir} is already started")
        client = docker_client()
        require_gpus(self.options.gpu_count, self.options.min_gpu_memory_gb)
        mount_source, workdir = policy_mount(self.snapshot_dir)
        run_dir = Path(tempfile.mkdtemp(prefix="kinitro-policy-", dir=self.run_root or default_run_root()))
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
                    str(socket_dir): {"bind": _SOCKET_MOUNT, "mode": "rw"},
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
        self._pid = _host_pid(self._container)
        logger.info(
            "policy container starting repo=%s revision=%s container=%s image=%s",
            self.repo, (self.revision or "")[:12], self._container.short_id, self.options.image,
            extra={"repo": self.repo, "revision": self.revision, "container": self._container.id},
        )  # fmt: skip

    def wait_until_healthy(self) -> None:
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise

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

    def __enter__(self) -> DockerDeployment:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"DockerDeployment({self.repo!r}@{(self.revision or '')[:8]}, container={self.container_id})"

    def _wait_healthy(self) -> None:
        deadline = self._launched_at + self.options.warmup_timeout_s
        last_error = "no answer yet"
        with PolicyClient(self.base_url, connect_timeout_s=1.0) as client:
            while time.monotonic() < deadline:
                if not self.is_alive():
                    state = self.state()
                    why = "it ran out of memory (OOM-killed)" if state.get("OOMKilled") else "see its log below"
                    raise DeploymentError(
                        f"policy container for {self._who()} exited with code {state.get('ExitCode')} during "
                        f"warm-up: {why}. It runs read-only as uid {POLICY_UID} with no network, so a policy "
                        f"must not download or write outside /tmp at start-up. Log:\n{self.log_tail()}"
                    )
                if self.socket_path is not None and self.socket_path.exists():
                    try:
                        client.health(timeout_s=max(0.1, min(2.0, deadline - time.monotonic())))
                    except PolicyError as error:
                        last_error = str(error)
                    else:
                        self._seal_socket_dir()
                        self.warmup_s = time.monotonic() - self._launched_at
                        logger.info(
                            "policy container healthy repo=%s revision=%s image=%s warmup_s=%.2f",
                            self.repo, (self.revision or "")[:12], self.options.image, self.warmup_s,
                            extra={"repo": self.repo, "revision": self.revision, "image": self.options.image,
                                   "warmup_s": round(self.warmup_s, 3)},
                        )  # fmt: skip
                        return
                time.sleep(_HEALTH_POLL_S)
        raise DeploymentError(
            f"policy container for {self._who()} did not answer GET /health within "
            f"{self.options.warmup_timeout_s:g} s (last error: {last_error}); a slow model load needs a longer "
            f"KINITRO_EXECUTOR_MINER_DEPLOYMENT_WARMUP_TIMEOUT. Log:\n{self.log_tail()}"
        )

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
    hub_layout = snapshot_dir.parent.name == "snapshots" and snapshot_dir.parent.parent.name.startswith("models--")
    root = snapshot_dir.parent.parent if hub_layout else snapshot_dir
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


def hub_identity(snapshot_dir: Path) -> tuple[str | None, str | None]:
    """(repo, revision) of a hub-cache snapshot path (`models--org--name/snapshots/<rev>`), else Nones."""
    snapshot_dir = Path(snapshot_dir)
    storage = snapshot_dir.parent.parent.name
    if snapshot_dir.parent.name != "snapshots" or not storage.startswith("models--"):
        return None, None
    return storage.removeprefix("models--").replace("--", "/"), snapshot_dir.name


def default_run_root() -> Path:
    """Where socket directories go: under /dev/shm, so files a policy writes there count against its memory.

    /dev/shm/kinitro when it exists: deploy/dagster.yaml bind-mounts the host's into every run
    container at that same path, so the host's engine finds the directories a run container makes.
    """
    for root in (SHARED_RUN_ROOT, SHARED_RUN_ROOT.parent):
        if root.is_dir() and os.access(root, os.W_OK | os.X_OK):
            return root
    return Path(tempfile.gettempdir())


# -- the deployment cache ---------------------------------------------------------------------


@dataclass
class _Entry:
    deployment: DockerDeployment
    started_at: float
    in_use: int = 0


class DeploymentPool:
    """Running docker deployments, reused by (repo, revision, image, limits) for `options.ttl_s`.

    `acquire` hands out a running deployment of the same snapshot or a new, unstarted one (the
    caller starts it, e.g. with `start_all`); `release` puts them back and tears down those that
    failed, died, expired or were never shared. `close` (also run at process exit) removes all.
    Thread-safe; the atexit hook acts only in the process that made the pool, not in forked children.
    """

    def __init__(self, *, prune: bool = True) -> None:
        self._entries: dict[tuple, _Entry] = {}
        self._lock = threading.Lock()
        self._owner_pid = os.getpid()
        self._pruned = not prune
        self._ready_images: set[str] = set()
        atexit.register(self._close_at_exit)

    def acquire(
        self,
        snapshot_dir: Path,
        options: DockerOptions,
        *,
        repo: str | None = None,
        revision: str | None = None,
        env: dict[str, str] | None = None,
    ) -> DockerDeployment:
        self._prepare(options.image)
        deployment = DockerDeployment(snapshot_dir, options=options, repo=repo, revision=revision, env=env)
        key = (
            deployment.repo or str(deployment.snapshot_dir),
            deployment.revision,
            options.image,
            options.cpus,
            options.memory,
            options.pids_limit,
            options.tmp_size,
            tuple(sorted((env or {}).items())),
        )
        stale: DockerDeployment | None = None
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.in_use == 0:
                if entry.deployment.is_alive() and not self._expired(entry, options):
                    entry.in_use += 1
                    logger.info(
                        "policy container reused repo=%s container=%s",
                        deployment.repo,
                        entry.deployment.container_id,
                        extra={"repo": deployment.repo},
                    )
                    return entry.deployment
                stale = self._entries.pop(key).deployment
                entry = None
            if entry is None and options.ttl_s > 0:
                self._entries[key] = _Entry(deployment, time.monotonic(), in_use=1)
        if stale is not None:
            stale.stop()
        return deployment  # in use elsewhere (the same snapshot twice at once): a private deployment

    def release(self, deployments: Iterable[DockerDeployment], *, failed: bool = False) -> None:
        """Give deployments back; stop failed (`failed=True`: all of these), dead, expired and private ones."""
        to_stop = []
        with self._lock:
            cached = {id(e.deployment): (k, e) for k, e in self._entries.items()}
            for deployment in deployments:
                key, entry = cached.get(id(deployment), (None, None))
                if entry is None:
                    to_stop.append(deployment)
                    continue
                entry.in_use -= 1
                dead = failed or not deployment.is_alive() or self._expired(entry, deployment.options)
                if dead and entry.in_use == 0:
                    del self._entries[key]
                    to_stop.append(deployment)
            for key, entry in list(self._entries.items()):  # idle ones that expired meanwhile
                if entry.in_use == 0 and self._expired(entry, entry.deployment.options):
                    del self._entries[key]
                    to_stop.append(entry.deployment)
        for deployment in to_stop:
            deployment.stop()

    def close(self) -> None:
        with self._lock:
            entries, self._entries = list(self._entries.values()), {}
        for entry in entries:
            entry.deployment.stop()

    def cached(self) -> int:
        """How many deployments the cache holds (running or not yet started)."""
        return len(self._entries)

    def _prepare(self, image: str) -> None:
        """Once: remove dead evaluators' leftovers; per image: fail early (DockerSetupError) if it is missing."""
        if image in self._ready_images:
            return
        if not self._pruned:
            prune_leftovers()
            self._pruned = True
        require_image(image)
        self._ready_images.add(image)

    @staticmethod
    def _expired(entry: _Entry, options: DockerOptions) -> bool:
        return time.monotonic() - entry.started_at >= options.ttl_s

    def _close_at_exit(self) -> None:
        if os.getpid() == self._owner_pid:
            self.close()


_shared_pool: DeploymentPool | None = None
_shared_lock = threading.Lock()


def shared_pool() -> DeploymentPool:
    """This process's deployment cache (one per process; partitions in the same process share it)."""
    global _shared_pool
    with _shared_lock:
        if _shared_pool is None or _shared_pool._owner_pid != os.getpid():
            _shared_pool = DeploymentPool()
        return _shared_pool


# -- docker plumbing --------------------------------------------------------------------------

_clients: dict[int, docker.DockerClient] = {}


def docker_client() -> docker.DockerClient:
    """A client for the docker daemon (DOCKER_HOST or the default socket), one per process."""
    pid = os.getpid()
    if pid not in _clients:
        import docker

        try:
            client = docker.from_env(timeout=60)
            client.ping()
        except docker.errors.DockerException as error:
            raise DockerSetupError(
                f"docker mode needs a running docker daemon and none answered ({error}); start dockerd "
                "(`.ci/run` does) or set DOCKER_HOST, or use KINITRO_EXECUTOR_EVAL_MODE=local"
            ) from error
        _clients[pid] = client
    return _clients[pid]


def require_image(image: str) -> None:
    """Raise DockerSetupError unless `image` is on the docker host."""
    from docker.errors import ImageNotFound

    try:
        docker_client().images.get(image)
    except ImageNotFound:
        raise DockerSetupError(missing_image_message(image)) from None


def missing_image_message(image: str) -> str:
    return (
        f"image {image} is not on this docker host: build it with `kinitro env build miner --tag {image}` "
        "(or point KINITRO_EXECUTOR_MINER_DEPLOYMENT_IMAGE at one that is)"
    )


def owner_id(pid: int | None = None) -> str:
    """`host/pid/start-time` of a process: tells a live owner from a dead one, even after pid reuse."""
    pid = pid or os.getpid()
    return f"{socket.gethostname()}/{pid}/{_start_time(pid)}"


def own_container_id() -> str | None:
    """The id of the docker container this process runs in (from the engine's bind mounts), else None."""
    global _own_container
    if _own_container is None:
        try:
            with open("/proc/self/mountinfo") as mounts:
                match = re.search(r"/containers/([0-9a-f]{64})/(?:hostname|hosts|resolv\.conf)\s", mounts.read())
        except OSError:
            match = None
        _own_container = match.group(1) if match else ""
    return _own_container or None


_own_container: str | None = None


def prune_leftovers() -> int:
    """Remove policy containers whose owner is gone; returns how many.

    The owner is a process on this host (gone: no such pid, or another process reused it), or a
    process in a container on this docker engine (gone: the container no longer runs, e.g. a run
    container that was killed and auto-removed). Another machine's containers are left alone.
    """
    client = docker_client()
    removed = 0
    host = socket.gethostname()
    here = own_container_id()
    for container in client.containers.list(all=True, filters={"label": f"{LABEL}=1"}):
        owner_container = container.labels.get(OWNER_CONTAINER_LABEL, "")
        if owner_container and owner_container != here:
            if _container_is_running(client, owner_container):
                continue
        else:
            owner_host, _, rest = container.labels.get("kinitro.owner", "").partition("/")
            pid_text, _, start = rest.partition("/")
            if owner_host != host or not pid_text.isdigit():
                continue  # another machine's: not ours to judge
            pid = int(pid_text)
            if process_is_alive(pid) and _start_time(pid) == start:
                continue
        with contextlib.suppress(Exception):
            container.remove(force=True)
            removed += 1
            _remove_run_dir(container)
    if removed:
        logger.warning("removed %d policy containers left by dead evaluator processes", removed)
    return removed


def _container_is_running(client: docker.DockerClient, container_id: str) -> bool:
    from docker.errors import NotFound

    try:
        return client.containers.get(container_id).status in ("running", "restarting", "paused")
    except NotFound:
        return False
    except Exception:  # the engine did not answer: do not judge
        return True


def _remove_run_dir(container: Container) -> None:
    """The socket directory of a removed container (`<run_root>/kinitro-policy-*/s`), if it is one of ours."""
    for mount in container.attrs.get("Mounts", []):
        if mount.get("Destination") == _SOCKET_MOUNT:
            run_dir = Path(mount.get("Source", "")).parent
            if run_dir.name.startswith("kinitro-policy-"):
                shutil.rmtree(run_dir, ignore_errors=True)


def _start_time(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()[19].decode()
    except (OSError, IndexError):
        return "?"


def _host_pid(container: Container) -> int | None:
    """The container's init process as this host sees it, or None (e.g. the evaluator is itself in a container)."""
    try:
        container.reload()
        pid = int(container.attrs["State"]["Pid"])
        with open(f"/proc/{pid}/cgroup") as cgroup:
            return pid if pid and container.id in cgroup.read() else None
    except (OSError, KeyError, ValueError):
        return None
    except Exception:  # a docker API error: the container is already gone
        return None


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


# -- the miner-runner image -------------------------------------------------------------------

RUNNER_DOCKERFILE_DIR = Path(__file__).resolve().parents[2] / "sim_images" / "miner-runner"
LOCAL_BASE_IMAGE = "kinitro/base:trixie"  # sim_images/base/build-base.sh: for machines without a registry
PUBLIC_BASE_IMAGE = "python:3.12-slim"
_CA_BUNDLE_CANDIDATES = ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
RUNNER_COMPAT_CONTEXT_DIR = "kinitro-compat"  # KINITRO_COMPAT_DIR's copy in the build context


def build_runner_image(
    tag: str = DEFAULT_IMAGE,
    *,
    base_image: str | None = None,
    with_metaworld: bool = True,
    ca_bundle: Path | None = None,
    echo: Callable[[str], None] = print,
) -> str:
    """Build the miner-runner image (`sim_images/miner-runner`); returns its id.

    `base_image` None: the local `kinitro/base:trixie` when this docker host has it (no registry
    needed), else `python:3.12-slim`. The machine's CA bundle (`ca_bundle`, else PIP_CERT /
    REQUESTS_CA_BUNDLE / SSL_CERT_FILE / the Debian default) goes into the build context so pip can
    reach PyPI through a TLS-intercepting proxy; the build uses the host's network. The `kinitro`
    compatibility package (KINITRO_COMPAT_DIR) goes in as `kinitro-compat/`.
    """
    from docker.errors import APIError, BuildError, ImageNotFound

    client = docker_client()
    if base_image is None:
        try:
            client.images.get(LOCAL_BASE_IMAGE)
            base_image = LOCAL_BASE_IMAGE
        except ImageNotFound:
            base_image = PUBLIC_BASE_IMAGE
    if not (RUNNER_DOCKERFILE_DIR / "Dockerfile").is_file():
        raise DockerSetupError(f"no Dockerfile at {RUNNER_DOCKERFILE_DIR}: build from a checkout of this repository")
    echo(f"building {tag} from {base_image} (MetaWorld + MuJoCo: {'yes' if with_metaworld else 'no'})")
    with tempfile.TemporaryDirectory(prefix="kinitro-build-") as context:
        shutil.copytree(RUNNER_DOCKERFILE_DIR, context, dirs_exist_ok=True)
        # The `kinitro` compatibility package (the Dockerfile puts it on PYTHONPATH).
        shutil.copytree(KINITRO_COMPAT_DIR, Path(context) / RUNNER_COMPAT_CONTEXT_DIR,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))  # fmt: skip
        bundle = ca_bundle or _machine_ca_bundle()
        if bundle is not None:
            shutil.copyfile(bundle, Path(context) / "pip-ca.crt")
        build_args = {"BASE_IMAGE": base_image, "WITH_METAWORLD": "1" if with_metaworld else "0"}
        image_id = None
        try:
            stream = client.api.build(path=context, tag=tag, buildargs=build_args, network_mode="host", rm=True,
                                      forcerm=True, decode=True)  # fmt: skip
            for chunk in stream:
                if "error" in chunk:
                    raise DockerSetupError(f"building {tag} failed: {chunk['error'].strip()}")
                if text := chunk.get("stream", "").rstrip():
                    echo(text)
                image_id = chunk.get("aux", {}).get("ID", image_id)
        except (APIError, BuildError) as error:
            raise DockerSetupError(f"building {tag} failed: {error}") from error
    if image_id is None:
        image_id = client.images.get(tag).id
    return image_id


def _machine_ca_bundle() -> Path | None:
    for var in _CA_BUNDLE_CANDIDATES:
        if (value := os.environ.get(var)) and Path(value).is_file():
            return Path(value)
    default = Path("/etc/ssl/certs/ca-certificates.crt")
    return default if default.is_file() else None
