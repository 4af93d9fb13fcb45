"""The embedded default, end to end: local demo miners, a file chain, one full cycle.

`kinitro demo` publishes the bundled miners into a local hub cache, commits them on a file chain,
advances the chain by one eval interval, lets the real `cycle_sensor` open a cycle on the real
Dagster instance (SQLite under DAGSTER_HOME), runs the cycle's jobs, and prints the leaderboard
and the weights. The runs stay in the instance: `kinitro dev` shows them in the UI.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dagster import DagsterInstance, Definitions

    from kinitro_dagster.warehouse.records import WeightsRecord

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_MINERS = REPO_ROOT / "examples" / "miners"
DAGSTER_YAML = REPO_ROOT / "dagster.yaml"

DEMO_ENV_IDS = ["metaworld/reach-v3", "metaworld/push-v3", "metaworld/pick-place-v3"]
# Defaults for the embedded demo; any variable the operator sets wins.
DEMO_ENVIRONMENT = {
    "KINITRO_SCHEDULER_ENV_IDS": '["' + '","'.join(DEMO_ENV_IDS) + '"]',
    "KINITRO_SCHEDULER_EPISODES_PER_ENV": "3",
    "KINITRO_SCHEDULER_EVAL_INTERVAL_SECONDS": "3600",
    # The demo policies act on the privileged state, so the demo leaves the cameras off (rendering
    # is most of an episode's cost); KINITRO_EXECUTOR_USE_IMAGES=true sends them.
    "KINITRO_EXECUTOR_USE_IMAGES": "false",
    # The demo track: the bundled policies are scripted experts that read MetaWorld's state.
    "KINITRO_EXECUTOR_PRIVILEGED_STATE": "true",
    "HF_HUB_OFFLINE": "1",
    "MUJOCO_GL": "egl",
}
FIRST_HEAD_BLOCK = 1200
# The demo prints its own progress; Dagster's per-event console lines stay in the run's logs (UI).
QUIET_DAGSTER_CONSOLE = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass(frozen=True)
class DemoMiner:
    uid: int
    hotkey: str
    source: str | None  # example directory; None for a malformed commitment
    repo: str
    block: int


DEMO_MINERS = [
    DemoMiner(0, "5DemoExpert", "scripted_expert", "kinitro-demo/scripted-expert", 100),
    DemoMiner(1, "5DemoNoisy", "noisy_expert", "kinitro-demo/noisy-expert", 110),
    DemoMiner(2, "5DemoRandom", "random_policy", "kinitro-demo/random-policy", 120),
    # Same files as the expert under another name: evaluated once, as the earlier committer's.
    DemoMiner(3, "5DemoCopycat", "scripted_expert", "copycat/totally-original-policy", 130),
    # Not a repo:revision commitment: recorded as unparseable, the cycle goes on.
    DemoMiner(4, "5DemoTypo", None, "not a commitment", 140),
]


def apply_demo_environment() -> None:
    """Set the demo defaults and the instance home before Dagster definitions are imported."""
    from kinitro_dagster.settings import state_dir

    for key, value in DEMO_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(state_dir() / "dagster_home")))
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copy(DAGSTER_YAML, home / "dagster.yaml")


def publish_demo_chain(chain_file: Path, hub_cache: Path, interval_blocks: int) -> int:
    """Publish the example miners to the hub cache and write the chain; return the new head block.

    Each call advances the head by one eval interval, as if that much time had passed on chain.
    """
    from kinitro_dagster.miners.chain import ChainCommitment, FileChain, write_chain_file
    from kinitro_dagster.miners.hub import publish_to_cache

    head = FIRST_HEAD_BLOCK
    if chain_file.exists():
        head = FileChain(chain_file).head().number + interval_blocks
    commitments = []
    for miner in DEMO_MINERS:
        if miner.source is None:
            raw = miner.repo
        else:
            revision = publish_to_cache(EXAMPLE_MINERS / miner.source, miner.repo, cache_dir=hub_cache)
            raw = f"{miner.repo}:{revision[:8]}:demo-deployment"
        commitments.append(ChainCommitment(uid=miner.uid, hotkey=miner.hotkey, raw=raw, block=miner.block))
    write_chain_file(chain_file, commitments, name="kinitro-demo", head_block=head)
    return head


def run_demo() -> str:
    """Advance the demo chain, open a cycle with the sensor and run it; return the cycle key."""
    apply_demo_environment()
    import dagster as dg

    from kinitro_dagster.definitions import defs
    from kinitro_dagster.settings import SchedulerSettings

    settings = SchedulerSettings()
    resources = defs.resources
    head = publish_demo_chain(Path(resources["chain"].chain_file), Path(resources["hub"].cache_dir),
                              settings.interval_blocks)
    log.info("chain head advanced to block %s", head)
    started = time.monotonic()
    with dg.DagsterInstance.get() as instance:
        cycle = open_cycle(instance, resources)
        run_cycle(defs, instance, cycle)
    log.info("cycle %s done in %.1fs", cycle, time.monotonic() - started)
    return cycle


def open_cycle(instance: DagsterInstance, resources: dict) -> str:
    """One tick of the real `cycle_sensor`, applied to the instance as the daemon would."""
    import dagster as dg

    from kinitro_dagster.defs.partitions import cycles
    from kinitro_dagster.defs.sensors import cycle_sensor

    tick = cycle_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    if not isinstance(tick, dg.SensorResult):
        raise RuntimeError(f"cycle_sensor did not open a cycle: {tick.skip_message}")
    cycle = tick.run_requests[0].partition_key
    instance.add_dynamic_partitions(cycles.name, [cycle])
    return cycle


def run_cycle(defs: Definitions, instance: DagsterInstance, cycle: str) -> None:
    """Run a cycle's jobs in dependency order, in this process, recorded on the instance."""
    from kinitro_dagster.defs.partitions import ENABLED_ENV_IDS, episode_key

    _run(defs, instance, "open_cycle", cycle)
    for env_id in ENABLED_ENV_IDS:
        _run(defs, instance, "evaluate_env", episode_key(cycle, env_id))
    _run(defs, instance, "score_cycle", cycle)


