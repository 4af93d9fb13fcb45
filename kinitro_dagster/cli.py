"""The `kinitro` command: one group, a section per concern.

Each section's options map onto the settings classes in `kinitro_dagster.settings`, so a flag
and its `KINITRO_*` variable always mean the same thing.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:  # imported lazily at run time: `kinitro --help` stays fast
    from kinitro_dagster.warehouse.records import CycleRecord, WeightsRecord


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Kinitro evaluation backend on Dagster."""
    from kinitro_dagster.settings import check_environment

    try:
        check_environment()  # a misspelt or unsupported KINITRO_* variable stops every command here
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc


# --- demo and dev: the embedded default -------------------------------------------------------


@main.command()
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


@main.command()
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


@main.command()
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
    with _operator_errors():
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


def _checked_settings(flags: dict[str, str]) -> tuple:
    """(SchedulerSettings, ExecutorSettings) of this environment, after check_environment().

    A bad value is one line naming its variable, and its flag (`flags`: variable -> flag), exit 1.
    """
    import pydantic

    from kinitro_dagster.settings import ExecutorSettings, SchedulerSettings, check_environment, known_variables

    variable_of = {target: variable for variable, target in reversed(known_variables().items())}  # first alias
    loaded = []
    with _operator_errors():
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
                    problems.append(f"{name}={error.get('input')}{flag}: {error['msg']}")
                raise click.ClickException(f"invalid configuration: {'; '.join(problems)}") from exc
    return tuple(loaded)


def _log_args(level: str, json_logs: bool, level_flag: str = "--log-level") -> list[str]:
    return [level_flag, level.lower(), "--log-format", "json" if json_logs else "colored"]


@main.command()
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
    settings, _ = _checked_settings(_apply_flags("KINITRO_SCHEDULER_", given, _SCHEDULER_FLAGS))  # fmt: skip
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


@main.command()
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
    _, settings = _checked_settings(_apply_flags("KINITRO_EXECUTOR_", given, _EXECUTOR_FLAGS))
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


# --- db: warehouse management (owner: warehouse / weights API) --------------------------------


@contextmanager
def _operator_errors() -> Iterator[None]:
    """Turn configuration and database failures into one line and exit code 1, no traceback."""
    import pydantic
    import sqlalchemy as sa

    from kinitro_dagster.settings import UnknownSettingError, UnsupportedSettingError
    from kinitro_dagster.warehouse import WarehouseUnavailable
    from kinitro_dagster.warehouse.errors import first_error_line

    try:
        yield
    except (WarehouseUnavailable, UnknownSettingError, UnsupportedSettingError) as exc:
        raise click.ClickException(str(exc)) from exc
    except pydantic.ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise click.ClickException(f"invalid configuration: {problems}") from exc
    except sa.exc.SQLAlchemyError as exc:
        reason = first_error_line(exc)
        raise click.ClickException(f"database error: {reason}; check the database URL and server") from exc


def _database_url(given: str | None) -> str:
    """--database-url, else the scheduler's (the warehouse writer's) KINITRO_* setting."""
    if given:
        return given
    from kinitro_dagster.settings import SchedulerSettings

    return SchedulerSettings().database_url


_database_url_option = click.option(
    "--database-url",
    default=None,
    help="Warehouse URL (default: KINITRO_SCHEDULER_DATABASE_URL, else KINITRO_DATABASE_URL, "
    "else the state dir's SQLite file).",
)


@main.group()
def db() -> None:
    """Create, migrate, inspect or reset the warehouse database."""


@db.command("create")
@_database_url_option
def db_create(database_url: str | None) -> None:
    """Create the database if it is missing (PostgreSQL: CREATE DATABASE; SQLite: the file)."""
    from kinitro_dagster.warehouse import create_database
    from kinitro_dagster.warehouse.store import safe_url

    with _operator_errors():
        url = _database_url(database_url)
        created = create_database(url)
    click.echo(f"{'created' if created else 'already exists'}: {safe_url(url)}")
    if created:
        click.echo("next: kinitro db init --database-url ...")


@db.command("init")
@_database_url_option
def db_init(database_url: str | None) -> None:
    """Create or upgrade the warehouse tables (Alembic migrations to head). Safe to re-run."""
    from kinitro_dagster.warehouse import Warehouse

    with _operator_errors():
        store = Warehouse(_database_url(database_url))
        store.ping()
        before = store.schema_revision()
        store.migrate()
        after = store.schema_revision()
    change = "already at" if before == after else f"migrated {before or 'empty database'} ->"
    click.echo(f"schema {change} revision {after} (head): {store!r}")


