"""`kinitro plan`: what a cycle needs (core-hours, hosts, wall time), from this host's measured rates."""

from __future__ import annotations

import os
from pathlib import Path

import click


@click.command()
@click.option("--miners", type=click.IntRange(min=1), required=True, help="Miners with a commitment.")
@click.option("--envs", type=click.IntRange(min=1), required=True, help="Envs a cycle evaluates.")
@click.option("--episodes", type=click.IntRange(min=1), default=None,
              help="Episodes per miner and env [default: KINITRO_SCHEDULER_EPISODES_PER_ENV].")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Steps an episode may last [default: KINITRO_EXECUTOR_MAX_TIMESTEPS].")
@click.option("--images/--no-images", default=None, help="Cameras rendered [default: KINITRO_EXECUTOR_USE_IMAGES].")
@click.option("--gpu", is_flag=True, help="Plan GPU hosts: needs --rates measured on one.")
@click.option("--cores-per-host", type=click.IntRange(min=2), default=None,
              help="Cores of each evaluator host [default: the measuring host's].")
@click.option("--interval", "interval_seconds", type=click.IntRange(min=1), default=None,
              help="Seconds a cycle may take [default: KINITRO_SCHEDULER_EVAL_INTERVAL_SECONDS].")
@click.option("--rates", "rates_path", type=click.Path(path_type=Path), default=None,
              help="bench_frames.py --save output [default: <state dir>/benchmarks/frames.json].")
def plan(miners: int, envs: int, episodes: int | None, steps: int | None, images: bool | None, gpu: bool,
         cores_per_host: int | None, interval_seconds: int | None, rates_path: Path | None) -> None:
    """Core-hours, hosts and wall time a cycle of MINERS x ENVS x EPISODES needs, and whether it fits
    the eval interval, from the rates benchmarks/bench_frames.py measured (an upper bound: every
    episode is counted at its full length)."""
    from kinitro_dagster.capacity import MeasuredRates, RatesMissing, plan_cycle
    from kinitro_dagster.settings import ExecutorSettings, SchedulerSettings, state_dir

    executor, scheduler = ExecutorSettings(), SchedulerSettings()
    try:
        rates = MeasuredRates.load(rates_path or state_dir() / "benchmarks" / "frames.json")
    except RatesMissing as exc:
        raise click.ClickException(str(exc)) from exc
    if gpu and not rates.on_gpu:
        raise click.ClickException(
            f"--gpu plans GPU hosts, but {rates.source} was measured with {rates.renderer} (the CPU): run "
            "bench_frames.py --save on a GPU host (MUJOCO_EGL_DEVICE_ID=<its GPU>) and pass --rates <that file>")
    if rates.on_gpu and not gpu:
        raise click.ClickException(
            f"{rates.source} was measured on a GPU ({rates.renderer}): add --gpu, or pass --rates of a CPU host")
    use_images = executor.use_images if images is None else images
    episodes = episodes or scheduler.episodes_per_env
    steps = steps or executor.max_timesteps
    hosts_cores = cores_per_host or rates.cores
    interval_seconds = interval_seconds or scheduler.eval_interval_seconds
    try:
        result = plan_cycle(miners=miners, envs=envs, episodes=episodes, max_steps=steps, images=use_images,
                            rates=rates, mesh_detail=executor.render_mesh_detail, cores_per_host=hosts_cores,
                            interval_seconds=interval_seconds)  # fmt: skip
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    rendering = (f"{'GPU' if gpu else 'CPU'} rendering, mesh detail {executor.render_mesh_detail}" if use_images
                 else "nothing rendered")
    click.echo(f"cycle: {miners} miners x {envs} envs x {episodes} episodes x <= {steps} steps = {result.steps:,} "
               f"steps, {'cameras' if use_images else 'no cameras'}, {rendering}")
    click.echo(f"rate: {result.steps_per_core_s:,.0f} steps/s a worker core (measured {rates.measured_at} with "
               f"{rates.renderer}, {rates.source})")  # fmt: skip
    click.echo(f"work: {result.worker_core_hours:,.1f} worker core-hours, {result.host_core_hours:,.1f} with the "
               "policies' cores beside them")  # fmt: skip
    interval = _duration(result.interval_seconds)
    click.echo(f"one partition (an env) on one host of {hosts_cores} cores: {_duration(result.partition_seconds)}; "
               f"the whole cycle on that host: {_duration(result.single_host_wall_seconds)}")  # fmt: skip
    if result.hosts is not None:
        click.echo(f"within the {interval} interval: {result.hosts} host(s) of {hosts_cores} cores, "
                   f"{_duration(result.wall_seconds)} a cycle")  # fmt: skip
    else:
        click.echo(f"within the {interval} interval: not possible with a partition on one host; in shards of "
                   f"{result.shard_miners} miners (KINITRO_EXECUTOR_MINERS_PER_SHARD={result.shard_miners}, a shard "
                   f"a pod: KINITRO_EXECUTOR_STEP_EXECUTOR=k8s): {result.spread_hosts} hosts of {hosts_cores} cores, "
                   f"{_duration(result.spread_wall_seconds)} a cycle")  # fmt: skip
    if result.hosts is not None and result.hosts > 1:
        click.echo(f"note: {result.hosts} hosts means {min(result.hosts, envs)} episode runs at once, each on its own "
                   "host: Kubernetes (dagster-k8s, deploy/helm/values.yaml) places them, and the run queue must allow "
                   "them (max_concurrent_runs, the kinitro/env_family limits); README, 'Bigger fleets'")  # fmt: skip
    elif result.hosts is None:
        click.echo(f"note: {result.spread_hosts} hosts means {envs} episode runs at once, each with "
                   f"{result.spread_hosts // envs} shard pods on hosts of their own: Kubernetes places them "
                   "(deploy/helm/values.yaml), and the run queue must allow the runs (max_concurrent_runs, the "
                   "kinitro/env_family limits); README, 'Bigger fleets'")  # fmt: skip
    if os.getloadavg()[0] > 1.5 and rates_path is None:
        click.echo("note: this host is busy now; the saved rates were measured when it ran the benchmark")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
