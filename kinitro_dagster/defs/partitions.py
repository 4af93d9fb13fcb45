"""Partitions: cycles are opened at chain blocks; envs are the enabled environment ids."""

from __future__ import annotations

import warnings

import dagster as dg

from kinitro_dagster.settings import SchedulerSettings
from kinitro_dagster.sim.registry import (
    METAWORLD_ENV_IDS,
    env_id_to_partition_key,
    partition_key_to_env_id,
    validate_env_ids,
)

CYCLE_KEY_DIGITS = 10

cycles = dg.DynamicPartitionsDefinition(name="cycles")


def enabled_env_ids(settings: SchedulerSettings | None = None) -> list[str]:
    """KINITRO_SCHEDULER_ENV_IDS as canonical ids (aliases normalized, each once, in order). Unset: the
    MetaWorld envs; other families (genesis/g1-v0) are enabled by naming them, as each needs its image."""
    settings = settings or SchedulerSettings()
    return validate_env_ids(settings.env_ids or METAWORLD_ENV_IDS)


# Fixed when the code location loads (KINITRO_SCHEDULER_ENV_IDS); every asset reads this one list.
ENABLED_ENV_IDS: tuple[str, ...] = tuple(enabled_env_ids())
envs = dg.StaticPartitionsDefinition([env_id_to_partition_key(e) for e in ENABLED_ENV_IDS])

cycle_env = dg.MultiPartitionsDefinition({"cycle": cycles, "env": envs})

# pareto_scores[cycle] reads every env partition of its cycle; episode_results[cycle|env] reads
# miner_commitments[cycle].
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)
    by_cycle = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="cycle")


def cycle_key(block: int) -> str:
    """Zero-padded so keys sort by block: 12300 -> '0000012300'."""
    return f"{block:0{CYCLE_KEY_DIGITS}d}"


def cycle_block(key: str) -> int:
    if not key.isdigit():
        raise ValueError(f"cycle key {key!r} is not a block number")
    return int(key)


def split_episode_key(partition_key: str | dg.MultiPartitionKey) -> tuple[str, str]:
    """An episode_results partition key -> (cycle key, env id)."""
    if isinstance(partition_key, dg.MultiPartitionKey):
        keys = partition_key.keys_by_dimension
        return keys["cycle"], partition_key_to_env_id(keys["env"])
    # The string form joins dimension keys in the order of the sorted dimension names: cycle|env.
    cycle, sep, env_key = str(partition_key).partition("|")
    if not sep:
        raise ValueError(f"episode partition key {partition_key!r} is not 'cycle|env'")
    return cycle, partition_key_to_env_id(env_key)


def episode_key(cycle: str, env_id: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"cycle": cycle, "env": env_id_to_partition_key(env_id)})
