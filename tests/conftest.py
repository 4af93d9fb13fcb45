"""Shared pytest fixtures. One clearly labelled section per owner; add yours below the others."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# =============================================================================================
# Warehouse databases (owner: warehouse / weights API)
#
#   database_url  a fresh, empty (unmigrated) database per test, once on a SQLite file and once
#                 on PostgreSQL. Tests that take it run twice: test_x[sqlite], test_x[postgres].
#                 PostgreSQL: a uniquely named database per session, a new schema per test
#                 (the URL selects it with `?options=-csearch_path=...`).
#   warehouse     a `Warehouse` on `database_url`, already migrated to head.
#
# The postgres parameter carries `pytest.mark.postgres` (deselect with `-m "not postgres"`). It
# creates a uniquely named database on the server at KINITRO_TEST_POSTGRES_URL (default
# postgresql://postgres@127.0.0.1:5432/postgres, the maintenance DB used to create/drop) and drops
# it afterwards. If that server is unreachable the test FAILS: CI starts PostgreSQL, so a
# silent skip would hide a broken setup.
# =============================================================================================

POSTGRES_ADMIN_URL = os.environ.get("KINITRO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _admin_connection():  # returns a psycopg2 connection
    import psycopg2

    try:
        conn = psycopg2.connect(POSTGRES_ADMIN_URL, connect_timeout=5)
    except psycopg2.OperationalError as exc:
        reason = " ".join(str(exc).split())
    else:
        conn.autocommit = True
        return conn
    pytest.fail(
        f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL} ({reason}). Start it (`.ci/run` does, or "
        "`service postgresql start`), set KINITRO_TEST_POSTGRES_URL, or deselect these tests with -m 'not postgres'.",
        pytrace=False,
    )


def postgres_test_database_url(name: str) -> str:
    """The URL of database `name` on the test server (same user, host and port as the admin URL)."""
    from sqlalchemy import make_url

    return make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def create_postgres_test_database() -> tuple[str, str]:
    """Create a fresh uniquely named database; returns (name, url)."""
    name = f"kinitro_test_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    conn = _admin_connection()
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()
    return name, postgres_test_database_url(name)


def drop_postgres_test_database(name: str) -> None:
    conn = _admin_connection()
    try:
        with conn.cursor() as cur:
            # FORCE (PostgreSQL 13+) ends connections a test's engine may still hold.
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        conn.close()


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """The maintenance-database URL of the test PostgreSQL server (for tests that make their own)."""
    return POSTGRES_ADMIN_URL


@pytest.fixture(scope="session")
def postgres_session_database() -> Iterator[str]:
    """One uniquely named PostgreSQL database for the whole test session; dropped at the end."""
    name, url = create_postgres_test_database()
    try:
        yield url
    finally:
        drop_postgres_test_database(name)


@pytest.fixture
def new_postgres_database() -> Iterator[Callable[[], tuple[str, str]]]:
    """Makes fresh PostgreSQL databases, (name, url) each; all are dropped after the test."""
    names: list[str] = []

    def create() -> tuple[str, str]:
        name, url = create_postgres_test_database()
        names.append(name)
        return name, url

    yield create
    for name in names:
        drop_postgres_test_database(name)


def _with_search_path(url: str, schema: str) -> str:
    from sqlalchemy import make_url

    parsed = make_url(url)
    return parsed.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty warehouse database URL: a SQLite file, then PostgreSQL.

    PostgreSQL: a new schema per test inside the session's database, selected by the URL's
    `options=-csearch_path=...` (creating a database costs ~0.4 s; a schema, milliseconds).
    Every unqualified table, Alembic's version table included, lands in that schema.
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'warehouse' / 'warehouse.db'}"
        return
    with request.getfixturevalue("postgres_schema")() as url:
        yield url


@pytest.fixture(scope="session")
def postgres_schema(postgres_session_database: str) -> Callable[[], contextlib.AbstractContextManager[str]]:
    """`with postgres_schema() as url`: the URL of a new, empty schema in the session's PostgreSQL
    database (selected by `options=-csearch_path=...`), dropped when the block ends."""

    @contextlib.contextmanager
    def schema_url() -> Iterator[str]:
        schema = f"t_{uuid.uuid4().hex[:16]}"
        _run_in_database(postgres_session_database, f'CREATE SCHEMA "{schema}"')
        try:
            yield _with_search_path(postgres_session_database, schema)
        finally:
            _run_in_database(postgres_session_database, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    return schema_url


def _run_in_database(url: str, sql: str) -> None:
    import psycopg2

    conn = psycopg2.connect(url, connect_timeout=5)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


@pytest.fixture
def warehouse(database_url: str) -> Iterator[object]:
    """A migrated `Warehouse` on `database_url`; its engine is disposed after the test."""
    from kinitro_dagster.warehouse import Warehouse

    store = Warehouse(database_url)
    store.migrate()
    try:
        yield store
    finally:
        store.dispose()


# =============================================================================================
# (end of warehouse section)
# =============================================================================================


# =============================================================================================
# The test code location (owner: spine / Dagster definitions)
#
#   The env partitions of the code location are fixed when kinitro_dagster.defs loads, so the
#   test suite chooses them here, before any test imports it: two MetaWorld envs keep cycles
#   short. Headless rendering and an offline hub, as on every machine here.
#
#   demo_state   a state dir (KINITRO_STATE_DIR) holding the bundled demo miners published to a
#                local hub cache and committed on a file chain; returns the resources for it.
# =============================================================================================

TEST_ENV_IDS = ["metaworld/reach-v3", "metaworld/push-v3"]
os.environ["KINITRO_SCHEDULER_ENV_IDS"] = '["' + '","'.join(TEST_ENV_IDS) + '"]'
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture
def demo_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str) -> dict:
    """Resources for a small cycle of the demo miners: 2 episodes per env, 150 steps, no images,
    privileged state (the demo track: the demo policies are scripted experts)."""
    from kinitro_dagster.defs.resources import build_resources
    from kinitro_dagster.demo import publish_demo_chain
    from kinitro_dagster.settings import ExecutorSettings, SchedulerSettings

    monkeypatch.setenv("KINITRO_STATE_DIR", str(tmp_path / "state"))
    scheduler = SchedulerSettings(database_url=database_url, episodes_per_env=2, eval_interval_blocks=100)
    executor = ExecutorSettings(max_timesteps=150, use_images=False, privileged_state=True)  # the demo track
    resources = build_resources(scheduler, executor)
    publish_demo_chain(Path(resources["chain"].chain_file), Path(resources["hub"].cache_dir), 100)
    return resources


# =============================================================================================
# Policy servers (owner: rollout / policy client)
#
#   running_deployments  a context manager factory: `with running_deployments(named) as servers`
#                        starts every deployment at once (their warm-ups overlap), fails the test
#                        if any did not come up, and stops them all afterwards.
# =============================================================================================


@pytest.fixture(scope="session")
def running_deployments():
    return _running_deployments


@contextlib.contextmanager
def _running_deployments(named: dict) -> Iterator[dict]:
    from kinitro_dagster.miners.deployments import start_all

    try:
        errors = start_all(list(named.values()))
        assert errors == [None] * len(errors), errors
        yield named
    finally:
        for deployment in named.values():
            deployment.stop()


# =============================================================================================
# The weights API over real HTTP (owner: weights API)
#
#   serving_api   a context manager factory: `with serving_api(database_url) as url` runs the app
#                 under uvicorn on a free loopback port until the block ends.
# =============================================================================================


@pytest.fixture(scope="session")
def serving_api() -> Callable[[str], contextlib.AbstractContextManager[str]]:
    return _serving_api


@contextlib.contextmanager
def _serving_api(database_url: str) -> Iterator[str]:
    import socket
    import threading
    import time

    import uvicorn

    from kinitro_dagster.settings import ApiSettings
    from weights_api.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(ApiSettings(database_url=database_url, host="127.0.0.1", port=port))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start within 30 s"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
