"""kinitro env: list the simulated environments, try a policy on one, build their images."""

from __future__ import annotations

import time
from pathlib import Path

import click

from kinitro_dagster.cli.common import policy_python

# --- env: simulated environments (owner: sim / demo miners) -------------------------------------

# Python modules each env family needs on this machine.
def _env_availability(env_id: str, check: bool) -> str:
    """'yes', or 'no: <why>'; with `check`, build the env and render one frame to prove it."""
    from kinitro_dagster.sim.registry import family_of

    missing = family_of(env_id).available()
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


@click.group()
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
    help="Send the privileged state in obs.extra['state'] (MetaWorld's 39-d state; the humanoid's task object "
    "positions), the demo track (KINITRO_EXECUTOR_PRIVILEGED_STATE; default off).",
)
@click.option("--max-steps", type=click.IntRange(min=1), default=None, help="Steps per episode (default 500).")
@click.option("--act-timeout", type=float, default=None, help="Seconds a policy gets per /act (default 0.5).")
@click.option(
    "--runtime/--no-runtime",
    "own_runtime",
    default=None,
    help="Serve the policy from the runtime its requirements.txt declares, built or reused as the "
    "evaluator does (KINITRO_EXECUTOR_MINER_RUNTIMES; default on); off: from this venv.",
)
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
    own_runtime: bool | None,
) -> None:
    """Play episodes of ENV_ID against the policy in --policy, over the real HTTP protocol.

    The policy's server runs as a local subprocess: not isolated, so only for policies you trust.
    It runs in the runtime its requirements declare, as in local eval mode (--no-runtime: this venv).
    Prints success and steps per episode; exits 1 if an episode ended by a policy error.
    """
    from kinitro_dagster.miners.deployments import DeploymentError, LocalDeployment
    from kinitro_dagster.miners.policy_client import PolicyClient
    from kinitro_dagster.settings import ExecutorSettings
    from kinitro_dagster.sim.base import EnvConfig, make_env
    from kinitro_dagster.sim.episode import run_episode
    from kinitro_dagster.sim.registry import validate_env_id

    settings = ExecutorSettings()
    use_images = settings.use_images if images is None else images
    if save_images is not None and not use_images:
        raise click.UsageError("--save-images needs rendered cameras: drop --no-images")
    try:
        env_id = validate_env_id(env_id)  # an alias plays, and is reported as, its canonical id
        config = EnvConfig(
            max_steps=max_steps or settings.max_timesteps,
            use_images=use_images,
            privileged_state=settings.privileged_state if privileged is None else privileged,
            physics_randomization=settings.physics_randomization,
            render_mesh_detail=settings.render_mesh_detail,
        )
        sim = make_env(env_id, config)  # a bad config is refused before any server starts
    except (ValueError, ImportError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{env_id}: {episodes} episode(s) of {policy_dir} (images {'on' if use_images else 'off'}, "
               f"privileged state {'on' if config.privileged_state else 'off'}, {config.max_steps} steps)")  # fmt: skip
    python = policy_python(policy_dir, settings, settings.miner_runtimes if own_runtime is None else own_runtime)
    failures = 0
    try:
        with LocalDeployment(policy_dir, python=python,
                             warmup_timeout=settings.miner_deployment_warmup_timeout) as server:
            sim = _env_for(sim, server.observation, save_images)
            client = PolicyClient(server.base_url, action_timeout=act_timeout or settings.action_timeout)
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


def _env_for(sim, request, save_images: Path | None):
    """`sim`, or the env the evaluator builds instead for what this policy's /health declared it reads."""
    from kinitro_dagster.sim.base import make_env, observed_config
    from kinitro_dagster.sim.frames import FrameSavingEnv

    observed = observed_config(sim.env_id, sim.config, request)
    if observed != sim.config:
        sent = ", ".join(observed.cameras) if observed.use_images else "no camera"
        click.echo(f"the policy's /health declares what it reads: sending {sent}"
                   f"{'' if observed.depth else ', no depth'}")  # fmt: skip
        sim.close()
        sim = make_env(sim.env_id, observed)
    return FrameSavingEnv(sim, save_images) if save_images is not None and observed.use_images else sim


def _describe_episode(record, first_success: int | None) -> str:
    outcome = f"success (first at step {first_success})" if record.success else "failure"
    text = f"episode {record.episode} seed {record.seed}: {outcome}, {record.steps} steps, "
    text += f"reward {record.total_reward:.1f}, {record.wall_seconds:.1f} s"
    if record.latency_p50_ms is not None:
        text += f", act p50 {record.latency_p50_ms:.1f} ms p99 {record.latency_p99_ms:.1f} ms"
    if record.error_kind:
        text += f"\n  ended by {record.error_kind}: {record.error}"
    return text


# --- env build: images for docker eval mode (owner: deployments) -------------------------------


@env.group("build")
def env_build() -> None:
    """Build the container images that KINITRO_EXECUTOR_EVAL_MODE=docker runs."""


@env_build.command("miner")
@click.option("--tag", default=None, help="Image tag [default: KINITRO_EXECUTOR_MINER_DEPLOYMENT_IMAGE].")
@click.option("--base-image", default=None,
              help="Base image (ARG BASE_IMAGE) [default: kinitro/base:trixie if this docker host has it "
                   "(sim_images/base/build-base.sh makes it without a registry), else python:3.12-slim].")
@click.option("--metaworld/--no-metaworld", default=True, show_default=True,
              help="Include MuJoCo + MetaWorld, which the demo's scripted experts need (~250 MB).")
def env_build_miner(tag: str | None, base_image: str | None, metaworld: bool) -> None:
    """Build the miner-runner image (sim_images/miner-runner) that serves policies in docker mode."""
    from kinitro_dagster.miners.docker_engine import DockerSetupError
    from kinitro_dagster.miners.runner_image import build_runner_image
    from kinitro_dagster.settings import ExecutorSettings

    tag = tag or ExecutorSettings().miner_deployment_image
    started = time.monotonic()
    try:
        image_id = build_runner_image(tag, base_image=base_image, with_metaworld=metaworld, echo=click.echo)
    except DockerSetupError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"built {tag} ({image_id[:19]}) in {time.monotonic() - started:.0f} s")


