"""`kinitro env list` and `kinitro env test` (real policy server, real MuJoCo)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from kinitro_dagster.cli import main
from kinitro_dagster.sim.registry import ENV_IDS

os.environ.setdefault("MUJOCO_GL", "egl")

MINERS = Path(__file__).resolve().parents[2] / "examples" / "miners"


def test_env_list_shows_every_env_with_family_and_availability() -> None:
    result = CliRunner().invoke(main, ["env", "list"])
    assert result.exit_code == 0, result.output
    for env_id in ENV_IDS:
        family = env_id.partition("/")[0]
        assert any(line.startswith(env_id) and family in line and "yes" in line
                   for line in result.output.splitlines()), env_id  # fmt: skip
    assert "genesis/g1-v0" in ENV_IDS
    assert "metaworld/button-press-v3" in result.output and "topdown" not in result.output  # Kinitro's ids


def test_env_test_takes_an_old_id_and_plays_its_kinitro_env() -> None:
    args = ["env", "test", "metaworld/peg-insert-side-v3", "--policy", str(MINERS / "random_policy"),
            "--no-images", "--max-steps", "2"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("metaworld/peg-insert-v3: 1 episode(s)")


def test_env_test_plays_episodes_over_http_and_saves_frames(tmp_path: Path) -> None:
    args = ["env", "test", "metaworld/reach-v3", "--policy", str(MINERS / "random_policy"), "--episodes", "2",
            "--seed", "4", "--max-steps", "3", "--save-images", str(tmp_path)]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "episode 0 seed 4: failure, 3 steps" in result.output
    assert "episode 1 seed 5: failure, 3 steps" in result.output
    assert "0/2 episodes succeeded" in result.output
    frames = {p.name for p in (tmp_path / "episode_001").iterdir()}
    assert frames == {f"{camera}_{step:03d}.png" for camera in ("corner", "corner2") for step in range(4)}
    assert Image.open(tmp_path / "episode_001" / "corner_003.png").size == (84, 84)


@pytest.mark.slow
def test_env_test_reports_the_expert_solving_the_task_without_images() -> None:
    args = ["env", "test", "metaworld/reach-v3", "--policy", str(MINERS / "scripted_expert"),
            "--no-images", "--privileged", "--max-steps", "100"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "episode 0 seed 0: success (first at step" in result.output
    assert "1/1 episodes succeeded" in result.output


def test_env_test_exits_1_when_the_policy_errors() -> None:
    args = ["env", "test", "metaworld/reach-v3", "--policy", str(MINERS / "scripted_expert"),
            "--no-images", "--no-privileged", "--max-steps", "5"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert "ended by http_error" in result.output and "privileged" in result.output


def test_env_test_rejects_unknown_env_and_images_flag_conflict(tmp_path: Path) -> None:
    policy = str(MINERS / "random_policy")
    unknown = CliRunner().invoke(main, ["env", "test", "metaworld/nope-v3", "--policy", policy])
    assert unknown.exit_code != 0 and "metaworld/reach-v3" in unknown.output
    conflict = CliRunner().invoke(
        main, ["env", "test", "metaworld/reach-v3", "--policy", policy, "--no-images", "--save-images", str(tmp_path)]
    )
    assert conflict.exit_code == 2 and "--no-images" in conflict.output
