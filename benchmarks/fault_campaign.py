"""Fault-injection campaign over the running production stack; one JSON line per fault.

    python benchmarks/fault_campaign.py [--only NAME ...] [--table] [--list]

Each fault gets a fresh stack, as deploy/ runs it on one host: deploy/dagster.yaml's instance
(PostgreSQL storage, the queued run coordinator, run monitoring, run retries), the code location
served by `dagster api grpc`, `dagster-daemon`, every run in a container of the evaluator image
(DockerRunLauncher), the warehouse on PostgreSQL, the file chain and local hub of the demo miners.
The cycle sensor opens one cycle; the fault is injected at its moment (before the first sensor
tick, mid-partition, mid-scoring); the campaign then waits for the cycle's weights and reports:

- `outcome`: `completed` (weights published), or `stuck` (none by the deadline) with why;
- `operator_sees`: the failed runs' errors, retries and sensor errors, as Dagster recorded them;
- `recovery_s`: seconds from the fault's end (the service back) to the weights;
- `rows_lost` / `rows_duplicated`: episode rows missing from, or repeated in, the warehouse,
  against miners × episodes per env; `rows_failed`: rows recorded with an error kind (and why).

`--table` prints the README's markdown table from the JSON lines instead (`--results FILE`).

Needs root (it restarts PostgreSQL and dockerd), dockerd with the kinitro/evaluator:it and
miner-runner images (.ci/run builds them), and nothing else using this host's PostgreSQL: the
restarts would hit it too. A fault takes 2-4 minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import sqlalchemy as sa
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
IMAGE = "kinitro/evaluator:it"
MINER_IMAGE = "kinitro/miner-runner:v1"
ADMIN_URL = os.environ.get("KINITRO_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
ENV_IDS = ["metaworld/reach-v3", "metaworld/push-v3"]
EPISODES = 2
CYCLE_DEADLINE_S = 480
RESTART_DELAY_S = 10  # deploy/systemd's RestartSec
STATE_MOUNT = "/var/lib/kinitro"  # deploy/dagster.yaml's state bind mount, replaced by the fault's own dir


# --------------------------------------------------------------------------- the stack


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _new_database(admin: sa.Engine) -> str:
    name = f"kinitro_faults_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    return name


def _postgres(action: str) -> None:
    version = sorted(os.listdir("/etc/postgresql"))[0]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action], check=True,
                   capture_output=True, timeout=120)  # fmt: skip


def postgres_ready(timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"]).returncode != 0:
        if time.monotonic() > deadline:
            raise SystemExit("fault_campaign: PostgreSQL did not come back")
        time.sleep(0.5)


@dataclass
class Stack:
    """The production processes of one fault, on this host."""

    root: Path
    eval_mode: str
    settings: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)  # by the supervisor, after exiting on their own

    def __post_init__(self) -> None:
        from kinitro_dagster.demo import publish_demo_chain

        admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
        self.dagster_db, warehouse_db = _new_database(admin), _new_database(admin)
        admin.dispose()
        url = sa.make_url(ADMIN_URL)
        self.warehouse_url = url.set(database=warehouse_db).render_as_string(hide_password=False)
        self.state, self.home = self.root / "state", self.root / "dagster_home"
        self.home.mkdir(parents=True)
        publish_demo_chain(self.state / "chain.yaml", self.state / "hub", 100)
        config = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())
        kwargs = config["run_launcher"]["config"]["container_kwargs"]
        kwargs["volumes"] = [f"{self.state}:{self.state}" if v.startswith(f"{STATE_MOUNT}:") else v
                             for v in kwargs["volumes"]]  # fmt: skip
        config["run_monitoring"]["poll_interval_seconds"] = 5
        (self.home / "dagster.yaml").write_text(yaml.safe_dump(config))
        self.port = _free_port()
        (self.home / "workspace.yaml").write_text(yaml.safe_dump({"load_from": [{"grpc_server": {
            "host": "127.0.0.1", "port": self.port, "location_name": "kinitro"}}]}))  # fmt: skip
        self.environment = {
            **os.environ,
            "DAGSTER_HOME": str(self.home), "DAGSTER_PG_USERNAME": url.username or "postgres",
            "DAGSTER_PG_PASSWORD": url.password or "trust", "DAGSTER_PG_HOST": url.host or "127.0.0.1",
            "DAGSTER_PG_DB": self.dagster_db, "KINITRO_EVALUATOR_IMAGE": IMAGE, "KINITRO_RUN_NETWORK": "host",
            "KINITRO_SCHEDULER_DATABASE_URL": self.warehouse_url,
            "KINITRO_SCHEDULER_ENV_IDS": json.dumps(ENV_IDS), "KINITRO_SCHEDULER_EPISODES_PER_ENV": str(EPISODES),
            "KINITRO_SCHEDULER_EVAL_INTERVAL_SECONDS": "1200", "KINITRO_SCHEDULER_CHAIN": "file",
            "KINITRO_SCHEDULER_NETWORK": "finney", "KINITRO_SCHEDULER_NETUID": "1",
            "KINITRO_SEED_SECRET": "fault-campaign-secret", "KINITRO_EXECUTOR_MAX_TIMESTEPS": "150",
            "KINITRO_EXECUTOR_USE_IMAGES": "false", "KINITRO_EXECUTOR_PRIVILEGED_STATE": "true",
            "KINITRO_EXECUTOR_EVAL_MODE": self.eval_mode, "KINITRO_EXECUTOR_MINER_DEPLOYMENT_IMAGE": MINER_IMAGE,
            "KINITRO_EXECUTOR_MINER_DEPLOYMENT_CPU": "1", "KINITRO_EXECUTOR_MINER_DEPLOYMENT_MEMORY": "2Gi",
            "KINITRO_EXECUTOR_MINER_DEPLOYMENT_WARMUP_TIMEOUT": "120",
            "KINITRO_STATE_DIR": str(self.state), "HF_HUB_OFFLINE": "1",
            **({"KINITRO_EXECUTOR_BATCH_SIZE": "1"} if self.eval_mode == "docker" else {}),
            **self.settings,
        }  # fmt: skip

    # processes

    def supervise(self, stop: threading.Event) -> None:
        """What systemd (Restart=always, RestartSec=10) and compose (restart: unless-stopped) do in
        production: a daemon or code server that exits on its own is started again 10 s later."""
        while not stop.wait(1):
            for name, process in list(self.processes.items()):
                if process.poll() is None or stop.wait(RESTART_DELAY_S) or self.processes.get(name) is not process:
                    continue
                self.restarts[name] = self.restarts.get(name, 0) + 1
                if name == "code":
                    self.start_code_server()
                else:
                    self.start_daemon()

    def start_code_server(self) -> None:
        self.processes["code"] = self._spawn("code", [
            str(BIN / "dagster"), "api", "grpc", "--host", "127.0.0.1", "--port", str(self.port),
            "--module-name", "kinitro_dagster.definitions", "--working-directory", str(REPO)])  # fmt: skip
        deadline = time.monotonic() + 120
        while subprocess.run([str(BIN / "dagster"), "api", "grpc-health-check", "--port", str(self.port)],
                             capture_output=True, timeout=30).returncode != 0:  # fmt: skip
            if time.monotonic() > deadline or self.processes["code"].poll() is not None:
                raise SystemExit(f"fault_campaign: the code server did not start:\n{self.log_tail('code')}")
            time.sleep(1)

    def start_daemon(self) -> None:
        self.processes["daemon"] = self._spawn(
            "daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(self.home / "workspace.yaml")]
        )

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, sig)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen:
        log = (self.root / f"{name}.log").open("a")
        return subprocess.Popen(command, cwd=self.home, env=self.environment, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.root / f"{name}.log"
        return path.read_text()[-chars:] if path.exists() else ""

    def close(self) -> None:
        for name in ("daemon", "code"):
            self.stop(name)

    # reading what happened

    @contextlib.contextmanager
    def instance(self) -> Iterator:
        import dagster as dg

        os.environ.update({k: v for k, v in self.environment.items() if k.startswith("DAGSTER_")})
        with dg.DagsterInstance.from_config(str(self.home)) as instance:
            yield instance

    def warehouse(self):
        from kinitro_dagster.warehouse import Warehouse

        return Warehouse(self.warehouse_url)


# --------------------------------------------------------------------------- moments and faults


def _runs(stack: Stack) -> list:
    with stack.instance() as instance:
        return list(instance.get_runs())


def _step_started(stack: Stack, run_id: str) -> bool:
    import dagster as dg

    with stack.instance() as instance:
        return bool(instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_START).records)


def wait_for(what: str, predicate: Callable[[], bool], timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not _quietly(predicate):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout_s:.0f} s")
        time.sleep(0.5)


def _quietly(predicate: Callable[[], bool]) -> bool:
    try:
        return predicate()
    except Exception:  # the storage itself may be the fault
        return False


def mid_partition(stack: Stack, settle_s: float = 3) -> None:
    """An episode run's step has started (its policies are being served)."""
    def started() -> bool:
        return any("dagster/partition/env" in r.tags and r.status.value == "STARTED" and _step_started(stack, r.run_id)
                   for r in _runs(stack))  # fmt: skip

    wait_for("an episode partition's step", started)
    time.sleep(settle_s)


