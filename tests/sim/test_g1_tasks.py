"""Genesis family scenes and tasks: drawn from the seed, each success predicate on its own."""

from __future__ import annotations

import dataclasses

import pytest

from kinitro_dagster.sim.g1_tasks import (
    ARENA_RADIUS,
    COLORS,
    MIN_SPAWN_DISTANCE,
    MOVABLE_RADIUS,
    PROMPTS,
    SceneObject,
    Task,
    TaskType,
    generate_scene,
    generate_task,
    reward,
    success,
)

SEEDS = range(300)


def test_the_same_seed_gives_the_same_scene_and_task_and_other_seeds_differ() -> None:
    assert generate_scene(7) == generate_scene(7)
    assert generate_task(7, generate_scene(7)) == generate_task(7, generate_scene(7))
    scenes = {generate_scene(seed) for seed in range(50)}
    assert len(scenes) == 50


def test_scenes_follow_kinitros_ranges() -> None:
    for seed in SEEDS:
        scene = generate_scene(seed)
        assert 3 <= len(scene) <= 6
        assert len({obj.color for obj in scene}) == len(scene) and {obj.color for obj in scene} <= set(COLORS)
        movable = [obj for obj in scene if obj.movable]
        assert 1 <= len(movable) <= len(scene) - 1
        assert all(obj.movable for obj in scene[: len(movable)])  # the first k are the movable ones
        for obj in scene:
            x, y, z = obj.position
            distance = (x * x + y * y) ** 0.5
            outer = MOVABLE_RADIUS if obj.movable else ARENA_RADIUS
            assert MIN_SPAWN_DISTANCE <= distance <= outer and z == 0.05
            assert (0.03 <= obj.size <= 0.08) if obj.movable else (0.1 <= obj.size <= 0.25)
            assert obj.object_id.endswith(f"{obj.color}_{obj.shape}")


def test_every_task_kind_is_drawn_with_a_fitting_target_and_a_prompt_naming_it() -> None:
    kinds = set()
    for seed in SEEDS:
        scene = generate_scene(seed)
        task = generate_task(seed, scene)
        kinds.add(task.task_type)
        assert f"{task.target.color} {task.target.shape}" in task.prompt
        if task.task_type in (TaskType.PICKUP, TaskType.PLACE, TaskType.PUSH):
            assert task.target.movable  # a fixed landmark can be neither lifted nor pushed
        if task.task_type is TaskType.PLACE:
            assert task.destination is not None and not task.destination.movable
        if task.task_type is TaskType.PUSH:
            assert task.destination is not None and task.destination is not task.target
        if task.destination is not None:
            assert f"{task.destination.color} {task.destination.shape}" in task.prompt
        # No task is already done when the episode starts.
        spawn = {obj.object_id: obj.position for obj in scene}
        assert not success(task, base_position=(0.0, 0.0, 0.75), positions=spawn)
        assert any(template.format(color=task.target.color, shape=task.target.shape,
                                   dest_color=task.destination.color if task.destination else "",
                                   dest_shape=task.destination.shape if task.destination else "") == task.prompt
                   for template in PROMPTS[task.task_type])  # fmt: skip
    assert kinds == set(TaskType)


def _object(object_id: str, position: tuple[float, float, float], movable: bool = True) -> SceneObject:
    return SceneObject(object_id, "box", "red", 0.05, position, movable)


TARGET = _object("obj_00_red_box", (1.0, 0.0, 0.05))
LANDMARK = _object("obj_01_blue_box", (0.0, 2.0, 0.05), movable=False)


def _task(kind: TaskType, destination: SceneObject | None = None) -> Task:
    return Task(kind, "a prompt", TARGET, destination)


@pytest.mark.parametrize(
    ("base", "expected"),
    [((0.0, 0.0, 0.75), False), ((0.55, 0.0, 0.75), True), ((0.49, 0.1, 0.75), False), ((1.3, 0.3, 0.2), True)],
)
def test_navigate_succeeds_within_half_a_metre_of_the_targets_spawn_point(base, expected) -> None:
    # The target's live position does not matter: the spawn point is the goal (Kinitro's predicate).
    moved = {TARGET.object_id: (5.0, 5.0, 0.05)}
    assert success(_task(TaskType.NAVIGATE), base_position=base, positions=moved) is expected


@pytest.mark.parametrize(("height", "expected"), [(0.05, False), (0.19, False), (0.21, True), (1.0, True)])
def test_pickup_succeeds_once_the_target_is_15_cm_above_its_spawn_height(height, expected) -> None:
    positions = {TARGET.object_id: (1.0, 0.0, height)}
    assert success(_task(TaskType.PICKUP), base_position=(0, 0, 0.75), positions=positions) is expected


@pytest.mark.parametrize(
    ("position", "expected"),
    [((1.0, 0.0, 0.05), False), ((0.0, 1.75, 0.05), True), ((0.0, 1.75, 0.5), False), ((0.2, 1.8, 0.1), True)],
)
def test_place_succeeds_within_30_cm_in_3d_of_the_destination(position, expected) -> None:
    positions = {TARGET.object_id: position, LANDMARK.object_id: LANDMARK.position}
    assert success(_task(TaskType.PLACE, LANDMARK), base_position=(0, 0, 0.75), positions=positions) is expected


@pytest.mark.parametrize(
    ("position", "expected"),
    [((1.0, 0.0, 0.05), False), ((0.0, 1.6, 0.05), True), ((0.0, 1.6, 0.9), True), ((0.4, 1.6, 0.05), False)],
)
def test_push_succeeds_within_half_a_metre_in_the_plane_of_the_destination(position, expected) -> None:
    positions = {TARGET.object_id: position, LANDMARK.object_id: LANDMARK.position}
    assert success(_task(TaskType.PUSH, LANDMARK), base_position=(0, 0, 0.75), positions=positions) is expected


def test_reward_grows_toward_the_goal_and_a_fall_costs_one() -> None:
    task = _task(TaskType.NAVIGATE)
    spawn = {TARGET.object_id: TARGET.position}
    far = reward(task, base_position=(-2.0, 0.0, 0.75), positions=spawn, fallen=False)
    near = reward(task, base_position=(0.2, 0.0, 0.75), positions=spawn, fallen=False)
    assert 0.01 < far < near
    assert reward(task, base_position=(0.0, 0.0, 0.2), positions=spawn, fallen=True) == -1.0
    # Success on the step of a fall counts as success, as in Kinitro.
    assert reward(task, base_position=(0.6, 0.0, 0.2), positions=spawn, fallen=True) > 0


def test_tasks_are_frozen_values() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        TARGET.size = 1.0  # type: ignore[misc]
