"""Env ids: Kinitro's are canonical, our earlier ones (the MetaWorld task names) are aliases."""

from __future__ import annotations

import metaworld
import pytest

from kinitro_dagster.sim.registry import (
    ENV_ID_ALIASES,
    ENV_IDS,
    env_family,
    env_id_to_partition_key,
    env_task_name,
    normalize_env_id,
    partition_key_to_env_id,
    validate_env_id,
    validate_env_ids,
)

KINITRO_ENV_IDS = (  # kinitro/environments/registry.py at ea963b9 (DESIGN §5)
    "metaworld/reach-v3",
    "metaworld/push-v3",
    "metaworld/pick-place-v3",
    "metaworld/door-open-v3",
    "metaworld/drawer-open-v3",
    "metaworld/drawer-close-v3",
    "metaworld/button-press-v3",
    "metaworld/peg-insert-v3",
    "genesis/g1-v0",
)


def test_env_ids_are_kinitros() -> None:
    assert ENV_IDS == KINITRO_ENV_IDS


def test_renamed_ids_play_the_metaworld_task_kinitro_plays() -> None:
    assert env_task_name("metaworld/button-press-v3") == "button-press-topdown-v3"
    assert env_task_name("metaworld/peg-insert-v3") == "peg-insert-side-v3"
    assert env_task_name("metaworld/pick-place-v3") == "pick-place-v3"


def test_every_env_id_names_a_metaworld_task() -> None:
    metaworld_ids = [e for e in ENV_IDS if e.startswith("metaworld/")]
    assert {env_task_name(e) for e in metaworld_ids} <= set(metaworld.env_dict.ALL_V3_ENVIRONMENTS)


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [("metaworld/button-press-topdown-v3", "metaworld/button-press-v3"),
     ("metaworld/peg-insert-side-v3", "metaworld/peg-insert-v3")],
)  # fmt: skip
def test_old_ids_normalize_to_kinitros_and_play_the_same_task(alias: str, canonical: str) -> None:
    assert ENV_ID_ALIASES[alias] == canonical
    assert normalize_env_id(alias) == validate_env_id(alias) == canonical
    assert normalize_env_id(canonical) == validate_env_id(canonical) == canonical  # idempotent
    assert env_task_name(alias) == env_task_name(canonical)
    assert env_family(alias) == env_family(canonical) == "metaworld"


def test_canonical_ids_pass_through_unchanged() -> None:
    for env_id in ENV_IDS:
        assert normalize_env_id(env_id) == validate_env_id(env_id) == env_id


def test_unknown_id_names_the_known_ids_and_the_aliases() -> None:
    with pytest.raises(ValueError, match="unknown env id 'metaworld/button-press-wall-v3'") as excinfo:
        validate_env_id("metaworld/button-press-wall-v3")
    message = str(excinfo.value)
    assert all(env_id in message for env_id in ENV_IDS)
    assert "metaworld/button-press-topdown-v3 -> metaworld/button-press-v3" in message
    with pytest.raises(ValueError, match="unknown env id"):
        env_task_name("metaworld/no-such-task-v3")
    assert normalize_env_id("metaworld/no-such-task-v3") == "metaworld/no-such-task-v3"


def test_a_list_of_ids_becomes_canonical_ids_each_once_in_order() -> None:
    given = ["metaworld/peg-insert-side-v3", "metaworld/reach-v3", "metaworld/peg-insert-v3",
             "metaworld/button-press-topdown-v3", "metaworld/reach-v3"]  # fmt: skip
    assert validate_env_ids(given) == ["metaworld/peg-insert-v3", "metaworld/reach-v3", "metaworld/button-press-v3"]


def test_partition_keys_map_both_ways() -> None:
    assert env_id_to_partition_key("metaworld/button-press-v3") == "metaworld.button-press-v3"
    for env_id in ENV_IDS:
        assert partition_key_to_env_id(env_id_to_partition_key(env_id)) == env_id