def mid_scoring(stack: Stack) -> None:
    """The scoring run has started: the cycle-partitioned run that automation launches for
    pareto_scores and weights once every episode partition is in."""
    def scoring(run) -> bool:
        partition = run.tags.get("dagster/partition", "")
        return partition and "|" not in partition and run.job_name != "open_cycle" and run.status.value == "STARTED"

    wait_for("the scoring run", lambda: any(scoring(r) for r in _runs(stack)), timeout_s=CYCLE_DEADLINE_S)


def restart_postgres(stack: Stack, down_s: float) -> None:
    _postgres("stop")
    time.sleep(down_s)
    _postgres("start")
    postgres_ready()


def restart_dockerd(stack: Stack) -> None:
    subprocess.run(["pkill", "-TERM", "-x", "dockerd"], check=False)
    deadline = time.monotonic() + 60
    while subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True).returncode == 0:
        if time.monotonic() > deadline:
            subprocess.run(["pkill", "-KILL", "-x", "dockerd"], check=False)
        time.sleep(0.5)
    subprocess.run([str(REPO / "sim_images" / "setup-docker.sh")], check=True, capture_output=True, timeout=600)


HOG_REPO = "campaign/memory-hog"


def add_memory_hog(stack: Stack, uid: int = 5) -> None:
    """Publish the memory hog (benchmarks/policies/memory_hog/policy.py in the random example
    miner) to the local hub and commit it on the chain as `uid`."""
    from kinitro_dagster.miners.chain import ChainCommitment, FileChain, write_chain_file
    from kinitro_dagster.miners.hub import publish_to_cache

    chain = FileChain(stack.state / "chain.yaml")
    head = chain.head().number
    # The random example miner's server and wire types, with the hog's policy in place of its own.
    hog = stack.root / "memory_hog"
    shutil.copytree(REPO / "examples" / "miners" / "random_policy", hog)
    shutil.copy(REPO / "benchmarks" / "policies" / "memory_hog" / "policy.py", hog / "policy.py")
    revision = publish_to_cache(hog, HOG_REPO, cache_dir=stack.state / "hub")
    commitment = ChainCommitment(uid, "5CampaignHog", f"{HOG_REPO}:{revision[:8]}", 150)
    miners = [*chain.commitments(at_block=head), commitment]
    write_chain_file(stack.state / "chain.yaml", miners, name="kinitro-demo", head_block=head)


