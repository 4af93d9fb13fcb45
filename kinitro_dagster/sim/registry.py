"""Env families and their ids, and the 1:1 mapping of env ids to Dagster partition keys.

A family is one entry (`EnvFamily`) naming, not importing, its implementation: the `SimEnv`
class as an entry-point string (`"kinitro_dagster.sim.metaworld:MetaWorldEnv"`), its env ids
with the simulator's task for each, aliases, the Python modules a host needs to run it, the
image its episode runs start from in production and its budget of concurrent episode runs.
`make_env`, `kinitro env list`, the rollout workers' preload, the run coordinator's family
budgets and the run launcher's image all read it, so a new family is one module plus one entry.

MetaWorld and Genesis are built in. Other families register through the package entry-point group
`kinitro_dagster.env_families` (in a package's pyproject: `[project.entry-points."kinitro_dagster.env_families"]`
`genesis = "my_package.genesis:FAMILY"`), each naming an `EnvFamily`; the module it names is
imported when this one is, so it must stay light (the simulator itself is imported by the
entry point's class, on first use).

MetaWorld's ids are Kinitro's registry (DESIGN §5). Two of them name their task differently
(`metaworld/button-press-v3` plays MetaWorld's `button-press-topdown-v3`, `metaworld/peg-insert-v3`
its `peg-insert-side-v3`); earlier versions of this project used the task names as ids, and those
are accepted as aliases and normalized to Kinitro's ids (`normalize_env_id`).

Dagster partition keys may not contain '/', so `metaworld/pick-place-v3` is stored as
`metaworld.pick-place-v3`. This module is the one place that converts between the two.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "kinitro_dagster.env_families"


@dataclass(frozen=True)
class EnvFamily:
    """One env family (module docstring)."""

    name: str  # the env ids' prefix: `metaworld` in `metaworld/reach-v3`
    entry_point: str  # "module:Class" of its SimEnv: Class(env_id, config)
    tasks: Mapping[str, str]  # env id -> the simulator's own task name
    aliases: Mapping[str, str] = field(default_factory=dict)  # an earlier id -> its env id
    modules: tuple[str, ...] = ()  # Python modules a host needs to run it
    image: str | None = None  # its episode runs' image in production (None: the run launcher's)
    max_concurrent_runs: int | None = None  # its episode runs at once (None: no family budget)
    cameras: tuple[str, ...] = ()  # what its envs render with images on (a policy may ask for fewer)

    def available(self) -> list[str]:
        """The modules this host lacks to run the family ([] when it can)."""
        return [module for module in self.modules if importlib.util.find_spec(module) is None]

    def env_class(self) -> type:
        """The SimEnv class, imported now."""
        module, _, name = self.entry_point.partition(":")
        return getattr(importlib.import_module(module), name)


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

METAWORLD = EnvFamily(
    name="metaworld",
    entry_point="kinitro_dagster.sim.metaworld:MetaWorldEnv",
    tasks=METAWORLD_TASK_NAMES,
    # Our earlier ids (the MetaWorld task names) -> Kinitro's.
    aliases={
        "metaworld/button-press-topdown-v3": "metaworld/button-press-v3",
        "metaworld/peg-insert-side-v3": "metaworld/peg-insert-v3",
    },
    modules=("mujoco", "metaworld"),
    cameras=("corner", "corner2"),
    max_concurrent_runs=4,  # a MuJoCo model and rollout workers each; deploy/dagster.yaml may say otherwise
)


METAWORLD_ENV_IDS: tuple[str, ...] = tuple(METAWORLD_TASK_NAMES)

# Kinitro's humanoid family (sim/genesis_g1.py): the Unitree G1 on Genesis.
GENESIS = EnvFamily(
    name="genesis",
    entry_point="kinitro_dagster.sim.genesis_g1:GenesisG1Env",
    tasks={"genesis/g1-v0": "g1-v0"},
    modules=("genesis", "torch"),
    image="kinitro/genesis:v1",
    cameras=("ego",),
    max_concurrent_runs=2,  # a Genesis process holds ~2 GiB and compiles on its first scene
)

BUILT_IN_FAMILIES: tuple[EnvFamily, ...] = (METAWORLD, GENESIS)


@functools.cache
def families() -> dict[str, EnvFamily]:
    """Every registered family by name: the built-in ones, then the entry points' (read once, on first
    use, so that a family's module may import this one and `sim.base`)."""
    found = {family.name: family for family in BUILT_IN_FAMILIES}
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            family = entry.load()
        except Exception as error:  # a broken plugin must not take the built-in families down
            log.error("env family entry point %s = %s cannot be loaded: %s", entry.name, entry.value, error)
            continue
        if not isinstance(family, EnvFamily) or family.name in found:
            log.error("env family entry point %s = %s is not a new EnvFamily: ignored", entry.name, entry.value)
            continue
        found[family.name] = family
    return found


def all_env_ids() -> tuple[str, ...]:
    """Every family's env ids, in registration order."""
    return tuple(env_id for family in families().values() for env_id in family.tasks)


def env_id_aliases() -> dict[str, str]:
    return {alias: env_id for family in families().values() for alias, env_id in family.aliases.items()}


def __getattr__(name: str) -> object:
    """`FAMILIES`, `ENV_IDS`, `ENV_ID_ALIASES`: what every family contributes, on first use (`families`)."""
    tables = {"FAMILIES": families, "ENV_IDS": all_env_ids, "ENV_ID_ALIASES": env_id_aliases}
    if name in tables:
        return tables[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_SEPARATOR = "/"
_KEY_SEPARATOR = "."


def env_family(env_id: str) -> str:
    """`metaworld/reach-v3` -> `metaworld`."""
    family, _, _ = env_id.partition(_SEPARATOR)
    return family


def family_of(env_id: str) -> EnvFamily:
    """The registered family of `env_id` (a known id or alias); `ValueError` naming the known ids otherwise."""
    return families()[env_family(validate_env_id(env_id))]


def preload_modules() -> list[str]:
    """The modules of every family this host can run: what rollout workers import before forking."""
    return [family.entry_point.partition(":")[0] for family in families().values() if not family.available()]


def normalize_env_id(env_id: str) -> str:
    """An alias -> its canonical (Kinitro) id; any other id is returned as given."""
    return env_id_aliases().get(env_id, env_id)


def validate_env_id(env_id: str) -> str:
    """The canonical id of a known env id or alias; `ValueError` naming the known ones otherwise."""
    canonical = normalize_env_id(env_id)
    known_ids = all_env_ids()
    if canonical not in known_ids:
        known = ", ".join(known_ids)
        aliases = ", ".join(f"{alias} -> {target}" for alias, target in env_id_aliases().items())
        raise ValueError(f"unknown env id {env_id!r}; known env ids: {known} (accepted aliases: {aliases})")
    return canonical


def validate_env_ids(env_ids: Iterable[str]) -> list[str]:
    """Canonical ids of `env_ids` in their order, each once (an id and its alias count as one)."""
    return list(dict.fromkeys(validate_env_id(env_id) for env_id in env_ids))


def env_task_name(env_id: str) -> str:
    """The simulator's own task name: `metaworld/button-press-v3` -> `button-press-topdown-v3`."""
    canonical = validate_env_id(env_id)
    return families()[env_family(canonical)].tasks[canonical]


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
