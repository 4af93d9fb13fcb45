"""Scenes and tasks of the genesis family, drawn from the episode seed, with their success predicates.

Pure numpy: no simulator here, so each predicate is tested on its own and the same seed gives the
same scene and task in any process (common random numbers, DESIGN §4: every miner of a cycle
plays the same ones).

Scene (as Kinitro's `genesis/g1-v0` draws it, from `default_rng(seed)`): 3-6 objects on a flat
floor, each a box, sphere or cylinder of one of 8 colours (no colour twice). The first k are small
and movable (3-8 cm, spawned 0.8-1.75 m from the robot), the rest large fixed landmarks
(10-25 cm, 0.8-2.5 m); every object's centre spawns at z = 0.05 m.

Task (a second `default_rng(seed)` stream, as Kinitro's): one of navigate, pickup, place, push,
with a target (and a destination for place and push) and a prompt from Kinitro's templates.
Two of Kinitro's draws are changed here, because they make tasks no policy can be scored on:
- push targets only movable objects (Kinitro may ask to push a fixed landmark, which cannot move);
- a task already satisfied when the episode starts (a place or push whose objects spawn within the
  success radius) is drawn again from the same stream, up to `_MAX_DRAWS` times.

Success (Kinitro's predicates, on simulator state):
- navigate: the robot's base within 0.5 m (xy) of the target's spawn position;
- pickup: the target's centre higher than 0.15 m above its spawn height;
- place: the target within 0.3 m (3-D) of the destination's spawn position;
- push: the target within 0.5 m (xy) of the destination's spawn position.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np

ARENA_RADIUS = 2.5
MOVABLE_RADIUS = 2.5 * 0.7
MIN_SPAWN_DISTANCE = 0.8
SPAWN_HEIGHT = 0.05
OBJECT_COUNT = (3, 6)

NAVIGATE_RADIUS = 0.5
PICKUP_LIFT = 0.15
PLACE_RADIUS = 0.3
PUSH_RADIUS = 0.5
_MAX_DRAWS = 20

COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.9, 0.2, 0.2),
    "green": (0.2, 0.8, 0.2),
    "blue": (0.2, 0.3, 0.9),
    "yellow": (0.9, 0.9, 0.2),
    "orange": (0.9, 0.5, 0.1),
    "purple": (0.6, 0.2, 0.8),
    "cyan": (0.2, 0.8, 0.8),
    "white": (0.9, 0.9, 0.9),
}
SHAPES = ("box", "sphere", "cylinder")


class TaskType(enum.StrEnum):
    NAVIGATE = "navigate"
    PICKUP = "pickup"
    PLACE = "place"
    PUSH = "push"


PROMPTS: dict[TaskType, tuple[str, ...]] = {
    TaskType.NAVIGATE: ("Walk to the {color} {shape}.", "Go to the {color} {shape}.",
                        "Move towards the {color} {shape}.", "Navigate to the {color} {shape}.",
                        "Approach the {color} {shape}."),
    TaskType.PICKUP: ("Pick up the {color} {shape}.", "Grab the {color} {shape}.", "Lift the {color} {shape}.",
                      "Take the {color} {shape}.", "Get the {color} {shape}."),
    TaskType.PLACE: ("Place the {color} {shape} near the {dest_color} {dest_shape}.",
                     "Put the {color} {shape} next to the {dest_color} {dest_shape}.",
                     "Set the {color} {shape} by the {dest_color} {dest_shape}.",
                     "Move the {color} {shape} to the {dest_color} {dest_shape}."),
    TaskType.PUSH: ("Push the {color} {shape} towards the {dest_color} {dest_shape}.",
                    "Shove the {color} {shape} to the {dest_color} {dest_shape}.",
                    "Nudge the {color} {shape} towards the {dest_color} {dest_shape}."),
}  # fmt: skip


@dataclass(frozen=True)
class SceneObject:
    object_id: str  # "obj_00_red_box"
    shape: str  # box (size = edge), sphere (size = radius), cylinder (radius; height 2 x size)
    color: str
    size: float  # metres
    position: tuple[float, float, float]  # spawn position of its centre
    movable: bool  # small and free; otherwise a fixed landmark

    @property
    def rgb(self) -> tuple[float, float, float]:
        return COLORS[self.color]


@dataclass(frozen=True)
class Task:
    task_type: TaskType
    prompt: str
    target: SceneObject
    destination: SceneObject | None = None


def generate_scene(seed: int) -> tuple[SceneObject, ...]:
    """The episode's objects (module docstring), drawn in Kinitro's order."""
    rng = np.random.default_rng(seed)
    count = int(rng.integers(OBJECT_COUNT[0], OBJECT_COUNT[1] + 1))
    colors = list(COLORS)
    rng.shuffle(colors)
    movable_count = min(max(1, int(rng.integers(1, max(2, count - 1)))), count - 1)
    objects = []
    for index in range(count):
        shape = str(rng.choice(SHAPES))
        movable = index < movable_count
        size = float(rng.uniform(0.03, 0.08) if movable else rng.uniform(0.1, 0.25))
        angle = float(rng.uniform(0.0, 2.0 * math.pi))
        outer = MOVABLE_RADIUS if movable else ARENA_RADIUS
        radius = math.sqrt(float(rng.uniform(MIN_SPAWN_DISTANCE**2, outer**2)))
        position = (radius * math.cos(angle), radius * math.sin(angle), SPAWN_HEIGHT)
        objects.append(SceneObject(f"obj_{index:02d}_{colors[index]}_{shape}", shape, colors[index], size,
                                   position, movable))  # fmt: skip
    return tuple(objects)


def generate_task(seed: int, scene: tuple[SceneObject, ...]) -> Task:
    """The episode's task over `scene` (module docstring)."""
    rng = np.random.default_rng(seed)
    movable = [obj for obj in scene if obj.movable]
    landmarks = [obj for obj in scene if not obj.movable]
    task = None
    for _ in range(_MAX_DRAWS):
        task = _draw_task(rng, scene, movable, landmarks)
        if not success(task, base_position=(0.0, 0.0, 0.0), positions=_spawn_positions(scene)):
            return task
    return task