def wait_for_oom(stack: Stack, since: float) -> str:
    """The engine's `oom` event for the memory hog's policy container."""
    def oom() -> str:
        out = subprocess.run(["docker", "events", "--since", str(int(since)), "--until", str(int(time.time()) + 1),
                              "--filter", "event=oom", "--filter", f"label=kinitro.repo={HOG_REPO}",
                              "--format", "{{.Actor.ID}}"], capture_output=True, text=True)  # fmt: skip
        return out.stdout.split()[0] if out.stdout.split() else ""

    wait_for("the memory hog's OOM kill", lambda: bool(oom()), timeout_s=300)
    return oom()


def _policy_containers() -> list[str]:
    out = subprocess.run(["docker", "ps", "-q", "--filter", "label=kinitro.deployment=1"], capture_output=True,
                         text=True)  # fmt: skip
    return out.stdout.split()


def _inspect(container: str, template: str) -> str:
    out = subprocess.run(["docker", "inspect", "-f", template, container], capture_output=True, text=True)
    return out.stdout.strip()


@contextlib.contextmanager
def chain_file_broken(stack: Stack) -> Iterator[None]:
    chain = stack.state / "chain.yaml"
    good = chain.read_bytes()
    chain.write_text("head_block: [unterminated\n")
    try:
        yield
    finally:
        chain.write_bytes(good)


