"""`kinitro api`: flags override KINITRO_API_* variables through ApiSettings; errors are one line."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from click.testing import CliRunner

from kinitro_dagster.cli import main


@pytest.fixture
def captured_run(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, object]]:
    """Replace uvicorn.run: record what `kinitro api` would serve instead of blocking."""
    calls: dict[str, object] = {}
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))

    def fake_run(app: object, **kwargs: object) -> None:
        calls["app"] = app
        calls.update(kwargs)
        logging.getLogger("weights_api.app").warning("serving", extra={"port": kwargs["port"]})

    monkeypatch.setattr(uvicorn, "run", fake_run)
    yield calls
    root.setLevel(saved[0])  # `kinitro api` configured process-wide logging; give it back
    root.handlers[:] = saved[1]


def test_flags_override_environment_variables(
    captured_run: dict[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KINITRO_API_PORT", "9001")
    monkeypatch.setenv("KINITRO_API_HOST", "127.0.0.2")
    monkeypatch.setenv("KINITRO_API_DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")

    result = CliRunner().invoke(
        main, ["api", "--port", "9002", "--database-url", f"sqlite:///{tmp_path / 'flag.db'}", "--log-level", "debug"]
    )

    assert result.exit_code == 0, result.output
    assert captured_run["port"] == 9002
    assert captured_run["host"] == "127.0.0.2"  # no flag: the variable applies
    assert captured_run["log_level"] == "debug" and captured_run["access_log"] is True
    store = captured_run["app"].state.warehouse  # type: ignore[attr-defined]
    assert str(store.url).endswith("flag.db")


def test_defaults_follow_the_guide(captured_run: dict[str, object], tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["api", "--database-url", f"sqlite:///{tmp_path / 'w.db'}"])

    assert result.exit_code == 0, result.output
    assert (captured_run["host"], captured_run["port"], captured_run["log_level"]) == ("0.0.0.0", 8000, "info")
    assert captured_run["access_log"] is False


@pytest.mark.parametrize(
    ("args", "env", "fragment"),
    [
        (["--database-url", "not a url"], {}, "not a valid URL"),
        (["--database-url", "mysql://u@db/kinitro"], {}, "supports SQLite and PostgreSQL"),
        ([], {"KINITRO_API_DATABASE_URL": "postgresql://u:hunter2@127.0.0.1:1/k"}, "cannot reach PostgreSQL"),
        ([], {"KINITRO_API_PORT": "eighty"}, "invalid configuration: port"),
        (["--log-level", "loud"], {}, "Invalid value for '--log-level'"),
    ],
)
def test_bad_configuration_is_a_one_line_error(
    captured_run: dict[str, object],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env: dict[str, str],
    fragment: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    result = CliRunner().invoke(main, ["api", *args])

    assert result.exit_code in (1, 2)  # 2: click's own usage errors
    assert "Traceback" not in result.output and fragment in result.output
    assert "hunter2" not in result.output
    assert len([line for line in result.stderr.splitlines() if line.startswith("Error")]) == 1
    assert "app" not in captured_run


def test_unreachable_database_is_one_line_and_exit_1(captured_run: dict[str, object]) -> None:
    result = CliRunner().invoke(main, ["api", "--database-url", "postgresql://postgres@127.0.0.1:1/kinitro"])

    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1].startswith("Error: cannot reach PostgreSQL at 127.0.0.1:1")
    assert "app" not in captured_run


def test_missing_tables_do_not_stop_the_api(captured_run: dict[str, object], tmp_path: Path) -> None:
    # `kinitro dev` starts the API before the first Dagster run creates the tables.
    result = CliRunner().invoke(main, ["api", "--database-url", f"sqlite:///{tmp_path / 'new.db'}"])

    assert result.exit_code == 0, result.output
    assert "app" in captured_run


@pytest.mark.parametrize(("args", "env"), [(["--json-logs"], {}), ([], {"KINITRO_API_JSON_LOGS": "true"})])
def test_json_logs_by_flag_or_variable(
    captured_run: dict[str, object],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env: dict[str, str],
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    result = CliRunner().invoke(main, ["api", "--database-url", f"sqlite:///{tmp_path / 'w.db'}", *args])

    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    serving = next(line for line in lines if line["event"] == "serving")
    assert serving["level"] == "WARNING" and serving["logger"] == "weights_api.app" and serving["port"] == 8000
    assert "ts" in serving


def test_text_logs_are_key_value_by_default(captured_run: dict[str, object], tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["api", "--database-url", f"sqlite:///{tmp_path / 'w.db'}"])

    assert result.exit_code == 0, result.output
    assert any("WARNING weights_api.app: serving port=8000" in line for line in result.stderr.splitlines())