def _require_existing_sqlite_file(url: str) -> None:
    """Inspecting must not create: a missing SQLite file is reported, not made."""
    from kinitro_dagster.warehouse import WarehouseUnavailable
    from kinitro_dagster.warehouse.store import normalize_url

    parsed = normalize_url(url)
    on_disk = parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:")
    if on_disk and not Path(parsed.database).expanduser().exists():
        raise WarehouseUnavailable(
            f"no SQLite warehouse at {parsed.database}; create it with `kinitro db init` "
            "(or point --database-url / KINITRO_DATABASE_URL at the right file)"
        )


@db.command("status")
@_database_url_option
def db_status(database_url: str | None) -> None:
    """Cycles, unique miners, latest completed and running cycle, latest weights."""
    from kinitro_dagster.warehouse import Warehouse, WarehouseSchemaMissing
    from kinitro_dagster.warehouse.store import safe_url

    with _operator_errors():
        url = _database_url(database_url)
        _require_existing_sqlite_file(url)
        store = Warehouse(url)
        store.ping()
        summary = store.summary()
        if summary.schema_revision is None:
            raise WarehouseSchemaMissing(
                f"{safe_url(store.url)} has no warehouse tables; run `kinitro db init --database-url ...`"
            )
    head = summary.head_revision
    schema_line = summary.schema_revision + (" (head)" if summary.schema_revision == head else
                                             f" (code expects {head}: run `kinitro db init`)")
    by_status = ", ".join(f"{status} {n}" for status, n in sorted(summary.cycles_by_status.items()))
    lines = [
        ("database", safe_url(store.url)),
        ("schema", schema_line),
        ("cycles", f"{summary.total_cycles}" + (f" ({by_status})" if by_status else "")),
        ("unique miners", str(summary.unique_miners)),
        ("latest completed", _describe_cycle(summary.latest_completed)),
        ("running", _describe_cycle(summary.running)),
        ("latest weights", _describe_weights(summary.latest_weights)),
    ]
    for label, value in lines:
        click.echo(f"{label + ':':<18}{value}")


def _describe_cycle(cycle: CycleRecord | None) -> str:
    if cycle is None:
        return "none"
    text = f"cycle {cycle.cycle_key} (block {cycle.block}), opened {cycle.opened_at:%Y-%m-%d %H:%M:%S}Z"
    if cycle.completed_at is not None:
        minutes = (cycle.completed_at - cycle.opened_at).total_seconds() / 60
        text += f", completed {cycle.completed_at:%Y-%m-%d %H:%M:%S}Z ({minutes:.1f} min)"
    return text + f", {cycle.n_miners} miners, {cycle.n_envs} envs"


def _describe_weights(weights: WeightsRecord | None) -> str:
    if weights is None:
        return "none published"
    paid = sorted(((w, uid) for uid, w in weights.weights.items() if w > 0), reverse=True)
    top = ", ".join(f"uid {uid} {w:.4f}" for w, uid in paid[:3])
    return (
        f"cycle {weights.cycle_key} (block {weights.block}), created {weights.created_at:%Y-%m-%d %H:%M:%S}Z, "
        f"{len(paid)} uids with weight" + (f"; top: {top}" if top else "")
    )


@db.command("reset")
@_database_url_option
@click.option("--force", is_flag=True, help="Required: confirms that every table and row is dropped.")
def db_reset(database_url: str | None, force: bool) -> None:
    """Drop every warehouse table and re-create an empty schema. Destroys all data."""
    from kinitro_dagster.warehouse import Warehouse
    from kinitro_dagster.warehouse.store import safe_url

    with _operator_errors():
        url = _database_url(database_url)
        if not force:
            raise click.ClickException(f"refusing to drop all data in {safe_url(url)} without --force")
        store = Warehouse(url)
        store.ping()
        store.reset()
        store.migrate()
    click.echo(f"reset: all warehouse data dropped, empty schema at revision {store.schema_revision()}: {store!r}")


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
    help="Send MetaWorld's 39-d state in obs.extra['state'], the demo track "
    "(KINITRO_EXECUTOR_PRIVILEGED_STATE; default off).",
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
    from kinitro_dagster.sim.registry import validate_env_id
    from kinitro_dagster.sim.rollout import run_episode

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
        )
        sim = make_env(env_id, config)
    except (ValueError, ImportError) as exc:
        raise click.ClickException(str(exc)) from exc
    if save_images is not None:
        sim = _FrameSavingEnv(sim, save_images)
    click.echo(f"{env_id}: {episodes} episode(s) of {policy_dir} (images {'on' if use_images else 'off'}, "
               f"privileged state {'on' if config.privileged_state else 'off'}, {config.max_steps} steps)")  # fmt: skip
    python = _policy_python(policy_dir, settings, settings.miner_runtimes if own_runtime is None else own_runtime)
    failures = 0
    try:
        with LocalDeployment(policy_dir, python=python,
                             warmup_timeout_s=settings.miner_deployment_warmup_timeout) as server:
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


