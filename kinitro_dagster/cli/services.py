"""demo, dev, api, scheduler, executor: the embedded default and the operator guide's services."""

from __future__ import annotations

import gc
from pathlib import Path

import click

from kinitro_dagster.cli.common import operator_errors

# --- demo and dev: the embedded default -------------------------------------------------------


@click.command()
def demo() -> None:
    """Run one full evaluation cycle on the embedded default and print the weights."""
    import logging

    from kinitro_dagster.demo import leaderboard, run_demo

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    click.echo("Kinitro demo: local miners, file chain, SQLite warehouse, Dagster instance under DAGSTER_HOME")
    cycle = run_demo()
    from kinitro_dagster.settings import SchedulerSettings

    click.echo("\n" + leaderboard(SchedulerSettings().database_url, cycle) + "\n")
    click.echo("Open the Dagster UI and the weights API:  make dev   (UI http://127.0.0.1:3000, "
               "API http://127.0.0.1:8000/v1/weights/latest)")


@click.command()
@click.option("--ui-port", default=3000, show_default=True, help="Dagster UI port.")
@click.option("--api-port", default=8000, show_default=True, help="Weights API port.")
def dev(ui_port: int, api_port: int) -> None:
    """Start `dagster dev` (UI + daemon) on this workspace and the weights API, until Ctrl-C.

    SIGTERM or Ctrl-C stops both, and every server they started, within ~10 s; if one of them
    exits on its own the other is stopped and the command exits 1.
    """
    from kinitro_dagster.demo import REPO_ROOT, apply_demo_environment
    from kinitro_dagster.services import Service

    apply_demo_environment()
    from kinitro_dagster.settings import SchedulerSettings
    from kinitro_dagster.warehouse import Warehouse

    Warehouse(SchedulerSettings().database_url).migrate()  # the API serves from the first second
    workspace = REPO_ROOT / "workspace.yaml"
    dagster = [_bin("dagster"), "dev", "-w", str(workspace), "-p", str(ui_port), "-h", "127.0.0.1"]
    api = [_bin("kinitro"), "api", "--host", "127.0.0.1", "--port", str(api_port)]
    _supervise(
        [Service("dagster dev", dagster, cwd=REPO_ROOT), Service("weights API", api, cwd=REPO_ROOT)],
        f"Dagster UI http://127.0.0.1:{ui_port}  weights API http://127.0.0.1:{api_port}  (Ctrl-C stops both)",
    )


def _bin(name: str) -> str:
    """A console script of this environment (next to its Python), whatever PATH says."""
    import sys

    return str(Path(sys.executable).parent / name)


def _supervise(services: list, banner: str) -> None:
    """Run `services` until SIGTERM/SIGINT (exit 0) or until one exits on its own (one line, exit 1)."""
    from kinitro_dagster.services import ServiceError, supervise

    try:
        supervise(services, on_started=lambda: click.echo(banner), echo=lambda line: click.echo(line, err=True))
    except ServiceError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo("stopped")


# --- api: the weights API (owner: warehouse / weights API) ------------------------------------


@click.command()
@click.option("--host", default=None, help="Bind address (KINITRO_API_HOST; default 0.0.0.0).")
@click.option("--port", type=int, default=None, help="Port (KINITRO_API_PORT; default 8000).")
@click.option(
    "--database-url",
    default=None,
    help="Warehouse URL (KINITRO_API_DATABASE_URL, else KINITRO_DATABASE_URL; default the state dir's SQLite file).",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default=None,
    help="Logging level (KINITRO_API_LOG_LEVEL; default INFO). DEBUG also logs every request.",
)
@click.option("--json-logs/--text-logs", default=None, help="One JSON object a log line (KINITRO_API_JSON_LOGS).")
def api(
    host: str | None, port: int | None, database_url: str | None, log_level: str | None, json_logs: bool | None
) -> None:
    """Serve the read-only weights API (validators poll /v1/weights/latest)."""
    import uvicorn

    from kinitro_dagster.logs import configure_logging
    from kinitro_dagster.settings import ApiSettings
    from weights_api.app import create_app

    flags = {"host": host, "port": port, "database_url": database_url, "log_level": log_level, "json_logs": json_logs}
    overrides = {k: (v.upper() if k == "log_level" else v) for k, v in flags.items() if v is not None}
    with operator_errors():
        settings = ApiSettings(**overrides)
        configure_logging(settings.log_level, settings.json_logs)
        app = create_app(settings)
        # An unreachable server or refused login is one line and exit 1. Missing tables are not
        # fatal (`kinitro dev` starts the API before the first run creates them): the app logs
        # the fix and answers 503 until they exist.
        app.state.warehouse.ping()
    # What is imported and built by now lives as long as the server: keep it out of the cyclic
    # collector, whose full passes over it took 60-100 ms (the p99 of the dashboard endpoints,
    # whose requests allocate enough to trigger them) at 256 miners; with it frozen, ~1 ms.
    gc.collect()
    gc.freeze()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,  # keep configure_logging's handlers
        log_level=settings.log_level.lower(),
        access_log=settings.log_level == "DEBUG",  # a line per request costs throughput at validator scale
        # The stdlib event loop, not uvloop (uvicorn's pick when installed): saturated by 200
        # connections, uvloop served ~25 % more requests a second but left some connections
        # waiting 0.4-1.5 s (p99 at 200 connections, measured here with a bare ASGI app too);
        # asyncio's loop kept that p99 under 50 ms.
        loop="asyncio",
    )