@dataclass(frozen=True)
class Fault:
    name: str
    what: str
    inject: Callable[[Stack], str]  # waits for its moment, injects, returns a note; the stack runs before
    eval_mode: str = "local"
    before_start: bool = False  # inject before the daemon starts (the first sensor tick)
    removed_snapshot: str | None = None  # a demo miner's repo whose snapshot is deleted from the hub
    memory_hog: bool = False  # a sixth miner whose policy allocates past its container's limit
    # Runs from the injection until the weights are published; what it yields is filled in at its exit.
    during: Callable[[Stack], contextlib.AbstractContextManager[dict]] | None = None


def _postgres_mid_partition(stack: Stack) -> str:
    mid_partition(stack)
    restart_postgres(stack, down_s=15)
    return "PostgreSQL stopped 15 s mid-partition"


def _postgres_mid_scoring(stack: Stack) -> str:
    mid_scoring(stack)
    restart_postgres(stack, down_s=15)
    return "PostgreSQL stopped 15 s mid-scoring"


def _postgres_at_tick(stack: Stack) -> str:
    _postgres("stop")
    stack.start_daemon()
    time.sleep(45)  # the sensor ticks every 30 s
    _postgres("start")
    postgres_ready()
    return "PostgreSQL down for the first 45 s of the daemon (sensor ticks)"


def _daemon_sigkill(stack: Stack) -> str:
    mid_partition(stack)
    os.killpg(stack.processes["daemon"].pid, signal.SIGKILL)  # its supervisor starts it again
    return "dagster-daemon SIGKILLed mid-partition"


def _code_server_restart(stack: Stack) -> str:
    mid_partition(stack)
    stack.stop("code")
    time.sleep(10)
    stack.start_code_server()
    return "code server stopped mid-partition, restarted 10 s later"


def _dockerd_restart(stack: Stack) -> str:
    mid_partition(stack, settle_s=8)
    restart_dockerd(stack)
    return "dockerd restarted mid-partition (run and policy containers stop with it)"


def _oom(stack: Stack) -> str:
    container = wait_for_oom(stack, since=time.time() - 600)
    return f"policy container {container[:12]} of a miner allocating 4 GiB past its 2 GiB limit OOM-killed"


def _chain_at_tick(stack: Stack) -> str:
    with chain_file_broken(stack):
        stack.start_daemon()
        time.sleep(45)
    return "chain unreadable (malformed chain file) for the first 45 s (sensor ticks)"


def _chain_at_commitments(stack: Stack) -> str:
    # The sensor has just requested the open_cycle run: break the chain before the run reads it.
    wait_for("the open_cycle run", lambda: any(r.job_name == "open_cycle" for r in _runs(stack)), timeout_s=120)
    with chain_file_broken(stack):
        time.sleep(60)
    return "chain unreadable for 60 s from the open_cycle run's launch (miner_commitments)"


