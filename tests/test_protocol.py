"""The action schemas `parse_action` accepts: end-effector channels or joint position targets."""

from __future__ import annotations

import numpy as np
import pytest

from kinitro_dagster.protocol import JOINT_TARGET_LIMIT, ErrorKind, PolicyError, parse_action


def _act(continuous: dict) -> dict:
    return {"action": {"continuous": continuous, "discrete": {}, "extra": {}}}


def test_joint_targets_are_read_as_given() -> None:
    action = parse_action(_act({"joint_pos_target": [0.5] * 43}))
    assert action.ee_twist is None and np.array_equal(action.joint_pos_target, np.full(43, 0.5))


def test_a_longer_joint_vector_is_cut_at_the_limit_and_integers_are_numbers() -> None:
    action = parse_action(_act({"joint_pos_target": [1] * (JOINT_TARGET_LIMIT + 10)}))
    assert action.joint_pos_target.shape == (JOINT_TARGET_LIMIT,)


@pytest.mark.parametrize(
    ("continuous", "message"),
    [
        ({"joint_pos_target": [0.1, float("nan")]}, "non-finite"),
        ({"joint_pos_target": [0.1, "x"]}, "non-number"),
        ({"joint_pos_target": []}, "list of numbers"),
        ({"joint_pos_target": 0.3}, "list of numbers"),
        ({"joint_pos_target": [0.0] * 43, "gripper": [1.0]}, "cannot come with"),
        ({"joint_targets": [0.0] * 43}, "unknown keys"),
    ],
)
def test_malformed_joint_actions_are_bad_actions_saying_why(continuous: dict, message: str) -> None:
    with pytest.raises(PolicyError, match=message) as caught:
        parse_action(_act(continuous))
    assert caught.value.kind is ErrorKind.BAD_ACTION


def test_end_effector_actions_are_unchanged() -> None:
    action = parse_action(_act({"ee_twist": [0.1, 0, 0, 0, 0, 0], "gripper": [2.0]}))
    assert action.joint_pos_target is None and action.gripper == 1.0 and action.ee_twist[0] == 0.1


def test_images_are_encoded_as_kinitros_encoded_image() -> None:
    import base64

    from kinitro_dagster.protocol import encode_image

    depth = np.arange(6, dtype=np.float32).reshape(2, 3)
    encoded = encode_image(depth)
    assert encoded["shape"] == [2, 3] and encoded["dtype"] == "float32"  # numpy's name, as Kinitro writes it
    decoded = np.frombuffer(base64.b64decode(encoded["data"]), dtype=encoded["dtype"]).reshape(encoded["shape"])
    assert np.array_equal(decoded, depth)
    assert encode_image(np.zeros((84, 84, 3), dtype=np.uint8))["dtype"] == "uint8"