# --- scheduler and executor: the operator guide's services (owner: services) ----------------
#
# Both run Dagster's own servers under `kinitro_dagster.services.supervise`; their flags set the
# guide's KINITRO_* variables in the environment those servers inherit, and both settings classes
# are checked first because both servers load the code location, which reads them.

_LOG_LEVELS = click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False)


# Field -> flag of the guide's options that set a KINITRO_SCHEDULER_* / KINITRO_EXECUTOR_* variable.
_SCHEDULER_FLAGS = {
    "netuid": "--netuid", "network": "--network", "database_url": "--database-url",
    "eval_interval_seconds": "--eval-interval", "episodes_per_env": "--episodes-per-env", "log_level": "--log-level",
}  # fmt: skip
_EXECUTOR_FLAGS = {"eval_mode": "--eval-mode", "log_level": "--log-level", "api_url": "--api-url"}


def _apply_flags(prefix: str, values: dict[str, object], flags: dict[str, str]) -> dict[str, str]:
    """Set PREFIX<FIELD> for each flag given (field -> value), for the checks and for the children.

    Returns variable -> flag of every flag, for the error messages.
    """
    import os

    for field, value in values.items():
        if value is not None:
            os.environ[f"{prefix}{field}".upper()] = str(value).upper() if field == "log_level" else str(value)
    return {f"{prefix}{field}".upper(): flag for field, flag in flags.items()}


# What a list or mapping setting looks like: pydantic-settings reads them as JSON.
_JSON_HINTS = {"list_type": ' (write a JSON list, e.g. ["metaworld/reach-v3","metaworld/push-v3"])',
               "dict_type": ' (write a JSON object, e.g. {"metaworld": "kinitro/evaluator:v1"})'}  # fmt: skip


def checked_settings(flags: dict[str, str]) -> tuple:
    """(SchedulerSettings, ExecutorSettings) of this environment, after check_environment().

    A bad value is one line naming its variable, and its flag (`flags`: variable -> flag), exit 1.
    """
    import pydantic

    from kinitro_dagster.settings import ExecutorSettings, SchedulerSettings, check_environment, known_variables

    variable_of = {target: variable for variable, target in reversed(known_variables().items())}  # first alias
    loaded = []
    with operator_errors():
        check_environment()
        for cls in (SchedulerSettings, ExecutorSettings):
            try:
                loaded.append(cls())
            except pydantic.ValidationError as exc:
                problems = []
                for error in exc.errors():
                    field = ".".join(map(str, error["loc"]))
                    name = variable_of.get(f"{cls.__name__}.{field}", field)
                    flag = f" ({flags[name]})" if name in flags else ""
                    hint = _JSON_HINTS.get(error["type"], "")
                    problems.append(f"{name}={error.get('input')}{flag}: {error['msg']}{hint}")
                raise click.ClickException(f"invalid configuration: {'; '.join(problems)}") from exc
    return tuple(loaded)


def _log_args(level: str, json_logs: bool, level_flag: str = "--log-level") -> list[str]:
    return [level_flag, level.lower(), "--log-format", "json" if json_logs else "colored"]


@click.command()
@click.option("--netuid", type=int, default=None, help="Subnet uid (KINITRO_SCHEDULER_NETUID; default 1).")
@click.option("--network", default=None, help="Bittensor network (KINITRO_SCHEDULER_NETWORK; default finney).")
@click.option("--database-url", default=None,
              help="Warehouse URL (KINITRO_SCHEDULER_DATABASE_URL, else KINITRO_DATABASE_URL; default the state "
                   "dir's SQLite file).")  # fmt: skip
@click.option("--eval-interval", type=int, default=None,
              help="Seconds between cycles (KINITRO_SCHEDULER_EVAL_INTERVAL_SECONDS; default 3600).")
