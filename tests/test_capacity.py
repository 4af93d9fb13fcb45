"""`kinitro plan`: a cycle's work and hosts from a host's measured rates (kinitro_dagster/capacity.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from kinitro_dagster.capacity import MeasuredRates, RatesMissing, plan_cycle
from kinitro_dagster.cli import main

ROOT = Path(__file__).resolve().parents[1]


def write_rates(path: Path, *, images: float = 200.0, proprio: float = 2000.0, renderer: str = "llvmpipe (LLVM 15)",
                cores: int = 2) -> Path:  # fmt: skip
    """A result line in bench_frames.py's shape (the slow test below checks the real one loads)."""
    path.write_text(json.dumps({"benchmark": "frames", "end_to_end_steps_per_s": {"before": 70.0, "default": images},
                                "proprio_only_steps_per_s": proprio, "renderer": renderer, "cores": cores,
                                "measured_at": "2026-12-02T00:00:00Z"}) + "\n")  # fmt: skip
    return path


def test_a_cycle_is_its_steps_over_the_measured_rate(tmp_path):
    rates = MeasuredRates.load(write_rates(tmp_path / "frames.json"))
    plan = plan_cycle(miners=256, envs=8, episodes=50, max_steps=500, images=True, rates=rates, cores_per_host=16,
                      interval_seconds=3600)  # fmt: skip
    assert plan.steps == 51_200_000
    assert plan.worker_core_hours == pytest.approx(51_200_000 / 200 / 3600)  # 71.1
    assert plan.host_core_hours == pytest.approx(2 * plan.worker_core_hours)  # a policy core beside each
    assert plan.hosts == 9 and plan.wall_seconds <= 3600 < plan.host_core_hours * 3600 / (8 * 16)
    assert plan.needs_sharding and not plan.fits_on_one_host
    proprio = plan_cycle(miners=256, envs=8, episodes=50, max_steps=500, images=False, rates=rates, cores_per_host=16,
                         interval_seconds=3600)  # fmt: skip
    assert proprio.hosts == 1 and proprio.fits_on_one_host and not proprio.needs_sharding


def test_missing_or_foreign_rates_say_what_to_run(tmp_path):
    with pytest.raises(RatesMissing, match=r"bench_frames\.py --save"):
        MeasuredRates.load(tmp_path / "absent.json")
    (tmp_path / "other.json").write_text('{"benchmark": "rollout"}')
    with pytest.raises(RatesMissing, match=r"not a bench_frames\.py result"):
        MeasuredRates.load(tmp_path / "other.json")


def test_the_cli_plans_and_refuses_rates_of_the_other_kind_of_host(tmp_path):
    cpu = write_rates(tmp_path / "cpu.json")
    gpu = write_rates(tmp_path / "gpu.json", images=3000.0, renderer="NVIDIA H200/PCIe/SSE2")
    runner = CliRunner()
    result = runner.invoke(main, ["plan", "--miners", "256", "--envs", "8", "--episodes", "50", "--rates", str(cpu),
                                  "--cores-per-host", "16"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "51,200,000 steps" in result.output and "9 host(s) of 16 cores" in result.output
    assert "spread over hosts" in result.output
    refused = runner.invoke(main, ["plan", "--miners", "4", "--envs", "1", "--gpu", "--rates", str(cpu)])
    assert refused.exit_code == 1 and "measured with llvmpipe" in refused.output
    refused = runner.invoke(main, ["plan", "--miners", "4", "--envs", "1", "--rates", str(gpu)])
    assert refused.exit_code == 1 and "add --gpu" in refused.output
    on_gpu = runner.invoke(main, ["plan", "--miners", "256", "--envs", "8", "--gpu", "--rates", str(gpu)])
    assert on_gpu.exit_code == 0 and "GPU rendering" in on_gpu.output


@pytest.mark.slow
def test_the_benchmark_saves_rates_that_plan_reads(tmp_path):
    env = {**os.environ, "KINITRO_STATE_DIR": str(tmp_path), "MUJOCO_GL": "egl"}
    subprocess.run([sys.executable, "benchmarks/bench_frames.py", "--rounds", "1", "--save"], cwd=ROOT, env=env,
                   check=True, capture_output=True, timeout=900)  # fmt: skip
    rates = MeasuredRates.load(tmp_path / "benchmarks" / "frames.json")
    assert rates.images_steps_per_s > 0 and rates.proprio_steps_per_s > rates.images_steps_per_s
    assert not rates.on_gpu  # this machine renders with llvmpipe
    result = subprocess.run([str(Path(sys.executable).parent / "kinitro"), "plan", "--miners", "2", "--envs", "1"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "CPU rendering" in result.stdout
