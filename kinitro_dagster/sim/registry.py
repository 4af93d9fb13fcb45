"""Environment ids, their families and simulator tasks, and the 1:1 mapping to Dagster partition keys.

The ids are Kinitro's registry (DESIGN §5). Two of them name their MetaWorld task differently
(`metaworld/button-press-v3` plays MetaWorld's `button-press-topdown-v3`, `metaworld/peg-insert-v3`
its `peg-insert-side-v3`); earlier versions of this project used the task names as ids, and those
are accepted as aliases and normalized to Kinitro's ids (`normalize_env_id`).

Dagster partition keys may not contain '/', so `metaworld/pick-place-v3` is stored as
`metaworld.pick-place-v3`. This module is the one place that converts between the two.
"""

from __future__ import annotations

from collections.abc import Iterable

# Kinitro's env id -> the MetaWorld task it plays (`metaworld.env_dict.ALL_V3_ENVIRONMENTS` key).
METAWORLD_TASK_NAMES: dict[str, str] = {
    "metaworld/reach-v3": "reach-v3",
    "metaworld/push-v3": "push-v3",
    "metaworld/pick-place-v3": "pick-place-v3",
    "metaworld/door-open-v3": "door-open-v3",
    "metaworld/drawer-open-v3": "drawer-open-v3",
    "metaworld/drawer-close-v3": "drawer-close-v3",
    "metaworld/button-press-v3": "button-press-topdown-v3",
    "metaworld/peg-insert-v3": "peg-insert-side-v3",
}

METAWORLD_ENV_IDS: tuple[str, ...] = tuple(METAWORLD_TASK_NAMES)

ENV_IDS: tuple[str, ...] = METAWORLD_ENV_IDS

# Our earlier ids (the MetaWorld task names) -> Kinitro's.
ENV_ID_ALIASES: dict[str, str] = {
    "metaworld/button-press-topdown-v3": "metaworld/button-press-v3",
    "metaworld/peg-insert-side-v3": "metaworld/peg-insert-v3",
}

_TASK_NAMES: dict[str, str] = {**METAWORLD_TASK_NAMES}  # every family's id -> task

_SEPARATOR = "/"
_KEY_SEPARATOR = "."


def env_family(env_id: str) -> str:
    """`metaworld/reach-v3` -> `metaworld`."""
    family, _, _ = env_id.partition(_SEPARATOR)
    return family


def normalize_env_id(env_id: str) -> str:
    """An alias -> its canonical (Kinitro) id; any other id is returned as given."""
    return ENV_ID_ALIASES.get(env_id, env_id)


def validate_env_id(env_id: str) -> str:
    """The canonical id of a known env id or alias; `ValueError` naming the known ones otherwise."""
    canonical = normalize_env_id(env_id)
    if canonical not in ENV_IDS:
        known = ", ".join(ENV_IDS)
        aliases = ", ".join(f"{alias} -> {target}" for alias, target in ENV_ID_ALIASES.items())
        raise ValueError(f"unknown env id {env_id!r}; known env ids: {known} (accepted aliases: {aliases})")
    return canonical


def validate_env_ids(env_ids: Iterable[str]) -> list[str]:
    """Canonical ids of `env_ids` in their order, each once (an id and its alias count as one)."""
    return list(dict.fromkeys(validate_env_id(env_id) for env_id in env_ids))


def env_task_name(env_id: str) -> str:
    """The simulator's own task name: `metaworld/button-press-v3` -> `button-press-topdown-v3`."""
    return _TASK_NAMES[validate_env_id(env_id)]


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
