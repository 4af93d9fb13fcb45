"""The `kinitro` command: one group, a section per concern.

Each section's options map onto the settings classes in `kinitro_dagster.settings`, so a flag
and its `KINITRO_*` variable always mean the same thing.
"""

from __future__ import annotations

import time
from pathlib import Path

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Kinitro evaluation backend on Dagster."""


# --- demo and dev: the embedded default -------------------------------------------------------


@main.command()
def demo() -> None:
    """Run one full evaluation cycle on the embedded default and print the weights."""
    import logging

    from kinitro_dagster.demo import leaderboard, run_demo

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    click.echo("Kinitro demo: local miners, file chain, SQLite warehouse, Dagster instance under DAGSTER_HOME")
    cycle = run_demo()
    from kinitro_dagster.settings import SchedulerSettings

    click.echo("\n" + leaderboard(SchedulerSettings().database_url, cycle) + "\n")
    click.echo("Open the Dagster UI and the weights API:  make dev   (UI http://127.0.0.1:3000, "
               "API http://127.0.0.1:8000/v1/weights/latest)")


@main.command()
@click.option("--ui-port", default=3000, show_default=True, help="Dagster UI port.")
@click.option("--api-port", default=8000, show_default=True, help="Weights API port.")
def dev(ui_port: int, api_port: int) -> None:
    """Start `dagster dev` (UI + daemon) on this workspace and the weights API, until Ctrl-C."""
    import subprocess
    import sys

    from kinitro_dagster.demo import REPO_ROOT, apply_demo_environment

    apply_demo_environment()
    bin_dir = Path(sys.executable).parent
    processes = [
        subprocess.Popen([str(bin_dir / "dagster"), "dev", "-w", str(REPO_ROOT / "workspace.yaml"),
                          "-p", str(ui_port), "-h", "127.0.0.1"], cwd=REPO_ROOT),
        subprocess.Popen([str(bin_dir / "kinitro"), "api", "--host", "127.0.0.1", "--port", str(api_port)],
                         cwd=REPO_ROOT),
    ]
    click.echo(f"Dagster UI http://127.0.0.1:{ui_port}  weights API http://127.0.0.1:{api_port}  (Ctrl-C stops both)")
    try:
        while all(p.poll() is None for p in processes):
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


# --- env: simulated environments (owner: sim / demo miners) -------------------------------------

# Python modules each env family needs on this machine.
_FAMILY_MODULES = {"metaworld": ("mujoco", "metaworld"), "procthor": ("ai2thor",)}


def _env_availability(env_id: str, check: bool) -> str:
    """'yes', or 'no: <why>'; with `check`, build the env and render one frame to prove it."""
    import importlib.util

    from kinitro_dagster.sim.registry import env_family

    modules = _FAMILY_MODULES.get(env_family(env_id))
    if modules is None:
        return "no: no simulator for this family in this build"
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        return f"no: missing Python package(s) {', '.join(missing)}"
    if not check:
        return "yes"
    from kinitro_dagster.sim.base import EnvConfig, make_env

    try:
        env = make_env(env_id, EnvConfig(max_steps=1))
        try:
            env.reset(0)
        finally:
            env.close()
    except Exception as exc:
        return f"no: {type(exc).__name__}: {exc}"
    return "yes (reset and rendered)"


@main.group()
def env() -> None:
    """Simulated environments: list them, try a policy on one."""


@env.command("list")
@click.option("--check", is_flag=True, help="Build each env and render a frame instead of only checking packages.")
def env_list(check: bool) -> None:
    """Env ids, their family, and whether they can run on this machine."""
    from kinitro_dagster.sim.registry import ENV_IDS, env_family

    width = max(len(env_id) for env_id in ENV_IDS)
    click.echo(f"{'ENV ID':<{width}}  {'FAMILY':<10}  AVAILABLE")
    for env_id in ENV_IDS:
        click.echo(f"{env_id:<{width}}  {env_family(env_id):<10}  {_env_availability(env_id, check)}")


class _FrameSavingEnv:
    """Wraps a SimEnv and writes every camera frame it returns as DIR/episode_NNN/<camera>_SSS.png."""

    def __init__(self, env, directory: Path) -> None:
        self.env, self.env_id, self.config = env, env.env_id, env.config
        self.directory = directory
        self.episode_dir = directory
        self.episodes = 0
        self.steps = 0

    def reset(self, seed: int) -> dict:
        self.episode_dir = self.directory / f"episode_{self.episodes:03d}"
        self.episode_dir.mkdir(parents=True, exist_ok=True)
        self.episodes += 1
        self.steps = 0
        observation = self.env.reset(seed)
        self._save(observation)
        return observation

    def step(self, action):
        result = self.env.step(action)
        self.steps += 1
        self._save(result.observation)
        return result

    def task_config(self) -> dict:
        return self.env.task_config()

    def close(self) -> None:
        self.env.close()

    def _save(self, observation: dict) -> None:
        import base64

        import numpy as np
        from PIL import Image

        for camera, image in observation["rgb"].items():
            pixels = np.frombuffer(base64.b64decode(image["data"]), dtype=image["dtype"]).reshape(image["shape"])
            Image.fromarray(pixels).save(self.episode_dir / f"{camera}_{self.steps:03d}.png")


@env.command("test")
@click.argument("env_id")
@click.option(
    "--policy",
    "policy_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Miner directory (server.py, policy.py, rl_interface.py), e.g. examples/miners/scripted_expert.",
)
@click.option("--episodes", default=1, show_default=True, type=click.IntRange(min=1), help="Episodes to play.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Episode i plays seed+i.")
@click.option(
    "--save-images",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write every camera frame the policy sees as PNG under this directory.",
)
@click.option("--images/--no-images", default=None, help="Render cameras (KINITRO_EXECUTOR_USE_IMAGES; default on).")
@click.option(
    "--privileged/--no-privileged",
    default=None,
    help="Send MetaWorld's 39-d state in obs.extra['state'] (KINITRO_EXECUTOR_PRIVILEGED_STATE; default on).",
)
@click.option("--max-steps", type=click.IntRange(min=1), default=None, help="Steps per episode (default 500).")
@click.option("--act-timeout", type=float, default=None, help="Seconds a policy gets per /act (default 0.5).")
def env_test(
    env_id: str,
    policy_dir: Path,
    episodes: int,
    seed: int,
    save_images: Path | None,
    images: bool | None,
    privileged: bool | None,
    max_steps: int | None,
    act_timeout: float | None,
) -> None:
    """Play episodes of ENV_ID against the policy in --policy, over the real HTTP protocol.

    The policy's server runs as a local subprocess: not isolated, so only for policies you trust.
    Prints success and steps per episode; exits 1 if an episode ended by a policy error.
    """
    from kinitro_dagster.miners.deployments import DeploymentError, LocalDeployment
    from kinitro_dagster.miners.policy_client import PolicyClient
    from kinitro_dagster.settings import ExecutorSettings
    from kinitro_dagster.sim.base import EnvConfig, make_env
    from kinitro_dagster.sim.registry import validate_env_id
    from kinitro_dagster.sim.rollout import run_episode

    settings = ExecutorSettings()
    use_images = settings.use_images if images is None else images
    if save_images is not None and not use_images:
        raise click.UsageError("--save-images needs rendered cameras: drop --no-images")
    try:
        validate_env_id(env_id)
        config = EnvConfig(
            max_steps=max_steps or settings.max_timesteps,
            use_images=use_images,
            privileged_state=settings.privileged_state if privileged is None else privileged,
        )
        sim = make_env(env_id, config)
    except (ValueError, ImportError) as exc:
        raise click.ClickException(str(exc)) from exc
    if save_images is not None:
        sim = _FrameSavingEnv(sim, save_images)
    click.echo(f"{env_id}: {episodes} episode(s) of {policy_dir} (images {'on' if use_images else 'off'}, "
               f"privileged state {'on' if config.privileged_state else 'off'}, {config.max_steps} steps)")  # fmt: skip
    failures = 0
    try:
        with LocalDeployment(policy_dir, warmup_timeout_s=settings.miner_deployment_warmup_timeout) as server:
            client = PolicyClient(server.base_url, act_timeout_s=act_timeout or settings.action_timeout)
            with client:
                successes = 0
                for episode in range(episodes):
                    first_success: list[int] = []

                    def note_success(step: int, result, first_success=first_success) -> None:
                        if result.success and not first_success:
                            first_success.append(step)

                    record = run_episode(sim, client, uid=0, episode=episode, seed=seed + episode,
                                         on_step=note_success)  # fmt: skip
                    successes += record.success
                    failures += record.error_kind is not None
                    click.echo(_describe_episode(record, first_success[0] if first_success else None))
    except DeploymentError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        sim.close()
    click.echo(f"{successes}/{episodes} episodes succeeded" + (f", {failures} ended by an error" if failures else ""))
    if save_images is not None:
        click.echo(f"frames written under {save_images}/episode_NNN/<camera>_<step>.png")
    if failures:
        raise SystemExit(1)


def _describe_episode(record, first_success: int | None) -> str:
    outcome = f"success (first at step {first_success})" if record.success else "failure"
    text = f"episode {record.episode} seed {record.seed}: {outcome}, {record.steps} steps, "
    text += f"reward {record.total_reward:.1f}, {record.wall_seconds:.1f} s"
    if record.latency_p50_ms is not None:
        text += f", act p50 {record.latency_p50_ms:.1f} ms p99 {record.latency_p99_ms:.1f} ms"
    if record.error_kind:
        text += f"\n  ended by {record.error_kind}: {record.error}"
    return text
