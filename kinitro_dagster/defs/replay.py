"""replay_episode: one recorded episode played again from the UI, with its frames in the run's metadata."""

import base64
import sys
from pathlib import Path

import dagster as dg

from kinitro_dagster.defs.resources import Evaluator, HubResource, WarehouseResource
from kinitro_dagster.miners.hub import SnapshotFetchError, cached_snapshot
from kinitro_dagster.miners.runtimes import ensure_venv_runtime
from kinitro_dagster.sim.registry import validate_env_id
from kinitro_dagster.sim.replay import ReplayError, check_snapshot, find_recorded, replay_dir
from kinitro_dagster.sim.replay import replay_episode as play_again
from kinitro_dagster.warehouse.records import EpisodeRecord


class EpisodeToReplay(dg.Config):
    """Which recorded episode: as `kinitro replay CYCLE ENV UID EPISODE` takes it."""

    cycle: str  # the cycle key (0000001200) or its block (1200)
    env_id: str
    uid: int
    episode: int


@dg.op(description="Plays the episode again from its recorded seed with the cycle's settings against the policy "
                   "snapshot the cycle evaluated, writes its frames (PNG), a GIF and a thumbnail under <state dir>/"
                   "replays/, and fails when the outcome differs from the record (success, steps, reward, error).")
def replay_recorded_episode(
    context: dg.OpExecutionContext, config: EpisodeToReplay, warehouse: WarehouseResource, hub: HubResource,
    evaluator: Evaluator,
) -> str:
    cycle = config.cycle.zfill(10)
    store = warehouse.store()
    try:
        env_id = validate_env_id(config.env_id)
        recorded = find_recorded(store, cycle, env_id, config.uid, config.episode)
        commitment = recorded.commitment
        snapshot = cached_snapshot(commitment.repo, commitment.revision, cache_dir=Path(hub.cache_dir)) or hub.fetch(
            commitment.repo, commitment.revision)
        check_snapshot(recorded, snapshot.content_hash)
    except (ValueError, ReplayError, SnapshotFetchError) as error:
        raise dg.Failure(str(error)) from error
    runtime_settings = evaluator.runtime_settings()
    runtime = ensure_venv_runtime(snapshot.path, runtime_settings) if runtime_settings else None
    result = play_again(env_id, recorded.configuration, recorded.episode, snapshot.path,
                        replay_dir(cycle, env_id, config.uid, config.episode),
                        python=runtime.python if runtime else sys.executable,
                        warmup_timeout=evaluator.miner_deployment_warmup_timeout)
    thumbnail = base64.b64encode(result.thumbnail.read_bytes()).decode()
    metadata = {
        "animation": dg.MetadataValue.path(str(result.animation)),
        "frames": dg.MetadataValue.path(str(result.frames[0].parent)),
        "thumbnail": dg.MetadataValue.md(f"![thumbnail](data:image/png;base64,{thumbnail})"),
        "recorded": dg.MetadataValue.json(_outcome(result.recorded)),
        "replayed": dg.MetadataValue.json(_outcome(result.replayed)),
        "policy": f"{commitment.repo}@{commitment.revision}",
    }
    if not result.reproduced:
        raise dg.Failure("the replay differs from the record: " + "; ".join(result.mismatches), metadata=metadata)
    context.add_output_metadata(metadata)
    return str(result.animation)


def _outcome(record: EpisodeRecord) -> dict[str, object]:
    return {"seed": record.seed, "success": record.success, "steps": record.steps,
            "total_reward": record.total_reward, "error_kind": record.error_kind}


@dg.job(description="Replay one recorded episode (config: cycle, env_id, uid, episode); the run's metadata has "
                    "the GIF's path and a thumbnail, and the run fails when the replay does not reproduce the record.")
def replay_episode():
    replay_recorded_episode()
