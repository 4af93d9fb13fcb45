"""Production deployment, end to end on a real dockerd: deploy/dagster.yaml's PostgreSQL-backed
instance, the code location served by `dagster api grpc`, the daemon launching every run into a
container of the evaluator image (DockerRunLauncher), run monitoring and run retries.

One cycle: the real `cycle_sensor` opens it, the automation sensor launches the episode partitions
into containers (queued by deploy/dagster.yaml's coordinator, which tags them with their env
family), one container is `docker kill`ed mid-partition, run monitoring fails that run, run
retries runs it again, `pareto_scores` and `weights` follow, and the weights API on the same
warehouse serves them. Twice: policies as subprocesses of the run container (local eval mode), and
each policy in its own miner-runner container that the run container starts on this host's
engine (docker eval mode; the victim is killed once its policy containers run, and the retry
removes them). The code location runs on this host, so the image is built with the code at this
checkout's absolute path (APP_DIR; see sim_images/evaluator/Dockerfile).

Needs root, dockerd, the kinitro/base:trixie and miner-runner images (sim_images/setup-docker.sh
makes them; CI runs it) and PostgreSQL. FAILS rather than skips when they are missing: CI runs this.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

# The image build (cold: ~2 min with the base image present; CI prebuilds it) plus ~2 min a cycle.
pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.postgres, pytest.mark.timeout(1200)]

REPO = Path(__file__).resolve().parents[2]
IMAGE = "kinitro/evaluator:it"
BIN = Path(sys.executable).parent
MINERS_EVALUATED = 3  # demo miners: expert, noisy, random (the copycat and the typo are not evaluated)
EPISODES = 2
CYCLE_DEADLINE_S = 420
STATE_DIR = "/var/lib/kinitro"  # deploy/dagster.yaml's state bind mount; the test uses its own dir
MINER_IMAGE = "kinitro/miner-runner:v1"


def _docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def evaluator_image() -> str:
    if _docker("info").returncode != 0:
        pytest.fail("dockerd is not running: run sim_images/setup-docker.sh as root (CI's .ci/run does)", pytrace=False)
    started = time.monotonic()
    build = subprocess.run([str(REPO / "sim_images" / "evaluator" / "build.sh"), IMAGE], capture_output=True,
                           text=True, timeout=1200, env={**os.environ, "APP_DIR": str(REPO)})
    if build.returncode != 0:
        pytest.fail(f"building {IMAGE} failed:\n{build.stdout[-3000:]}\n{build.stderr[-3000:]}", pytrace=False)
    print(f"\n{IMAGE} built in {time.monotonic() - started:.0f} s")
    return IMAGE


@pytest.fixture
def databases(new_postgres_database) -> tuple[str, str]:
    """(Dagster storage database name, warehouse URL): two fresh PostgreSQL databases."""
    dagster_db, _ = new_postgres_database()
    _, warehouse = new_postgres_database()
    return dagster_db, warehouse


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _instance_yaml(state: Path) -> dict:
    """deploy/dagster.yaml as shipped, but for one test: this test's state dir in place of
    /var/lib/kinitro (still at its own path), monitoring every 2 s. Run containers join the host
    network through KINITRO_RUN_NETWORK (this PostgreSQL listens on loopback)."""
    config = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())
    kwargs = config["run_launcher"]["config"]["container_kwargs"]
    assert f"{STATE_DIR}:{STATE_DIR}" in kwargs["volumes"], kwargs["volumes"]
    kwargs["volumes"] = [f"{state}:{state}" if v == f"{STATE_DIR}:{STATE_DIR}" else v for v in kwargs["volumes"]]
    config["run_monitoring"]["poll_interval_seconds"] = 2
    return config


@pytest.fixture(params=["local", "docker"])
def eval_mode(request) -> str:
    if request.param == "docker" and _docker("image", "inspect", MINER_IMAGE).returncode != 0:
        pytest.fail(f"{MINER_IMAGE} is missing: run sim_images/setup-docker.sh (CI's .ci/run does)", pytrace=False)
    return request.param


@pytest.fixture
def stack(evaluator_image, eval_mode, databases, postgres_admin_url, tmp_path, monkeypatch) -> Iterator[dict]:
    """The production processes on this host: code server (gRPC) and daemon, on PostgreSQL."""
    # One run at a time in docker mode: a cycle's partitions then share one deployment per miner
    # (a partition running beside another would get replicas: deployments are leased exclusively).
    settings = {"KINITRO_EXECUTOR_EVAL_MODE": eval_mode}
    if eval_mode == "docker":
        settings["KINITRO_EXECUTOR_BATCH_SIZE"] = "1"
    with _production_stack(evaluator_image, databases, postgres_admin_url, tmp_path, monkeypatch,
                           settings) as running:
        yield {**running, "eval_mode": eval_mode}


@contextlib.contextmanager
def _production_stack(evaluator_image: str, databases: tuple[str, str], postgres_admin_url: str, tmp_path: Path,
                      monkeypatch, settings: dict[str, str]) -> Iterator[dict]:
    """Code server and daemon as production runs them, with the daemon's environment being what
    deploy/.env.example sets for this host, updated with `settings`."""
    from sqlalchemy import make_url

    from kinitro_dagster.demo import publish_demo_chain

    dagster_db, warehouse_url = databases
    admin = make_url(postgres_admin_url)
    state, home = tmp_path / "state", tmp_path / "dagster_home"
    home.mkdir()
    publish_demo_chain(state / "chain.yaml", state / "hub", 100)
    (home / "dagster.yaml").write_text(yaml.safe_dump(_instance_yaml(state)))
    port = _free_port()
    (home / "workspace.yaml").write_text(yaml.safe_dump({"load_from": [{"grpc_server": {
        "host": "127.0.0.1", "port": port, "location_name": "kinitro"}}]}))
    env = {  # what deploy/.env.example sets, for this host; forwarded into run containers
        "DAGSTER_HOME": str(home), "DAGSTER_PG_USERNAME": admin.username or "postgres",
        "DAGSTER_PG_PASSWORD": admin.password or "trust", "DAGSTER_PG_HOST": admin.host or "127.0.0.1",
        "DAGSTER_PG_DB": dagster_db, "KINITRO_EVALUATOR_IMAGE": evaluator_image, "KINITRO_RUN_NETWORK": "host",
        "KINITRO_SCHEDULER_DATABASE_URL": warehouse_url,
        "KINITRO_SCHEDULER_ENV_IDS": os.environ["KINITRO_SCHEDULER_ENV_IDS"],
        "KINITRO_SCHEDULER_EPISODES_PER_ENV": str(EPISODES), "KINITRO_SCHEDULER_EVAL_INTERVAL_SECONDS": "1200",
        "KINITRO_SCHEDULER_CHAIN": "file", "KINITRO_SCHEDULER_NETWORK": "finney", "KINITRO_SCHEDULER_NETUID": "1",
        "KINITRO_SEED_SECRET": "integration-test-secret",
        "KINITRO_EXECUTOR_MAX_TIMESTEPS": "150", "KINITRO_EXECUTOR_USE_IMAGES": "false",
        # The demo track: the demo miners are scripted experts reading MetaWorld's state.
        "KINITRO_EXECUTOR_PRIVILEGED_STATE": "true",
        "KINITRO_EXECUTOR_MINER_HF_TOKEN": "", "KINITRO_EXECUTOR_MINER_DEPLOYMENT_IMAGE": MINER_IMAGE,
        "KINITRO_EXECUTOR_MINER_DEPLOYMENT_CPU": "1", "KINITRO_EXECUTOR_MINER_DEPLOYMENT_MEMORY": "2Gi",
        "KINITRO_EXECUTOR_MINER_DEPLOYMENT_TTL_SECONDS": "600",
        "KINITRO_EXECUTOR_MINER_DEPLOYMENT_WARMUP_TIMEOUT": "120",
        # Left empty as in .env.example: the run containers fall back to their defaults.
        "KINITRO_EXECUTOR_MAX_WORKERS": "", "KINITRO_EXECUTOR_MINERS_PER_WORKER": "",
        "KINITRO_STATE_DIR": str(state), "HF_HUB_OFFLINE": "1",
        **settings,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    logs = {name: (tmp_path / f"{name}.log").open("w") for name in ("code", "daemon")}
    code = subprocess.Popen(
        [str(BIN / "dagster"), "api", "grpc", "--host", "127.0.0.1", "--port", str(port),
         "--module-name", "kinitro_dagster.definitions", "--working-directory", str(REPO)],
        cwd=REPO, env=os.environ.copy(), stdout=logs["code"], stderr=subprocess.STDOUT, start_new_session=True,
    )
    processes = [code]
    try:
        _wait_for_code_server(port, code, tmp_path / "code.log")
        processes.append(subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", str(home / "workspace.yaml")], cwd=home,
            env=os.environ.copy(), stdout=logs["daemon"], stderr=subprocess.STDOUT, start_new_session=True,
        ))
        yield {"home": home, "warehouse_url": warehouse_url, "logs": tmp_path, "environment": env}
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
        for log in logs.values():
            log.close()


def _wait_for_code_server(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the code server exited:\n{log.read_text()[-3000:]}", pytrace=False)
        check = subprocess.run([str(BIN / "dagster"), "api", "grpc-health-check", "--port", str(port)],
                               capture_output=True, timeout=30)
        if check.returncode == 0:
            return
        time.sleep(1)
    pytest.fail(f"the code server did not answer within 120 s:\n{log.read_text()[-3000:]}", pytrace=False)


def _runs(instance):
    return instance.get_runs()


def _started_step(instance, run_id: str) -> bool:
    import dagster as dg

    return bool(instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_START).records)


def _log_tail(stack: dict) -> str:
    return "\n".join(f"--- {name}.log\n{(stack['logs'] / f'{name}.log').read_text()[-4000:]}"
                     for name in ("daemon", "code"))


def test_cycle_runs_in_containers_survives_a_killed_run_and_is_served(stack):
    import dagster as dg
    from dagster_postgres import PostgresRunStorage
    from fastapi.testclient import TestClient

    from kinitro_dagster.defs.partitions import ENABLED_ENV_IDS
    from kinitro_dagster.settings import ApiSettings
    from kinitro_dagster.sim.registry import env_family, env_id_to_partition_key
    from kinitro_dagster.warehouse.store import Warehouse
    from weights_api.app import create_app

    started = time.monotonic()
    since = str(int(time.time()) - 1)  # docker events from here on
    docker_mode = stack["eval_mode"] == "docker"
    victim_env = env_id_to_partition_key(ENABLED_ENV_IDS[0])
    store = Warehouse(stack["warehouse_url"])
    with dg.DagsterInstance.from_config(str(stack["home"])) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        victim, cycle = None, None
        while time.monotonic() - started < CYCLE_DEADLINE_S:
            runs = _runs(instance)
            cycles = instance.get_dynamic_partitions("cycles")
            cycle = cycles[0] if cycles else None
            if victim is None and cycle:
                victim = _kill_mid_partition(instance, runs, victim_env, cycle if docker_mode else None)
            if cycle and victim and store.weights_for_cycle(cycle) is not None and all(
                    r.is_finished for r in runs):
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"no weights within {CYCLE_DEADLINE_S} s (victim {victim}, cycle {cycle}); runs: "
                        f"{[(r.job_name, r.tags.get('dagster/partition'), r.status.value) for r in _runs(instance)]}"
                        f"\n{_log_tail(stack)}", pytrace=False)
        elapsed = time.monotonic() - started
        runs = _runs(instance)

        # The sensor opened exactly one cycle; every run ran in a container the launcher started.
        assert instance.get_dynamic_partitions("cycles") == [cycle]
        opener = [r for r in runs if r.job_name == "open_cycle"]
        assert len(opener) == 1 and opener[0].tags.get("dagster/sensor_name") == "cycle_sensor"
        assert all("docker/container_id" in r.tags for r in runs), [r.tags for r in runs]

        # Every episode run, the retry included, was queued with its env family (the queue's limits).
        episode_runs = [r for r in runs if "dagster/partition/env" in r.tags]
        assert len(episode_runs) == len(ENABLED_ENV_IDS) + 1, [r.tags for r in runs]
        assert all(r.tags.get("kinitro/env_family") == env_family(ENABLED_ENV_IDS[0]) for r in episode_runs), \
            [r.tags for r in episode_runs]
        assert not any("kinitro/env_family" in r.tags for r in runs if r not in episode_runs)

        # The killed run: failed by run monitoring, retried once, the retry succeeded.
        killed = instance.get_run_by_id(victim)
        assert killed.status == dg.DagsterRunStatus.FAILURE
        retries = [r for r in runs if r.tags.get("dagster/parent_run_id") == victim]
        assert [r.status for r in retries] == [dg.DagsterRunStatus.SUCCESS], [r.status for r in retries]
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs if r.run_id != victim), \
            [(r.job_name, r.status.value) for r in runs]

        # Rows in the warehouse: exactly miners × episodes per env partition, none duplicated.
        episodes = store.episodes_by_env(cycle)
        assert sorted(episodes) == sorted(ENABLED_ENV_IDS)
        for env_id, rows in episodes.items():
            assert len(rows) == MINERS_EVALUATED * EPISODES, env_id
            assert len({(r.uid, r.episode) for r in rows}) == len(rows), env_id
            # Every policy was deployed and served (in docker mode: by a container the run started).
            assert not [(r.uid, r.error) for r in rows if r.error_kind == "deployment_failed"], env_id

        if docker_mode:
            # Each miner was deployed once in the cycle, not once per env: the first episode run
            # started the policy containers on this host's engine, and every later run of the
            # cycle, the killed one's retry included, took them over. Scoring removed them.
            starts = _policy_container_starts(since)
            assert len(starts) == MINERS_EVALUATED and len({repo for repo, _ in starts}) == MINERS_EVALUATED, starts
            assert {owner for _, owner in starts} <= {r.tags["docker/container_id"] for r in episode_runs}, starts
            assert not _policy_containers(scope=cycle), "the cycle's policy containers outlived its scoring"
            scored = instance.get_latest_materialization_event(dg.AssetKey("pareto_scores")).asset_materialization
            assert scored.metadata["policy containers removed"].value == MINERS_EVALUATED, scored.metadata

        for asset in ("pareto_scores", "weights"):
            assert instance.get_latest_materialization_event(dg.AssetKey(asset)) is not None, asset

    # The weights API on the same warehouse serves the cycle's weights.
    api = TestClient(create_app(ApiSettings(database_url=stack["warehouse_url"])))
    body = api.get("/v1/weights/latest").json()
    assert body["cycle_id"] == cycle and body["block"] == int(cycle)
    weights = {int(uid): w for uid, w in body["weights"].items()}
    assert abs(sum(weights.values()) - 1.0) < 1e-9 and max(weights, key=weights.get) == 0  # the expert
    store.dispose()
    print(f"\ncycle {cycle}: sensor tick to weights in {elapsed:.0f} s, {len(runs)} runs in containers")


def _policy_containers(owner_container: str | None = None, scope: str | None = None) -> list[str]:
    """Policy containers (running or not) that the evaluator in `owner_container` started, or of a cycle."""
    label = f"kinitro.owner_container={owner_container}" if owner_container else f"kinitro.scope={scope}"
    out = _docker("ps", "-aq", "--filter", "label=kinitro.deployment=1", "--filter", f"label={label}")
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def _policy_container_starts(since: str) -> list[tuple[str, str]]:
    """(repo, the evaluator's own container) of each policy container started since `since`."""
    out = _docker("events", "--since", since, "--until", str(int(time.time()) + 1),
                  "--filter", "type=container", "--filter", "event=start", "--filter", "label=kinitro.deployment=1",
                  "--format", '{{index .Actor.Attributes "kinitro.repo"}} '
                              '{{index .Actor.Attributes "kinitro.owner_container"}}')  # fmt: skip
    assert out.returncode == 0, out.stderr
    return [tuple(line.split()) for line in out.stdout.splitlines() if line.strip()]


def _kill_mid_partition(instance, runs, env_key: str, docker_cycle: str | None) -> str | None:
    """`docker kill` the run container of `env_key`'s episode partition once its step has started
    (and, with `docker_cycle`, once that cycle has a policy container running)."""
    for run in runs:
        if (run.tags.get("dagster/partition/env") == env_key and run.status.value == "STARTED"
                and "dagster/parent_run_id" not in run.tags and _started_step(instance, run.run_id)):
            container = run.tags["docker/container_id"]
            if docker_cycle and not _policy_containers(scope=docker_cycle):
                return None
            result = _docker("kill", container)
            assert result.returncode == 0, result.stderr
            return run.run_id
    return None


# Every guide setting a run can act on, at a value other than its default (the refused ones are
# refused at start-up: tests/test_settings.py). Local eval mode keeps this run short; the
# docker-mode settings still reach the run and are reported by it.
GUIDE_SETTINGS = {
    "KINITRO_SCHEDULER_EVAL_INTERVAL_SECONDS": "1800",
    "KINITRO_SCHEDULER_EPISODES_PER_ENV": "3",
    "KINITRO_SCHEDULER_PARETO_TEMPERATURE": "2.5",
    "KINITRO_SCHEDULER_CYCLE_TIMEOUT_SECONDS": "5400",
    "KINITRO_SCHEDULER_LOG_LEVEL": "DEBUG",
    "KINITRO_SCHEDULER_NETWORK": "test",
    "KINITRO_SCHEDULER_NETUID": "7",
    "KINITRO_SEED_SECRET": "every-setting-test-secret",
    "KINITRO_EXECUTOR_EVAL_MODE": "local",
    "KINITRO_EXECUTOR_MAX_TIMESTEPS": "120",
    "KINITRO_EXECUTOR_ACTION_TIMEOUT": "0.75",
    "KINITRO_EXECUTOR_EVAL_TIMEOUT": "250",
    "KINITRO_EXECUTOR_USE_IMAGES": "false",
    "KINITRO_EXECUTOR_PRIVILEGED_STATE": "true",
    "KINITRO_EXECUTOR_LOG_LEVEL": "WARNING",
    "KINITRO_EXECUTOR_MAX_WORKERS": "1",
    "KINITRO_EXECUTOR_MINERS_PER_WORKER": "2",
    "KINITRO_BACKEND_EVAL_MEM_LIMIT": "3g",
    "KINITRO_EXECUTOR_BATCH_SIZE": "1",
    "KINITRO_EXECUTOR_POLL_INTERVAL_SECONDS": "2",
    "KINITRO_EXECUTOR_EXECUTOR_ID": "it-executor-7",
    "KINITRO_EXECUTOR_API_URL": "http://127.0.0.1:18000",
    "KINITRO_EXECUTOR_MINER_HF_TOKEN": "hf_not_a_real_token",
    "KINITRO_EXECUTOR_MINER_DEPLOYMENT_IMAGE": "kinitro/miner-runner:v1",
    "KINITRO_EXECUTOR_MINER_DEPLOYMENT_TTL_SECONDS": "420",
    "KINITRO_EXECUTOR_MINER_DEPLOYMENT_WARMUP_TIMEOUT": "90",
    "KINITRO_EXECUTOR_MINER_DEPLOYMENT_CPU": "0.5",
    "KINITRO_EXECUTOR_MINER_DEPLOYMENT_MEMORY": "1536Mi",
    "KINITRO_API_HOST": "127.0.0.1",
    "KINITRO_API_PORT": "18000",
    "KINITRO_API_LOG_LEVEL": "WARNING",
}


def _until_weights(instance, store, stack: dict, each_poll=None) -> tuple[str, list]:
    """(cycle, runs) once the sensor's cycle has weights and every run has finished; `each_poll`
    sees the runs at every poll."""
    started = time.monotonic()
    while time.monotonic() - started < CYCLE_DEADLINE_S:
        runs = _runs(instance)
        if each_poll:
            each_poll(runs)
        cycles = instance.get_dynamic_partitions("cycles")
        if cycles and store.weights_for_cycle(cycles[0]) is not None and all(r.is_finished for r in runs):
            return cycles[0], _runs(instance)
        time.sleep(0.3)
    pytest.fail(f"no weights within {CYCLE_DEADLINE_S} s\n{_log_tail(stack)}", pytrace=False)


def _materializations(instance, asset: str) -> list:
    import dagster as dg

    result = instance.fetch_materializations(dg.AssetKey(asset), limit=100)
    return [record.asset_materialization for record in result.records]


def test_every_guide_setting_reaches_the_runs_that_use_it(evaluator_image, databases, postgres_admin_url,
                                                          tmp_path, monkeypatch):
    """The daemon has every guide setting at a non-default value; the sensor opens a cycle, the
    queue launches its runs into containers (DockerRunLauncher), and each run saw each value."""
    import dagster as dg
    from dagster._core.storage.tags import DOCKER_IMAGE_TAG

    from kinitro_dagster.defs.partitions import ENABLED_ENV_IDS
    from kinitro_dagster.settings import masked
    from kinitro_dagster.sim.seeds import episode_seeds
    from kinitro_dagster.warehouse.store import Warehouse

    family_image = f"{evaluator_image}-metaworld"  # a second tag: KINITRO_EXECUTOR_EVAL_IMAGES picks it
    assert _docker("tag", evaluator_image, family_image).returncode == 0
    settings = {**GUIDE_SETTINGS, "KINITRO_EXECUTOR_EVAL_IMAGES": json.dumps({"metaworld": family_image})}
    with _production_stack(evaluator_image, databases, postgres_admin_url, tmp_path, monkeypatch, settings) as stack:
        store = Warehouse(stack["warehouse_url"])
        in_flight: list[int] = []
        with dg.DagsterInstance.from_config(str(stack["home"])) as instance:
            cycle, runs = _until_weights(instance, store, stack, lambda runs: in_flight.append(
                sum(r.status.value in ("STARTING", "STARTED") for r in runs)))
            most_in_flight = max(in_flight)
            commitments = _materializations(instance, "miner_commitments")
            episode_materializations = _materializations(instance, "episode_results")

        daemon_env = stack["environment"]
        # The queue: KINITRO_EXECUTOR_BATCH_SIZE=1 runs at a time; every run tagged with the executor
        # id and the cycle timeout as its max runtime; episode runs in the env family's image.
        assert most_in_flight == 1, most_in_flight
        assert all(r.tags.get("kinitro/executor_id") == "it-executor-7" for r in runs), [r.tags for r in runs]
        assert all(r.tags.get("dagster/max_runtime") == "5400" for r in runs), [r.tags for r in runs]
        episode_runs = [r for r in runs if "dagster/partition/env" in r.tags]
        assert len(episode_runs) == len(ENABLED_ENV_IDS)
        assert {r.tags[DOCKER_IMAGE_TAG] for r in episode_runs} == {family_image}
        assert {r.tags[DOCKER_IMAGE_TAG] for r in runs if r not in episode_runs} == {evaluator_image}

        # The cycle recorded the scheduler's and the executor's episode settings (by the commitments
        # run, in its container), and every episode run played with them.
        recorded = store.get_cycle(cycle).config
        assert (recorded.episodes_per_env, recorded.eval_interval_blocks, recorded.pareto_temperature,
                recorded.cycle_timeout_seconds, recorded.max_timesteps, recorded.action_timeout,
                recorded.eval_timeout, recorded.use_images, recorded.privileged_state) == (
                3, 150, 2.5, 5400, 120, 0.75, 250.0, False, True)
        assert list(recorded.env_ids) == list(ENABLED_ENV_IDS)
        assert commitments[0].metadata["configuration"].data == recorded.to_json()
        block_hash = store.get_cycle(cycle).block_hash
        for env_id, rows in store.episodes_by_env(cycle).items():
            assert len(rows) == MINERS_EVALUATED * 3 and max(r.steps for r in rows) <= 120, env_id
            # Seeds derive from the operator's secret: the run had KINITRO_SEED_SECRET.
            seeds = episode_seeds(GUIDE_SETTINGS["KINITRO_SEED_SECRET"], block_hash, env_id, 3)
            assert sorted({r.seed for r in rows}) == sorted(set(seeds)), env_id
            assert not [r.error for r in rows if r.error_kind], env_id  # expert, privileged state: no errors

        # Each episode run container had every KINITRO_* variable the daemon has (secrets by digest)
        # and acted on the host settings: workers, deployments, log levels, its memory limit.
        expected_env = {k: masked(k, v) for k, v in daemon_env.items() if k.startswith("KINITRO_")}
        for materialization in episode_materializations:
            run_settings = materialization.metadata["run settings"].data
            assert expected_env.items() <= run_settings["environment"].items(), (expected_env, run_settings)
            assert run_settings["memory_limit_bytes"] == 3 * 1024**3
            assert (run_settings["log_level"], run_settings["executor_log_level"]) == ("DEBUG", "WARNING")
            assert {k: run_settings[k] for k in ("eval_mode", "max_workers", "miners_per_worker",
                                                  "miner_deployment_ttl_seconds", "miner_deployment_warmup_timeout",
                                                  "miner_deployment_cpu", "miner_deployment_memory")} == {
                "eval_mode": "local", "max_workers": 1, "miners_per_worker": 2, "miner_deployment_ttl_seconds": 420.0,
                "miner_deployment_warmup_timeout": 90.0, "miner_deployment_cpu": 0.5,
                "miner_deployment_memory": "1536Mi"}
            assert materialization.metadata["episode settings"].data["action_timeout"] == 0.75
        store.dispose()


def test_a_partition_in_step_containers_writes_the_rows_of_one_process(evaluator_image, databases,
                                                                        postgres_admin_url, tmp_path, monkeypatch):
    """KINITRO_EXECUTOR_MINERS_PER_SHARD=1 with KINITRO_EXECUTOR_STEP_EXECUTOR=docker: each env
    partition's three miners play in three `play_shard` steps, each in a container of its own that
    the run container started on this host's engine; the rows are those of one process playing the
    partition as one step."""
    import dagster as dg

    from kinitro_dagster.definitions import build_definitions
    from kinitro_dagster.defs.partitions import ENABLED_ENV_IDS, episode_key
    from kinitro_dagster.defs.resources import build_resources
    from kinitro_dagster.warehouse.store import Warehouse

    outcome = ("uid", "episode", "seed", "success", "steps", "total_reward", "error_kind", "error")
    settings = {"KINITRO_EXECUTOR_EVAL_MODE": "local", "KINITRO_EXECUTOR_MINERS_PER_SHARD": "1",
                "KINITRO_EXECUTOR_STEP_EXECUTOR": "docker", "KINITRO_EXECUTOR_MAX_WORKERS": "1"}
    with _production_stack(evaluator_image, databases, postgres_admin_url, tmp_path, monkeypatch, settings) as stack:
        store = Warehouse(stack["warehouse_url"])
        with dg.DagsterInstance.from_config(str(stack["home"])) as instance:
            cycle, runs = _until_weights(instance, store, stack)
            assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), [(r.job_name, r.status) for r in runs]
            episode_runs = [r for r in runs if "dagster/partition/env" in r.tags]
            assert len(episode_runs) == len(ENABLED_ENV_IDS)
            for run in episode_runs:
                launched = {e.step_key: e.dagster_event.event_specific_data.metadata["Docker container id"].value
                            for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_WORKER_STARTING)}
                shards = {k: v for k, v in launched.items() if k.startswith("episode_results.play_shard")}
                assert sorted(shards) == [f"episode_results.play_shard[shard_{i}]" for i in range(MINERS_EVALUATED)]
                containers = set(shards.values())
                assert len(containers) == MINERS_EVALUATED and run.tags["docker/container_id"] not in containers
        sharded = {env_id: [tuple(getattr(r, f) for f in outcome) for r in rows]
                   for env_id, rows in store.episodes_by_env(cycle).items()}

        # The same partitions played by one step in this process (the stack's settings, unsharded).
        monkeypatch.delenv("KINITRO_EXECUTOR_MINERS_PER_SHARD")
        monkeypatch.setenv("KINITRO_EXECUTOR_STEP_EXECUTOR", "process")
        defs = build_definitions(build_resources())
        (tmp_path / "one_process").mkdir()
        with dg.instance_for_test(temp_dir=str(tmp_path / "one_process")) as local:
            local.add_dynamic_partitions("cycles", [cycle])
            for env_id in ENABLED_ENV_IDS:
                result = defs.resolve_job_def("evaluate_env").execute_in_process(
                    instance=local, partition_key=str(episode_key(cycle, env_id)))
                assert result.success, env_id
        one_process = {env_id: [tuple(getattr(r, f) for f in outcome) for r in rows]
                       for env_id, rows in store.episodes_by_env(cycle).items()}
        store.dispose()

    assert sorted(sharded) == sorted(ENABLED_ENV_IDS)
    assert all(len(rows) == MINERS_EVALUATED * EPISODES for rows in sharded.values()), sharded
    assert sharded == one_process
    assert any(r[3] for rows in sharded.values() for r in rows)  # the expert succeeds: real episodes
