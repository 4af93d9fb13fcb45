"""Environment ids, their families, and the 1:1 mapping to Dagster partition keys.

Dagster partition keys may not contain '/', so `metaworld/pick-place-v3` is stored as
`metaworld.pick-place-v3`. This module is the one place that converts between the two.
"""

from __future__ import annotations

METAWORLD_ENV_IDS: tuple[str, ...] = (
    "metaworld/reach-v3",
    "metaworld/push-v3",
    "metaworld/pick-place-v3",
    "metaworld/door-open-v3",
    "metaworld/drawer-open-v3",
    "metaworld/drawer-close-v3",
    "metaworld/button-press-topdown-v3",
    "metaworld/peg-insert-side-v3",
)

ENV_IDS: tuple[str, ...] = METAWORLD_ENV_IDS

_SEPARATOR = "/"
_KEY_SEPARATOR = "."


def env_family(env_id: str) -> str:
    """`metaworld/reach-v3` -> `metaworld`."""
    family, _, _ = env_id.partition(_SEPARATOR)
    return family


def env_task_name(env_id: str) -> str:
    """`metaworld/reach-v3` -> `reach-v3` (the simulator's own task name)."""
    _, _, name = env_id.partition(_SEPARATOR)
    return name


def validate_env_id(env_id: str) -> str:
    if env_id not in ENV_IDS:
        known = ", ".join(ENV_IDS)
        raise ValueError(f"unknown env id {env_id!r}; known env ids: {known}")
    return env_id


def env_id_to_partition_key(env_id: str) -> str:
    family, sep, name = env_id.partition(_SEPARATOR)
    if not sep or not family or not name or _KEY_SEPARATOR in family:
        raise ValueError(f"env id {env_id!r} is not of the form 'family/task'")
    return f"{family}{_KEY_SEPARATOR}{name}"


def partition_key_to_env_id(key: str) -> str:
    family, sep, name = key.partition(_KEY_SEPARATOR)
    if not sep or not family or not name:
        raise ValueError(f"partition key {key!r} is not of the form 'family.task'")
    return f"{family}{_SEPARATOR}{name}"