def _pick[T](rng: np.random.Generator, items: list[T]) -> T:
    return items[int(rng.integers(0, len(items)))]


def _draw_task(rng: np.random.Generator, scene: tuple[SceneObject, ...], movable: list[SceneObject],
               landmarks: list[SceneObject]) -> Task:  # fmt: skip
    task_type = _pick(rng, list(TaskType))
    destination = None
    if task_type is TaskType.NAVIGATE:
        target = _pick(rng, list(scene))
    elif task_type is TaskType.PICKUP:
        target = _pick(rng, movable)
    elif task_type is TaskType.PLACE:
        target, destination = _pick(rng, movable), _pick(rng, landmarks)
    else:
        target = _pick(rng, movable)
        destination = _pick(rng, [obj for obj in scene if obj is not target])
    template = _pick(rng, list(PROMPTS[task_type]))
    prompt = template.format(color=target.color, shape=target.shape,
                             dest_color=destination.color if destination else "",
                             dest_shape=destination.shape if destination else "")  # fmt: skip
    return Task(task_type, prompt, target, destination)


def _spawn_positions(scene: tuple[SceneObject, ...]) -> dict[str, tuple[float, float, float]]:
    return {obj.object_id: obj.position for obj in scene}


def success(task: Task, *, base_position: tuple[float, ...], positions: dict[str, tuple[float, ...]]) -> bool:
    """Whether `task` is done, given the robot base's position and every object's current position."""
    target = np.asarray(positions[task.target.object_id], dtype=np.float64)
    if task.task_type is TaskType.NAVIGATE:
        reach = np.asarray(base_position, dtype=np.float64)[:2] - np.asarray(task.target.position)[:2]
        return bool(np.linalg.norm(reach) < NAVIGATE_RADIUS)
    if task.task_type is TaskType.PICKUP:
        return bool(target[2] > task.target.position[2] + PICKUP_LIFT)
    assert task.destination is not None
    offset = target - np.asarray(task.destination.position, dtype=np.float64)
    if task.task_type is TaskType.PLACE:
        return bool(np.linalg.norm(offset) < PLACE_RADIUS)
    return bool(np.linalg.norm(offset[:2]) < PUSH_RADIUS)


def reward(task: Task, *, base_position: tuple[float, ...], positions: dict[str, tuple[float, ...]],
           fallen: bool) -> float:  # fmt: skip
    """Kinitro's shaped step reward (recorded, never scored): alive bonus plus progress, -1 once fallen."""
    done = success(task, base_position=base_position, positions=positions)
    if fallen and not done:
        return -1.0
    base = np.asarray(base_position, dtype=np.float64)
    target = np.asarray(positions[task.target.object_id], dtype=np.float64)
    if task.task_type is TaskType.NAVIGATE:
        return 0.01 + 0.1 * _closeness(base[:2], np.asarray(task.target.position)[:2])
    if task.task_type is TaskType.PICKUP:
        return 0.01 + 0.05 * _closeness(base[:2], target[:2]) + (1.0 if done else 0.0)
    assert task.destination is not None
    destination = np.asarray(task.destination.position, dtype=np.float64)
    if task.task_type is TaskType.PLACE:
        return 0.01 + 0.1 * _closeness(target, destination)
    return 0.01 + 0.1 * _closeness(target[:2], destination[:2])


def _closeness(a: np.ndarray, b: np.ndarray) -> float:
    return max(0.0, 1.0 - float(np.linalg.norm(a - b)) / 5.0)
