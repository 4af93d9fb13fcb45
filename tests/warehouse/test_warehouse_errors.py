"""Bad URLs and unreachable databases fail with a message that says what to check."""

from __future__ import annotations

from pathlib import Path

import pytest

from kinitro_dagster.warehouse import Warehouse, WarehouseUnavailable
from kinitro_dagster.warehouse.store import normalize_url, safe_url


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("postgresql://u:p@db/kinitro", "postgresql+psycopg2"),
        ("postgres://u:p@db/kinitro", "postgresql+psycopg2"),
        ("postgresql+asyncpg://u:p@db/kinitro", "postgresql+psycopg2"),
        ("postgresql+psycopg2://u:p@db/kinitro", "postgresql+psycopg2"),
        ("sqlite:////tmp/w.db", "sqlite"),
    ],
)
def test_urls_are_pointed_at_the_shipped_drivers(given: str, driver: str) -> None:
    assert normalize_url(given).drivername == driver


def test_passwords_never_appear_in_messages() -> None:
    assert "hunter2" not in safe_url("postgresql://kinitro:hunter2@db/kinitro")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "not a valid URL"),
        ("mysql://u@db/kinitro", "supports SQLite and PostgreSQL"),
    ],
)
def test_unusable_urls_are_refused_up_front(url: str, message: str) -> None:
    with pytest.raises(WarehouseUnavailable, match=message):
        Warehouse(url)


def test_sqlite_parent_directory_is_created(tmp_path: Path) -> None:
    store = Warehouse(f"sqlite:///{tmp_path / 'deep' / 'er' / 'w.db'}")
    store.ping()

    assert (tmp_path / "deep" / "er" / "w.db").exists()


def test_unwritable_sqlite_location_says_to_check_the_directory(tmp_path: Path) -> None:
    (tmp_path / "w.db").mkdir()  # a directory where the file should be
    store = Warehouse(f"sqlite:///{tmp_path / 'w.db'}")

    with pytest.raises(WarehouseUnavailable, match="writable"):
        store.ping()


@pytest.mark.postgres
def test_unreachable_postgres_says_to_check_the_server() -> None:
    store = Warehouse("postgresql://postgres@127.0.0.1:1/kinitro")

    with pytest.raises(WarehouseUnavailable, match=r"cannot reach PostgreSQL at 127\.0\.0\.1:1.*server is running"):
        store.ping()


@pytest.mark.postgres
def test_missing_postgres_database_says_to_create_it(postgres_admin_url: str) -> None:
    from sqlalchemy import make_url

    url = make_url(postgres_admin_url).set(database="kinitro_no_such_database")
    store = Warehouse(url.render_as_string(hide_password=False))

    with pytest.raises(WarehouseUnavailable, match=r"does not exist.*kinitro db create"):
        store.ping()


@pytest.mark.postgres
def test_unknown_postgres_user_says_to_check_credentials(postgres_admin_url: str) -> None:
    from sqlalchemy import make_url

    url = make_url(postgres_admin_url).set(username="kinitro_no_such_role", password="x")
    store = Warehouse(url.render_as_string(hide_password=False))

    with pytest.raises(WarehouseUnavailable, match="refused user 'kinitro_no_such_role'") as raised:
        store.ping()
    assert "x@" not in str(raised.value)
