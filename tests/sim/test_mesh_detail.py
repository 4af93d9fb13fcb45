"""The cameras' simplified meshes: fewer triangles, frames within the stated tolerance, physics untouched."""

from __future__ import annotations

import numpy as np
import pytest

from kinitro_dagster.protocol import PolicyAction
from kinitro_dagster.sim.base import EnvConfig
from kinitro_dagster.sim.mesh_detail import FRAME_TOLERANCE, MIN_FACES, SIMPLIFIED_DETAIL, render_model
from kinitro_dagster.sim.metaworld import MetaWorldEnv

ENV_ID = "metaworld/pick-place-v3"


def frames(detail: float, seeds=(0, 1), steps: int = 12) -> np.ndarray:
    """Both cameras' frames of `steps` random-action steps per seed, at `detail`."""
    rng = np.random.default_rng(7)
    out = []
    with MetaWorldEnv(ENV_ID, EnvConfig(render_mesh_detail=detail)) as env:
        for seed in seeds:
            env.reset(seed)
            for _ in range(steps):
                native = rng.uniform(-1, 1, 4)
                env.step(PolicyAction(ee_twist=np.r_[native[:3], 0, 0, 0], gripper=(native[3] + 1) / 2))
                out.extend(env.render(camera) for camera in env.config.cameras)
    return np.array(out)


def test_simplified_frames_are_within_the_tolerance_of_the_full_meshes():
    full, simplified = frames(1.0), frames(SIMPLIFIED_DETAIL)
    difference = np.abs(full.astype(int) - simplified.astype(int))
    changed = (difference.max(axis=-1) > FRAME_TOLERANCE.changed_by).mean()
    assert difference.mean() <= FRAME_TOLERANCE.mean_abs
    assert changed <= FRAME_TOLERANCE.changed_fraction
    assert difference.any(), "the simplified meshes drew the very same frames: were they simplified?"


def test_simplified_frames_are_the_same_in_every_env():
    # Replays and verification re-render episodes: the simplification must not vary.
    first, second = (frames(SIMPLIFIED_DETAIL, seeds=(3,), steps=4) for _ in range(2))
    assert np.array_equal(first, second)


def test_only_the_copy_is_simplified_and_only_its_large_meshes():
    with MetaWorldEnv(ENV_ID, EnvConfig(use_images=False)) as env:
        model = env._model
        full_faces = model.mesh_facenum.copy()
        drawn = render_model(model, SIMPLIFIED_DETAIL)
        assert drawn is not model
        assert np.array_equal(model.mesh_facenum, full_faces)  # physics keeps the full meshes
        large = full_faces >= MIN_FACES
        assert large.any()
        target = np.maximum(MIN_FACES // 2, np.round(full_faces[large] * SIMPLIFIED_DETAIL))
        assert (drawn.mesh_facenum[large] <= target).all()
        assert np.array_equal(drawn.mesh_facenum[~large], full_faces[~large])
        assert drawn.mesh_facenum.sum() < 0.3 * full_faces.sum()
        assert render_model(model, 1.0) is model


def test_the_scene_is_built_from_the_physics_model():
    # What an env changes in its model at run time is drawn, although the GL context holds a copy.
    with MetaWorldEnv(ENV_ID, EnvConfig()) as env:
        env.reset(0)
        before = env.render("corner")
        env._model.geom_rgba[:, :3] = [0.0, 1.0, 0.0]
        after = env.render("corner")
    assert (after[..., 1].astype(int) - before[..., 1]).mean() > 20


@pytest.mark.parametrize("detail", [0.0, 1.5, -0.2])
def test_a_detail_outside_0_to_1_is_refused(detail):
    with pytest.raises(ValueError, match="render_mesh_detail must be in"):
        MetaWorldEnv(ENV_ID, EnvConfig(render_mesh_detail=detail))


def test_envs_of_a_task_share_one_renderer_and_each_draws_its_own_scene():
    config = EnvConfig(render_mesh_detail=SIMPLIFIED_DETAIL)
    assert EnvConfig().render_mesh_detail == 1.0  # the default draws the full meshes
    with MetaWorldEnv(ENV_ID, config) as alone:
        alone.reset(4)
        expected = alone.render("corner")
    first, second = MetaWorldEnv(ENV_ID, config), MetaWorldEnv(ENV_ID, config)
    try:
        assert first._renderer is second._renderer
        first.reset(3)
        second.reset(4)
        first.render("corner")  # the shared scene now holds the first env's
        assert np.array_equal(second.render("corner"), expected)
        first.close()  # the renderer stays for the env still using it
        assert np.array_equal(second.render("corner"), expected)
    finally:
        first.close()
        second.close()
    with MetaWorldEnv(ENV_ID, EnvConfig(render_mesh_detail=1.0)) as full:
        assert full._renderer is not second._renderer  # another detail: another context