@click.option("--episodes-per-env", type=int, default=None,
              help="Episodes per miner and env (KINITRO_SCHEDULER_EPISODES_PER_ENV; default 50).")
@click.option("--log-level", type=_LOG_LEVELS, default=None, help="KINITRO_SCHEDULER_LOG_LEVEL (default INFO).")
@click.option("--workspace", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Dagster workspace file [default: this repository's workspace.yaml, which loads the code "
                   "location in-process; deploy/workspace.yaml points at a `kinitro executor` instead].")
@click.option("--dagster-home", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The Dagster instance directory holding dagster.yaml [default: DAGSTER_HOME].")
@click.option("--with-webserver/--no-webserver", default=False, show_default=True,
              help="Also serve the Dagster UI (dagster-webserver) on the same workspace.")
@click.option("--ui-host", default="127.0.0.1", show_default=True, help="Dagster UI bind address.")
@click.option("--ui-port", type=int, default=3000, show_default=True, help="Dagster UI port.")
def scheduler(
    netuid: int | None,
    network: str | None,
    database_url: str | None,
    eval_interval: int | None,
    episodes_per_env: int | None,
    log_level: str | None,
    workspace: Path | None,
    dagster_home: Path | None,
    with_webserver: bool,
    ui_host: str,
    ui_port: int,
) -> None:
    """Run the scheduler: `dagster-daemon run` on the workspace, until SIGTERM or Ctrl-C.

    The daemon runs the cycle sensor and automation (cycles open on the chain's clock, their runs
    are requested and scored), the run queue, run monitoring and retries, and launches each run with
    dagster.yaml's run launcher. KINITRO_EXECUTOR_BATCH_SIZE, _POLL_INTERVAL_SECONDS and _EVAL_IMAGES
    (the queue and the run containers) belong in this command's environment.
    """
    import os

    from kinitro_dagster.demo import REPO_ROOT
    from kinitro_dagster.services import Service

    given = {"netuid": netuid, "network": network, "database_url": database_url,
             "eval_interval_seconds": eval_interval, "episodes_per_env": episodes_per_env, "log_level": log_level}
    settings, _ = checked_settings(_apply_flags("KINITRO_SCHEDULER_", given, _SCHEDULER_FLAGS))  # fmt: skip
    home = _dagster_home(dagster_home)
    os.environ["DAGSTER_HOME"] = str(home)
    _open_instance(home)
    workspace = (workspace or REPO_ROOT / "workspace.yaml").resolve()
    logs = (settings.log_level, settings.json_logs)
    services = [Service("dagster-daemon", [_bin("dagster-daemon"), "run", "-w", str(workspace), *_log_args(*logs)])]
    if with_webserver:
        services.append(Service("dagster-webserver", [
            _bin("dagster-webserver"), "-w", str(workspace), "-h", ui_host, "-p", str(ui_port),
            *_log_args(*logs, level_flag="--dagster-log-level"),
        ]))  # fmt: skip
    ui = f", Dagster UI http://{ui_host}:{ui_port}" if with_webserver else ""
    _supervise(services, f"scheduler: dagster-daemon on {workspace}, instance {home}{ui} (SIGTERM or Ctrl-C stops it)")


def _dagster_home(given: Path | None) -> Path:
    """--dagster-home, else DAGSTER_HOME: an existing directory (its dagster.yaml configures the instance)."""
    import os

    if given is None and not os.environ.get("DAGSTER_HOME"):
        raise click.ClickException(
            "DAGSTER_HOME is not set: set it (or pass --dagster-home) to the instance directory holding "
            "dagster.yaml (deploy/dagster.yaml in production, this repository's dagster.yaml on one machine)"
        )
    home = (given or Path(os.environ["DAGSTER_HOME"])).expanduser().resolve()
    if not home.is_dir():
        raise click.ClickException(f"DAGSTER_HOME {home} is not a directory: create it and put dagster.yaml in it")
    if not (home / "dagster.yaml").is_file():
        click.echo(f"warning: no dagster.yaml in DAGSTER_HOME {home}: Dagster's defaults apply (SQLite storage "
                   "there, runs launched as local subprocesses, no run queue limits)", err=True)  # fmt: skip
    return home


def _open_instance(home: Path) -> None:
    """Open the instance once before its servers start: a fresh SQLite instance creates its tables on
    first open, and a daemon and a webserver doing that at once leave it with two schema heads."""
    import dagster as dg

    try:
        with dg.DagsterInstance.get():
            pass
    except Exception as exc:  # any failure to open it (YAML, storage, server) is one line here
        first = (str(exc).strip().splitlines() or [""])[0]
        problem = f"{type(exc).__name__}: {first}"
        raise click.ClickException(f"cannot open the Dagster instance in {home} (dagster.yaml): {problem}") from exc


# The guide's executor flags that configure the run queue and the run launcher, which the daemon runs.
_DAEMON_FLAGS = {
    "batch_size": ("--batch-size", "the run queue", "KINITRO_EXECUTOR_BATCH_SIZE"),
    "poll_interval": ("--poll-interval", "the run queue", "KINITRO_EXECUTOR_POLL_INTERVAL_SECONDS"),
    "eval_images": ("--eval-images", "the run launcher", "KINITRO_EXECUTOR_EVAL_IMAGES"),
}


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address the code server binds (0.0.0.0 for a daemon on another host).")
@click.option("--port", type=int, default=4000, show_default=True, help="Code server port.")
@click.option("--eval-mode", default=None,
              help="Where miner policies run: local or docker (KINITRO_EXECUTOR_EVAL_MODE; default local).")
@click.option("--log-level", type=_LOG_LEVELS, default=None, help="KINITRO_EXECUTOR_LOG_LEVEL (default INFO).")
@click.option("--api-url", default=None,
              help="Weights API checked once at start (KINITRO_EXECUTOR_API_URL; default http://localhost:8000).")
@click.option("--batch-size", default=None, metavar="N",
              help="Refused: set KINITRO_EXECUTOR_BATCH_SIZE for `kinitro scheduler` (the run queue).")
@click.option("--poll-interval", default=None, metavar="SECONDS",
              help="Refused: set KINITRO_EXECUTOR_POLL_INTERVAL_SECONDS for `kinitro scheduler` (the run queue).")
@click.option("--eval-images", default=None, metavar="JSON",
              help="Refused: set KINITRO_EXECUTOR_EVAL_IMAGES for `kinitro scheduler` (the run launcher).")
def executor(
    host: str,
    port: int,
    eval_mode: str | None,
    log_level: str | None,
    api_url: str | None,
    batch_size: str | None,
    poll_interval: str | None,
    eval_images: str | None,
) -> None:
    """Run an executor: serve the code location over gRPC on this host, until SIGTERM or Ctrl-C.

    Executors take their work from the Dagster instance, not from the weights API: the daemon
    (`kinitro scheduler`) dequeues each run and its run launcher asks this code server to start
    it; with dagster.yaml's DefaultRunLauncher every run (an episode partition) is a subprocess
    here. A workspace points at it with `grpc_server: {host, port, location_name: kinitro}`
    (deploy/workspace.yaml). --batch-size, --poll-interval and --eval-images configure the daemon:
    set their KINITRO_EXECUTOR_* variables in the scheduler's environment instead.
    """
    from kinitro_dagster.services import Service

    given = {"batch_size": batch_size, "poll_interval": poll_interval, "eval_images": eval_images}
    misplaced = [_DAEMON_FLAGS[name] for name, value in given.items() if value is not None]
    if misplaced:
        raise click.ClickException("; ".join(
            f"{flag} configures {what}, which the daemon runs, not the executor: set {variable} in the "
            "environment of `kinitro scheduler` (dagster-daemon) instead" for flag, what, variable in misplaced
        ))  # fmt: skip
    given = {"eval_mode": eval_mode, "log_level": log_level, "api_url": api_url}
    _, settings = checked_settings(_apply_flags("KINITRO_EXECUTOR_", given, _EXECUTOR_FLAGS))
    _report_api(settings.api_url)
    argv = [_bin("dagster"), "api", "grpc", "-m", "kinitro_dagster.definitions", "-h", host, "-p", str(port),
            "--location-name", "kinitro", *_log_args(settings.log_level, settings.json_logs)]  # fmt: skip
    _supervise([Service("code server", argv)],
               f"executor: code location kinitro on grpc {host}:{port}, eval mode {settings.eval_mode} "
               "(SIGTERM or Ctrl-C stops it)")  # fmt: skip


def _report_api(api_url: str) -> None:
    """One line: whether the weights API answers. Not fatal: executors do not take work from it."""
    import httpx

    url = api_url.rstrip("/") + "/health"
    try:
        status = httpx.get(url, timeout=3.0).status_code
    except httpx.HTTPError as exc:
        problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    else:
        if status == 200:
            click.echo(f"weights API answers at {url}")
            return
        problem = f"HTTP {status}"
    click.echo(f"warning: weights API at {url} does not answer ({problem}); carrying on: executors take their "
               "work from the Dagster instance, not from the API", err=True)  # fmt: skip
