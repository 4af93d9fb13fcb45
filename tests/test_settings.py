"""Settings from the environment, as operators and launchers set them."""

import pytest
from pydantic import ValidationError

from kinitro_dagster.settings import ExecutorSettings


@pytest.mark.parametrize("name", ["KINITRO_EXECUTOR_MAX_WORKERS", "KINITRO_EXECUTOR_MINERS_PER_WORKER"])
def test_an_optional_count_left_empty_means_its_default(monkeypatch, name):
    monkeypatch.setenv(name, "")  # deploy/.env.example leaves them empty; the launcher forwards ""
    settings = ExecutorSettings()
    assert settings.max_workers is None and settings.miners_per_worker is None


def test_optional_counts_parse_and_must_be_positive(monkeypatch):
    monkeypatch.setenv("KINITRO_EXECUTOR_MAX_WORKERS", "3")
    monkeypatch.setenv("KINITRO_EXECUTOR_MINERS_PER_WORKER", "2")
    settings = ExecutorSettings()
    assert (settings.max_workers, settings.miners_per_worker) == (3, 2)
    for bad in ("0", "-1", "two"):
        monkeypatch.setenv("KINITRO_EXECUTOR_MINERS_PER_WORKER", bad)
        with pytest.raises(ValidationError, match="miners_per_worker"):
            ExecutorSettings()