# --- env build: evaluator and procthor images for production (owner: deploy) -------------------

# Family -> (Dockerfile dir under sim_images/, default tag). Both are built on the same context by
# sim_images/evaluator/build.sh (the code, requirements exported from uv.lock, the CA bundle).
_SIM_IMAGES = {
    "evaluator": ("evaluator", "kinitro/evaluator:v1"),
    "metaworld": ("evaluator", "kinitro/evaluator:v1"),  # the evaluator image is the MetaWorld one
    "procthor": ("procthor", "kinitro/procthor:v1"),
    "genesis": ("genesis", "kinitro/genesis:v1"),
}


def _build_sim_image(family: str, tag: str | None, base_image: str | None, app_dir: str) -> None:
    import os
    import subprocess

    from kinitro_dagster.demo import REPO_ROOT

    directory, default_tag = _SIM_IMAGES[family]
    script = REPO_ROOT / "sim_images" / "evaluator" / "build.sh"
    if not script.is_file():
        raise click.ClickException(f"no {script}: build images from a checkout of this repository")
    env = {**os.environ, "APP_DIR": app_dir, "DOCKERFILE_DIR": str(REPO_ROOT / "sim_images" / directory)}
    if family == "genesis":
        env["UV_EXPORT_EXTRAS"] = "genesis"  # the evaluator's requirements plus Genesis and torch
    if base_image:
        env["BASE_IMAGE"] = base_image
    started = time.monotonic()
    if subprocess.run([str(script), tag or default_tag], env=env).returncode != 0:
        raise click.ClickException(f"building the {family} image failed (docker's output above)")
    click.echo(f"built {tag or default_tag} in {time.monotonic() - started:.0f} s")


def _sim_image_command(family: str, help_text: str) -> click.Command:
    @click.command(family, help=help_text)
    @click.option("--tag", default=None, help=f"Image tag [default: {_SIM_IMAGES[family][1]}].")
    @click.option("--base-image", default=None,
                  help="Base image (ARG BASE_IMAGE) [default: kinitro/base:trixie if this docker host has it, "
                       "else python:3.12-slim].")
    @click.option("--app-dir", default="/opt/kinitro", show_default=True,
                  help="Where the code goes in the image: the launching code location's working directory "
                       "(the compose stack's /opt/kinitro; a checkout's path when the code server runs on the host).")
    def command(tag: str | None, base_image: str | None, app_dir: str) -> None:
        _build_sim_image(family, tag, base_image, app_dir)

    return command


for _family, _help in (
    ("evaluator", "Build the evaluator image (code server, run worker, MetaWorld + MuJoCo headless)."),
    ("metaworld", "Same as `kinitro env build evaluator`: the evaluator image runs MetaWorld."),
    ("procthor", "Build the ProcTHOR image (evaluator + AI2-THOR, its Unity build fetched while building)."),
    ("genesis", "Build the Genesis image (evaluator + Genesis, torch, the G1 model, compiled kernels)."),
):
    env_build.add_command(_sim_image_command(_family, _help))