def _policy_python(policy_dir: Path, settings, own_runtime: bool) -> str:
    """The interpreter that serves the policy: its runtime's (built or reused, as local eval mode
    does), or this venv's when it declares nothing more, or with --no-runtime."""
    from kinitro_dagster.miners.runtimes import RuntimeBuildError, RuntimeSettings, ensure_venv_runtime
    from kinitro_dagster.settings import state_dir

    if not own_runtime:
        return sys.executable
    runtime_settings = RuntimeSettings(
        root=state_dir() / "runtimes", index_url=settings.miner_runtime_index_url,
        extra_index_url=settings.miner_runtime_extra_index_url, max_size=settings.miner_runtime_max_size,
        build_timeout_s=settings.miner_runtime_build_timeout,
    )
    try:
        runtime = ensure_venv_runtime(policy_dir, runtime_settings)
    except RuntimeBuildError as exc:
        raise click.ClickException(f"the policy's runtime cannot be built: {exc.reason}") from exc
    if runtime is None:
        click.echo("runtime: this venv (the policy declares nothing it lacks)")
        return sys.executable
    click.echo(f"runtime: {runtime.location} ({'built' if runtime.built else 'reused'} in {runtime.seconds:.1f} s, "
               f"{len(runtime.pins)} packages)")  # fmt: skip
    return runtime.python


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
    from kinitro_dagster.miners.docker_deployment import DockerSetupError, build_runner_image
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
):
    env_build.add_command(_sim_image_command(_family, _help))


@main.group()
def runtimes() -> None:
    """Miner runtimes this host keeps (venvs under the state dir, kinitro/runtime images): list, prune."""


@runtimes.command("list")
def runtimes_list() -> None:
    """Every runtime, its size and when a miner last used it (oldest first)."""
    from kinitro_dagster.miners.runtime_store import stored_runtimes
    from kinitro_dagster.settings import state_dir

    found = stored_runtimes(state_dir() / "runtimes")
    if not found:
        click.echo("no runtimes: every policy so far ran in the base runtime")
        return
    click.echo(f"{'RUNTIME':<16}  {'KIND':<5}  {'SIZE':>9}  {'LAST USED':<16}  LOCATION")
    for runtime in found:
        click.echo(f"{runtime.id[:16]}  {runtime.kind:<5}  {_size(runtime.size_bytes):>9}  "
                   f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(runtime.last_used)):<16}  {runtime.location}")


@runtimes.command("prune")
@click.option("--unused-days", type=click.FloatRange(min=0), default=14.0, show_default=True,
              help="Remove runtimes no miner has built or reused for this many days.")
@click.option("--venvs-only", is_flag=True, help="Leave the kinitro/runtime images (docker mode) alone.")
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
def runtimes_prune(unused_days: float, venvs_only: bool, dry_run: bool) -> None:
    """Remove runtimes nobody used lately; a miner that needs one again rebuilds it."""
    from kinitro_dagster.miners.runtime_store import prune_runtimes
    from kinitro_dagster.settings import state_dir

    removed, kept = prune_runtimes(state_dir() / "runtimes", unused_days * 86400, dry_run=dry_run,
                                   images=not venvs_only)  # fmt: skip
    verb = "would remove" if dry_run else "removed"
    for runtime in removed:
        click.echo(f"{verb} {runtime.kind} {runtime.location} ({_size(runtime.size_bytes)})")
    for runtime, why in kept:
        click.echo(f"kept {runtime.kind} {runtime.location}: {why}")
    freed = sum(r.size_bytes or 0 for r in removed)
    click.echo(f"{verb} {len(removed)} runtime(s), {_size(freed)}; {len(kept)} kept")


def _size(size_bytes: int | None) -> str:
    if size_bytes is None:
        return "?"
    return f"{size_bytes / 2**30:.1f} GiB" if size_bytes >= 2**30 else f"{size_bytes / 2**20:.0f} MiB"