def _hub_missing(stack: Stack) -> str:
    return "one miner's snapshot missing from the hub"


WRK_COUNT_5XX = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) fivexx = 0; other = 0 end
function response(status, headers, body)
  if status >= 500 then fivexx = fivexx + 1 elseif status ~= 200 and status ~= 404 then other = other + 1 end
end
function done(summary, latency, requests)
  local f, o = 0, 0
  for _, t in ipairs(threads) do f = f + t:get("fivexx"); o = o + t:get("other") end
  io.write(string.format('{"requests":%d,"fivexx":%d,"other":%d,"socket_errors":%d,"p99_ms":%.1f}\\n',
    summary.requests, f, o, summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.timeout, latency:percentile(99) / 1000))
end
"""


@contextlib.contextmanager
def api_under_load(stack: Stack) -> Iterator[dict]:
    """`kinitro api` on the cycle's warehouse, under wrk at 200 connections (latest weights, scores,
    health) while a checker reads every latest-weights and scores body: a torn read is a body whose
    weights do not sum to 1, or whose cycle and block disagree."""
    port = _free_port()
    api = stack._spawn("api", [str(BIN / "kinitro"), "api", "--host", "127.0.0.1", "--port", str(port),
                               "--database-url", stack.warehouse_url, "--log-level", "WARNING"])  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    # Serving once the cycle's first run has migrated the warehouse: until then every read is a 503
    # saying to run `kinitro db init` (in production the schema exists before the API starts).
    wait_for("the warehouse schema", lambda: httpx.get(base + "/v1/weights/latest", timeout=2).status_code == 404,
             timeout_s=180)  # fmt: skip
    script = stack.root / "count5xx.lua"
    script.write_text(WRK_COUNT_5XX)
    loads = [subprocess.Popen(["wrk", "-t1", f"-c{c}", "-d3600s", "--timeout", "10s", "-s", str(script), base + path],
                              stdout=subprocess.PIPE, text=True)
             for path, c in (("/v1/weights/latest", 150), ("/v1/scores/latest", 25), ("/health", 25))]
    checked = {"reads": 0, "torn": 0, "checker_5xx": 0, "cycles_seen": set()}
    stop = threading.Event()
    checker = threading.Thread(target=_check_bodies, args=(base, checked, stop), daemon=True)
    checker.start()
    result: dict = {}
    try:
        yield result
    finally:
        stop.set()
        checker.join(timeout=30)
        reports = []
        for load in loads:
            load.send_signal(signal.SIGINT)  # wrk prints its summary (and done()'s line) on SIGINT
            out, _ = load.communicate(timeout=30)
            reports.append(json.loads(next(line for line in out.splitlines() if line.startswith("{"))))
        api.terminate()
        api.wait(timeout=30)
        result.update(
            api_requests=sum(r["requests"] for r in reports) + checked["reads"],
            api_5xx=sum(r["fivexx"] for r in reports) + checked["checker_5xx"],
            api_unexpected_status=sum(r["other"] for r in reports),
            api_socket_errors=sum(r["socket_errors"] for r in reports),
            api_weights_p99_ms=reports[0]["p99_ms"],
            api_bodies_checked=checked["reads"],
            api_torn_reads=checked["torn"],
            api_cycles_seen=sorted(checked["cycles_seen"]),
        )


def _check_bodies(base: str, checked: dict, stop: threading.Event) -> None:
    with httpx.Client(base_url=base, timeout=10) as client:
        while not stop.is_set():
            for path in ("/v1/weights/latest", "/v1/scores/latest"):
                try:
                    response = client.get(path)
                except httpx.HTTPError:
                    continue
                checked["reads"] += 1
                if response.status_code >= 500:
                    checked["checker_5xx"] += 1
                if response.status_code != 200:
                    continue
                body = response.json()
                weights = body["weights"]
                whole = abs(sum(weights.values()) - 1.0) < 1e-9 if weights else True
                if not whole or body["cycle_id"] != f"{body['block']:010d}":
                    checked["torn"] += 1
                if path.endswith("weights/latest"):
                    checked["cycles_seen"].add(body["cycle_id"])


def _baseline(stack: Stack) -> str:
    return "no fault"


FAULTS = [
    Fault("baseline", "no fault (the reference)", _baseline),
    Fault("postgres-down-mid-partition", "PostgreSQL stopped 15 s while episodes are played", _postgres_mid_partition),
    Fault("postgres-down-mid-scoring", "PostgreSQL stopped 15 s while scoring runs", _postgres_mid_scoring),
    Fault("postgres-down-at-sensor-tick", "PostgreSQL down when the sensor ticks", _postgres_at_tick,
          before_start=True),
    Fault("daemon-sigkill", "dagster-daemon SIGKILLed mid-partition (its supervisor restarts it)", _daemon_sigkill),
    Fault("code-server-restart", "code server restarted mid-partition", _code_server_restart),
    Fault("dockerd-restart", "dockerd restarted mid-partition (docker eval mode)", _dockerd_restart,
          eval_mode="docker"),
    Fault("policy-oom", "a policy container OOM-killed (docker eval mode)", _oom, eval_mode="docker", memory_hog=True),
    Fault("chain-down-at-sensor-tick", "chain unreadable at the sensor tick", _chain_at_tick, before_start=True),
    Fault("chain-down-at-commitments", "chain unreadable when miner_commitments reads it", _chain_at_commitments),
    Fault("api-under-load", "the weights API under 200 connections while the cycle writes", _baseline,
          during=api_under_load),
    Fault("hub-fetch-fails", "one miner's snapshot cannot be fetched", _hub_missing,
          removed_snapshot="kinitro-demo/noisy-expert"),
]


# --------------------------------------------------------------------------- one fault


def run_fault(fault: Fault, keep: bool = False) -> dict:
    root = Path(tempfile.mkdtemp(prefix=f"kinitro-fault-{fault.name}-"))
    stack = Stack(root, fault.eval_mode)
    if fault.removed_snapshot:
        _remove_snapshot(stack, fault.removed_snapshot)
    if fault.memory_hog:
        add_memory_hog(stack)
    started = time.monotonic()
    note, error = "", None
    fault_ended: float | None = None
    supervising = threading.Event()
    try:
        stack.start_code_server()
        if not fault.before_start:
            stack.start_daemon()
        threading.Thread(target=stack.supervise, args=(supervising,), daemon=True).start()
        try:
            note = fault.inject(stack)
        except TimeoutError as exc:
            error = f"the fault's moment never came: {exc}"
        fault_ended = time.monotonic()
        if "daemon" not in stack.processes:
            stack.start_daemon()
        with fault.during(stack) if fault.during else contextlib.nullcontext({}) as during:
            cycle, weights_at = _wait_for_weights(stack, CYCLE_DEADLINE_S - (time.monotonic() - started))
            time.sleep(5 if fault.during else 0)  # a few seconds of serving the published weights
        row = _observe(stack, fault, cycle)
        row.update(during, supervisor_restarts=dict(stack.restarts))
        row.update(
            injected=note or error,
            outcome="completed" if weights_at else "stuck",
            recovery_s=round(weights_at - fault_ended, 1) if weights_at else None,
            cycle_s=round((weights_at or time.monotonic()) - started, 1),
        )
        return row
    finally:
        supervising.set()
        stack.close()
        _remove_policy_containers()
        if not keep:
            subprocess.run(["rm", "-rf", str(root)], check=False)


def _remove_snapshot(stack: Stack, repo: str) -> None:
    folder = stack.state / "hub" / f"models--{repo.replace('/', '--')}"
    subprocess.run(["rm", "-rf", str(folder)], check=True)


def _wait_for_weights(stack: Stack, timeout_s: float) -> tuple[str | None, float | None]:
    deadline = time.monotonic() + max(timeout_s, 30)
    cycle = None
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            with stack.instance() as instance:
                cycles = instance.get_dynamic_partitions("cycles")
                cycle = cycles[0] if cycles else None
                runs = list(instance.get_runs())
            store = stack.warehouse()
            try:
                if cycle and store.weights_for_cycle(cycle) is not None and all(r.is_finished for r in runs):
                    return cycle, time.monotonic()
            finally:
                store.dispose()
        time.sleep(1)
    return cycle, None


def _observe(stack: Stack, fault: Fault, cycle: str | None) -> dict:
    import dagster as dg

    row: dict = {"fault": fault.name, "what": fault.what, "eval_mode": fault.eval_mode}
    with stack.instance() as instance:
        runs = list(instance.get_runs())
        failures = []
        for run in runs:
            if run.status == dg.DagsterRunStatus.FAILURE:
                events = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
                message = events[0].event_log_entry.message if events else ""
                step_failures = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
                for record in step_failures.records:
                    info = record.event_log_entry.dagster_event.step_failure_data.error
                    info = info.cause if info and info.cause else info  # the step's own error, not Dagster's wrapper
                    message += f" | step: {info.message.strip().splitlines()[0] if info else ''}"
                failures.append(f"{run.job_name}[{run.tags.get('dagster/partition', '')}]: {message[:300]}")
        retries = [r for r in runs if "dagster/parent_run_id" in r.tags]
        step_retries = sum(len(instance.get_records_for_run(r.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY)
                               .records) for r in runs)  # fmt: skip
    row["runs"] = len(runs)
    row["failed_runs"] = failures
    row["retried_runs"] = len(retries)
    row["step_retries"] = step_retries
    row["service_errors"] = _service_errors(stack)
    store = stack.warehouse()
    try:
        from kinitro_dagster.warehouse.records import CommitmentStatus

        commitments = store.commitments(cycle) if cycle else []
        evaluated = [c for c in commitments if c.status is CommitmentStatus.OK]
        row["commitments_rejected"] = [f"uid {c.uid}: {c.status.value}: {(c.reason or '')[:120]}"
                                       for c in commitments if c.status is not CommitmentStatus.OK]  # fmt: skip
        expected = len(evaluated) * EPISODES
        lost = duplicated = failed = 0
        reasons: set[str] = set()
        episodes = store.episodes_by_env(cycle) if cycle else {}
        for env_id in ENV_IDS:
            rows = episodes.get(env_id, [])
            keys = {(r.uid, r.episode) for r in rows}
            lost += max(expected - len(keys), 0)
            duplicated += len(rows) - len(keys)
            for r in rows:
                if r.error_kind:
                    failed += 1
                    reasons.add(f"{r.error_kind}: {(r.error or '')[:120]}")
        row.update(rows_expected=expected * len(ENV_IDS), rows_lost=lost, rows_duplicated=duplicated,
                   rows_failed=failed, failure_reasons=sorted(reasons)[:4],
                   weights_published=bool(cycle and store.weights_for_cycle(cycle)), cycle=cycle)  # fmt: skip
    finally:
        store.dispose()
    return row


def _service_errors(stack: Stack) -> list[str]:
    """Distinct warning and error lines the daemon and the code server logged (sensor tick
    failures, storage retries, crashes): what `journalctl -u kinitro-scheduler` would show."""
    seen: list[str] = []
    for name in ("daemon", "code"):
        for line in stack.log_tail(name, 500_000).splitlines():
            line = re.sub(r"\x1b\[[0-9;]*m", "", line)
            if not re.search(r"ERROR|CRITICAL|WARNING|Error:", line) or " - INFO - " in line or "No cursor" in line:
                continue
            text = f"{'code server' if name == 'code' else name}: {line.split(' - ', 3)[-1].strip()[:180]}"
            if re.sub(r"\d+", "#", text) not in {re.sub(r"\d+", "#", t) for t in seen}:
                seen.append(text)
    return seen[:4]


def _remove_policy_containers() -> None:
    containers = subprocess.run(["docker", "ps", "-aq", "--filter", "label=kinitro.deployment=1"],
                                capture_output=True, text=True).stdout.split()  # fmt: skip
    if containers:
        subprocess.run(["docker", "rm", "-f", *containers], capture_output=True)


# --------------------------------------------------------------------------- the table


def table(rows: list[dict]) -> str:
    lines = [
        "| fault | what the operator sees | weights published | cycle | weights after the fault ended "
        "| rows lost | rows duplicated |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        errors = [e for e in row.get("service_errors", []) if "No cursor" not in e]  # Dagster's start-up notes
        seen = "; ".join(row["failed_runs"][:2] + errors[:1])
        if row["retried_runs"]:
            seen += f" ({row['retried_runs']} run(s) retried by run retries)"
        if row.get("step_retries"):
            seen += f"; {row['step_retries']} step retries, each a warning with the error"
        for name, n in row.get("supervisor_restarts", {}).items():
            seen += f"; the {'code server' if name == 'code' else name} exited and its supervisor restarted it {n}×"
        # The demo's copycat and typo are always rejected; other rejections are the fault's.
        rejected = [r for r in row.get("commitments_rejected", []) if not r.startswith(("uid 3:", "uid 4:"))]
        if rejected:
            seen += "; commitment " + "; ".join(rejected)
        if row["rows_failed"]:
            seen += f"; {row['rows_failed']} episode rows recorded as failed ({', '.join(row['failure_reasons'])})"
        if "api_requests" in row:
            seen = (f"{row['api_requests']:,} requests: {row['api_5xx']} 5xx, "
                    f"{row['api_torn_reads']} torn of {row['api_bodies_checked']:,} bodies checked, "
                    f"latest-weights p99 {row['api_weights_p99_ms']:.0f} ms, the cycle on the same cores")  # fmt: skip
        seen = seen.strip("; ") or "nothing: no run failed"
        after = f"{row['recovery_s']:.0f} s" if row["recovery_s"] is not None else "—"
        published = "yes" if row["weights_published"] else f"**no** ({row['outcome']})"
        lines.append(f"| {row['what']} | {seen.replace('|', '/')} | {published} | {row['cycle_s']:.0f} s | {after} | "
                     f"{row['rows_lost']} | {row['rows_duplicated']} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help="fault names (default: all); --list shows them")
    parser.add_argument("--list", action="store_true", help="list the faults and exit")
    parser.add_argument("--table", action="store_true", help="print the markdown table of --results and exit")
    parser.add_argument("--results", type=Path, default=REPO / ".kinitro" / "fault-campaign.jsonl",
                        help="JSON lines appended here too (default .kinitro/fault-campaign.jsonl)")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep each fault's logs and state dir")
    args = parser.parse_args()
    if args.list:
        for fault in FAULTS:
            print(f"{fault.name:32} {fault.what}")
        return
    if args.table:
        rows = {}
        for line in args.results.read_text().splitlines():
            row = json.loads(line)
            rows[row["fault"]] = row  # the latest run of each fault
        order = [f.name for f in FAULTS]
        print(table(sorted(rows.values(), key=lambda r: order.index(r["fault"]) if r["fault"] in order else 99)))
        return
    if os.geteuid() != 0:
        raise SystemExit("fault_campaign: run as root (it restarts PostgreSQL and dockerd)")
    chosen = [f for f in FAULTS if not args.only or f.name in args.only]
    args.results.parent.mkdir(parents=True, exist_ok=True)
    for fault in chosen:
        print(f"fault_campaign: {fault.name}: {fault.what}", file=sys.stderr, flush=True)
        row = run_fault(fault, keep=args.keep)
        line = json.dumps(row)
        print(line, flush=True)
        with args.results.open("a") as out:
            out.write(line + "\n")


if __name__ == "__main__":
    main()
