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
    path.write_text(json.dumps({"benchmark": "frames", "simplified_detail": 0.2,
                                "end_to_end_steps_per_s": {"before": 70.0, "default": images, "simplified": 2 * images},
                                "proprio_only_steps_per_s": proprio, "renderer": renderer, "cores": cores,
                                "measured_at": "2026-12-02T00:00:00Z"}) + "\n")  # fmt: skip
    return path


def test_a_cycle_is_its_steps_over_the_measured_rate(tmp_path):
    rates = MeasuredRates.load(write_rates(tmp_path / "frames.json"))

    def plan(cores: int, images: bool = True):
        return plan_cycle(miners=256, envs=8, episodes=50, max_steps=500, images=images, rates=rates,
                          cores_per_host=cores, interval_seconds=3600)  # fmt: skip

    sixteen = plan(16)
    assert sixteen.steps == 51_200_000
    assert sixteen.worker_core_hours == pytest.approx(51_200_000 / 200 / 3600)  # 71.1
    assert sixteen.host_core_hours == pytest.approx(2 * sixteen.worker_core_hours)  # a policy core beside each
    # A partition takes 4,000 s on 16 cores: no number of hosts fits it in the hour, whole.
    assert sixteen.partition_seconds == pytest.approx(4000) and sixteen.hosts is None
    # In shards: a miner's env takes 250 host-core s, so 230 fit a 16-core hour; two even shards of
    # 128 miners a partition, 16 hosts at once, 2,000 s.
    assert (sixteen.shard_miners, sixteen.spread_hosts) == (128, 16)
    assert sixteen.spread_wall_seconds == pytest.approx(2000)
    # On 32 cores a partition takes 2,000 s: one a host, 8 hosts; on 64, three a host (3 hosts, 3,000 s).
    assert (plan(32).hosts, plan(32).wall_seconds) == (8, pytest.approx(2000))
    assert (plan(64).hosts, plan(64).wall_seconds) == (3, pytest.approx(3000))
    simplified = plan_cycle(miners=256, envs=8, episodes=50, max_steps=500, images=True, rates=rates, mesh_detail=0.2,
                            cores_per_host=16, interval_seconds=3600)  # fmt: skip
    assert simplified.steps_per_core_s == 400.0  # the simplified meshes' measured rate
    with pytest.raises(ValueError, match=r"mesh detail 1\.0 and 0\.2, not 0\.5"):
        rates.images_rate(0.5)
    proprio = plan(16, images=False)
    assert proprio.hosts == 1 and proprio.wall_seconds == pytest.approx(2 * 51_200_000 / 2000 / 16)


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
    assert "51,200,000 steps" in result.output and "not possible with a partition on one host" in result.output
    assert "in shards of 128 miners (KINITRO_EXECUTOR_MINERS_PER_SHARD=128" in result.output
    assert "16 hosts of 16 cores, 33 min a cycle" in result.output
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