def _run(defs: Definitions, instance: DagsterInstance, job_name: str, partition_key: str) -> None:
    started = time.monotonic()
    print(f"  {job_name} [{partition_key}] ...", flush=True)
    result = defs.resolve_job_def(job_name).execute_in_process(
        instance=instance, partition_key=partition_key, run_config=QUIET_DAGSTER_CONSOLE
    )
    if not result.success:
        raise RuntimeError(f"{job_name} [{partition_key}] failed: see the run in the Dagster UI (make dev)")
    print(f"  {job_name} [{partition_key}] done in {time.monotonic() - started:.1f}s", flush=True)


def leaderboard(database_url: str, cycle: str) -> str:
    """Success per env, points and weight per miner, plus the miners that were not evaluated."""
    from kinitro_dagster.defs.markdown import md_table
    from kinitro_dagster.warehouse.store import Warehouse

    store = Warehouse(database_url)
    commitments = {c.uid: c for c in store.commitments(cycle)}
    rates: dict[int, dict[str, float]] = {}
    for score in store.miner_scores(cycle):
        rates.setdefault(score.uid, {})[score.env_id] = score.success_rate
    env_ids = sorted({env for per_env in rates.values() for env in per_env})
    pareto = {p.uid: p for p in store.pareto_scores(cycle)}
    published = store.weights_for_cycle(cycle)
    weights = published.weights if published else {}
    rows = []
    for uid, commitment in sorted(commitments.items()):
        name = commitment.repo or commitment.raw
        if uid in rates:
            rows.append((uid, name, *(f"{rates[uid].get(e, 0.0):.0%}" for e in env_ids),
                         pareto[uid].points if uid in pareto else 0, f"{weights.get(uid, 0.0):.4f}", "evaluated"))
        else:
            rows.append((uid, name, *("" for _ in env_ids), "", "0", f"{commitment.status.value}: {commitment.reason}"))
    rows.sort(key=lambda row: -float(row[-2]))
    header = ["uid", "policy", *(e.split("/")[-1] for e in env_ids), "points", "weight", "status"]
    block = published.block if published else "-"
    return f"cycle {cycle} (block {block})\n\n" + md_table(header, rows) + _provenance(published)


def _provenance(published: WeightsRecord | None) -> str:
    """Who signed the weights, where the audit export is, and how a validator checks both."""
    if published is None or published.attestation is None:
        return ""
    from kinitro_dagster.defs.audit import audit_dir
    from kinitro_dagster.settings import SchedulerSettings

    signer = published.attestation.signer
    whose = ("" if SchedulerSettings().wallet_name else " (a throwaway demo hotkey under the state dir's wallets/: "
             "it proves nothing; production names a wallet, KINITRO_SCHEDULER_WALLET_NAME)")
    return (f"\n\nweights digest {published.attestation.digest[:16]}…, signed by {signer}{whose}\n"
            f"audit export: {audit_dir(published.cycle_key)}/*.parquet\n"
            f"check it as a validator would (with `make dev` running): "
            f".venv/bin/kinitro verify --signer {signer}")
