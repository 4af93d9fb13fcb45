"""Logging for every service: key=value text by default, one JSON object a line when asked."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

_HANDLER_NAME = "kinitro-api"

# Attributes every LogRecord has; anything else came from `extra=` and is printed as a field.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "color_message"}


def _extras(record: logging.LogRecord) -> dict[str, object]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
            **_extras(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class KeyValueFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        return f"{line} {fields}" if fields else line


def configure_logging(level: str = "INFO", json_logs: bool = False) -> None:
    """Route the root logger (uvicorn's loggers included) to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_logs else KeyValueFormatter())
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    # Replace only our own handler: others' (pytest's capture, an embedding app's) stay.
    root.handlers[:] = [h for h in root.handlers if h.get_name() != _HANDLER_NAME] + [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers[:] = []
        uvicorn_logger.propagate = True
    if logging.getLevelName(level) > logging.DEBUG:
        logging.getLogger("alembic").setLevel(logging.WARNING)  # "Context impl ..." on every schema check


_SERVICE_HANDLER_NAME = "kinitro-service"
PACKAGE_LOGGER = "kinitro_dagster"
# The executor's part of the code: rollouts, deployments, the policy client.
EXECUTOR_LOGGERS = ("kinitro_dagster.sim", "kinitro_dagster.miners")


def configure_service_logging(scheduler_level: str, executor_level: str, json_logs: bool) -> None:
    """The code location's own loggers, wherever it loads (code server, daemon, run workers):
    KINITRO_SCHEDULER_LOG_LEVEL for the package, KINITRO_EXECUTOR_LOG_LEVEL for rollouts and
    deployments, one JSON object a line with *_JSON_LOGS. Dagster's loggers are left alone, and
    where the host already routes the root logger (a test runner, `kinitro demo`), so is output."""
    package = logging.getLogger(PACKAGE_LOGGER)
    package.handlers[:] = [h for h in package.handlers if h.get_name() != _SERVICE_HANDLER_NAME]
    if not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter() if json_logs else KeyValueFormatter())
        handler.set_name(_SERVICE_HANDLER_NAME)
        package.addHandler(handler)
    package.setLevel(scheduler_level)
    for name in EXECUTOR_LOGGERS:
        logging.getLogger(name).setLevel(executor_level)
