"""deploy/systemd, deploy/nginx and deploy/OPERATIONS.md agree with the code: each unit starts the
venv's `kinitro` with flags its command has, the environment file names only known settings, the
instance file passes Dagster's schemas with TLS options that reach libpq, the ports line up
between units, workspace and nginx, and `systemd-analyze verify` / `nginx -t` accept the files
where those tools are installed. Fast: no services start, no database is reached.

`kinitro scheduler` and `kinitro executor` are checked once the CLI has them; until then their
flag checks are skipped, naming the missing command.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
SYSTEMD = DEPLOY / "systemd"
NGINX_SITE = DEPLOY / "nginx" / "kinitro.conf"
UNITS = ("kinitro-api", "kinitro-scheduler", "kinitro-executor", "kinitro-webserver")
INSTALL_ROOT = "/opt/kinitro"
VENV_BIN = f"{INSTALL_ROOT}/.venv/bin"


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """{section: {key: [values, in order]}} of a systemd unit file (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    logical = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not logical and (not line or line.startswith(("#", ";"))):
            continue
        if line.endswith("\\"):  # continuation: the newline and the backslash are dropped
            logical += line[:-1] + " "
            continue
        line, logical = logical + line, ""
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None and "=" in line, f"{path.name}: not a key=value line in a section: {raw!r}"
        key, value = line.split("=", 1)
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def parse_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines as systemd's EnvironmentFile= reads them (comments skipped, one level of
    surrounding quotes removed)."""
    env = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, value = line.split("=", 1)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key.strip()] = value
    return env


def unit(name: str) -> dict[str, dict[str, list[str]]]:
    return parse_unit(SYSTEMD / f"{name}.service")


def exec_start(name: str) -> list[str]:
    (line,) = unit(name)["Service"]["ExecStart"]
    return shlex.split(line)


def flag_values(argv: list[str]) -> dict[str, str | None]:
    """{--flag: its value or None} of an argv (`--flag value`, `--flag=value`, or a bare switch)."""
    flags: dict[str, str | None] = {}
    for i, arg in enumerate(argv):
        if arg.startswith("-"):
            name, _, inline = arg.partition("=")
            following = argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("-") else None
            flags[name] = inline or following
    return flags


def read_write_paths(name: str) -> list[str]:
    return [p.lstrip("-") for value in unit(name)["Service"].get("ReadWritePaths", []) for p in value.split()]


@pytest.fixture
def env_example() -> dict[str, str]:
    return parse_env_file(SYSTEMD / "kinitro.env.example")


# --- the units --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", UNITS)
def test_unit_runs_the_venv_entry_point_as_the_service_user(name):
    service = unit(name)["Service"]
    argv = exec_start(name)
    expected = "dagster-webserver" if name == "kinitro-webserver" else "kinitro"
    assert argv[0] == f"{VENV_BIN}/{expected}", f"{name}: ExecStart should start {VENV_BIN}/{expected}"
    assert "uv" not in {Path(a).name for a in argv}, f"{name}: ExecStart goes through `uv run`: {argv}"
    assert service["User"] == ["kinitro"] and service["WorkingDirectory"] == [INSTALL_ROOT]
    assert service["Restart"] == ["always"]
    assert service["KillSignal"] == ["SIGTERM"] and service["TimeoutStopSec"] == ["30"]
    assert service["EnvironmentFile"] == ["/etc/kinitro/kinitro.env"]
    for option in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert service[option] == ["yes"], (name, option)
    assert service["ProtectSystem"] == ["strict"]
    assert "postgresql.service" in " ".join(unit(name)["Unit"]["After"]).split()


def _click_command(name: str):
    from kinitro_dagster.cli import main

    command = main.commands.get(name)
    if command is None:
        pytest.skip(f"`kinitro {name}` is not in this checkout's CLI yet: its unit's flags are checked once it is")
    return command


def _options(command) -> set[str]:
    return {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}


@pytest.mark.parametrize("name", ["kinitro-api", "kinitro-scheduler", "kinitro-executor"])
def test_unit_flags_are_options_of_its_kinitro_command(name):
    argv = exec_start(name)
    subcommand = {"kinitro-api": "api", "kinitro-scheduler": "scheduler", "kinitro-executor": "executor"}[name]
    assert argv[1] == subcommand, f"{name} should run `kinitro {subcommand}`, not `kinitro {argv[1]}`"
    command = _click_command(subcommand)
    unknown = set(flag_values(argv[2:])) - _options(command)
    assert not unknown, f"{name} passes {sorted(unknown)}, which `kinitro {subcommand}` does not have"


def test_webserver_unit_flags_are_dagster_webserver_options():
    from dagster_webserver.cli import cli

    unknown = set(flag_values(exec_start("kinitro-webserver")[1:])) - _options(cli)
    assert not unknown, f"kinitro-webserver passes {sorted(unknown)}, which dagster-webserver does not have"


def test_executor_is_not_given_the_daemons_queue_flags():
    # They configure the daemon's run queue: `kinitro executor` refuses them.
    assert not {"--batch-size", "--poll-interval", "--eval-images"} & set(flag_values(exec_start("kinitro-executor")))


def test_executor_in_docker_mode_gets_the_docker_group_and_ordering(env_example):
    executor = unit("kinitro-executor")
    assert env_example["KINITRO_EXECUTOR_EVAL_MODE"] == "docker"
    assert executor["Service"]["SupplementaryGroups"] == ["docker"]
    assert "docker.service" in " ".join(executor["Unit"]["After"]).split()
    assert "docker.service" in " ".join(executor["Unit"]["Wants"]).split()
    # The policy container's uid reads the snapshots this service downloads: no restrictive umask.
    assert "UMask" not in executor["Service"]
    # GPU rendering needs the host's devices; ProtectClock would deny them (DeviceAllow=char-rtc).
    assert "PrivateDevices" not in executor["Service"] and "ProtectClock" not in executor["Service"]


def test_services_bind_loopback_and_the_ports_line_up():
    api = flag_values(exec_start("kinitro-api"))
    executor = flag_values(exec_start("kinitro-executor"))
    ui = flag_values(exec_start("kinitro-webserver"))
    assert api["--host"] == executor["--host"] == ui["--host"] == "127.0.0.1"
    workspace = yaml.safe_load((SYSTEMD / "workspace.yaml").read_text())["load_from"]
    grpc = {"host": "127.0.0.1", "port": int(executor["--port"]), "location_name": "kinitro"}
    assert workspace == [{"grpc_server": grpc}]
    scheduler = flag_values(exec_start("kinitro-scheduler"))
    assert scheduler["--workspace"] == ui["--workspace"] == "/etc/kinitro/workspace.yaml"
    site = NGINX_SITE.read_text()
    upstreams = dict(re.findall(r"upstream (\w+) \{\s*server ([\d.:]+);", site))
    assert upstreams == {"kinitro_api": f"127.0.0.1:{api['--port']}", "kinitro_dagster_ui": f"127.0.0.1:{ui['--port']}"}


def test_workspace_passes_dagsters_schema():
    from dagster._core.workspace.config_schema import process_workspace_config

    result = process_workspace_config(yaml.safe_load((SYSTEMD / "workspace.yaml").read_text()))
    assert result.success, result.errors


def test_state_dir_and_dagster_home_are_writable_where_needed(env_example):
    home, state = env_example["DAGSTER_HOME"], env_example["KINITRO_STATE_DIR"]
    assert flag_values(exec_start("kinitro-scheduler"))["--dagster-home"] == home

    def covered(path: str, name: str) -> bool:
        return any(path == p or path.startswith(p.rstrip("/") + "/") for p in read_write_paths(name))

    for name in ("kinitro-scheduler", "kinitro-executor", "kinitro-webserver"):
        assert covered(home, name), f"{name}: DAGSTER_HOME {home} is read-only under ProtectSystem=strict"
    assert covered(state, "kinitro-executor"), "kinitro-executor writes the hub cache under KINITRO_STATE_DIR"
    assert read_write_paths("kinitro-api") == []  # the API only reads


def _rewritten_units(tmp_path: Path) -> Path:
    """The units with /opt/kinitro pointing at this checkout, whose .venv has the same entry points
    (`systemd-analyze verify` checks that each ExecStart binary exists)."""
    for name in UNITS:
        text = (SYSTEMD / f"{name}.service").read_text().replace(INSTALL_ROOT, str(REPO))
        (tmp_path / f"{name}.service").write_text(text)
    return tmp_path


def test_units_pass_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd)")
    for binary in ("kinitro", "dagster-webserver"):
        if not (REPO / ".venv" / "bin" / binary).exists():
            pytest.skip(f"{REPO}/.venv/bin/{binary} is missing: run `make install` first")
    units = _rewritten_units(tmp_path)
    result = subprocess.run(
        [analyze, "verify", *(str(units / f"{name}.service") for name in UNITS)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    # verify exits 0 on unknown keys and unparsable values too: any line naming a unit is a finding.
    findings = [line for line in (result.stdout + result.stderr).splitlines() if "kinitro-" in line]
    assert result.returncode == 0 and not findings, "\n".join(findings) or result.stderr


# --- the environment file ----------------------------------------------------------------------


def test_env_example_names_only_known_settings(env_example):
    from kinitro_dagster.settings import check_environment, known_variables

    known = known_variables()
    unknown = sorted(v for v in env_example if v.startswith("KINITRO_") and v not in known)
    assert not unknown, f"kinitro.env.example sets settings no service reads: {unknown}"
    # Commented-out lines are suggestions: they must be real names too.
    commented = re.findall(r"^#(KINITRO_\w+)=", (SYSTEMD / "kinitro.env.example").read_text(), re.M)
    assert set(commented) <= set(known), sorted(set(commented) - set(known))
    check_environment(env_example)  # nor a refused guide setting


def test_env_example_is_what_the_instance_and_the_units_expect(env_example):
    referenced = set(re.findall(r"\{env: (\w+)\}", (SYSTEMD / "dagster.yaml").read_text()))
    assert referenced <= set(env_example), sorted(referenced - set(env_example))
    assert env_example["MUJOCO_GL"] == "egl"
    assert env_example["KINITRO_EXECUTOR_API_URL"] == f"http://127.0.0.1:{flag_values(exec_start('kinitro-api'))['--port']}"
    assert "--database-url" not in " ".join(" ".join(exec_start(n)) for n in UNITS)  # secrets stay in the file


def test_warehouse_url_carries_tls_options_to_psycopg2(env_example):
    from sqlalchemy.dialects.postgresql.psycopg2 import PGDialect_psycopg2

    from kinitro_dagster.warehouse.store import normalize_url

    url = normalize_url(env_example["KINITRO_DATABASE_URL"])
    _, connect = PGDialect_psycopg2().create_connect_args(url)
    assert connect["sslmode"] == "verify-full"
    assert connect["sslrootcert"] == "/etc/kinitro/postgres-ca.crt"


# --- the Dagster instance ----------------------------------------------------------------------


def test_instance_config_passes_dagster_schemas(env_example, monkeypatch):
    """As test_deploy_config.py checks deploy/dagster.yaml: the instance schema, then each
    configurable class's own section."""
    import importlib

    from dagster import DefaultRunLauncher
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config

    from kinitro_dagster.defs.run_coordinator import EnvFamilyRunCoordinator

    for key, value in env_example.items():
        monkeypatch.setenv(key, value)
    config, _ = dagster_instance_config(str(SYSTEMD))
    for cls, section in ((DefaultRunLauncher, "run_launcher"), (EnvFamilyRunCoordinator, "run_coordinator")):
        assert getattr(importlib.import_module(config[section]["module"]), config[section]["class"]) is cls
        result = process_config(cls.config_type(), config[section].get("config") or {})
        assert result.success, (cls.__name__, result.errors)
    assert config["run_monitoring"]["enabled"] and config["run_retries"]["enabled"]
    assert config["run_retries"]["max_retries"] >= 1
    # The same queue as the compose stack's instance.
    compose_instance = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    assert config["run_coordinator"]["config"] == compose_instance["run_coordinator"]["config"]


def test_instance_storage_connects_with_tls_verification(env_example, monkeypatch):
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config
    from dagster._core.storage.config import pg_config
    from dagster_postgres.utils import pg_url_from_config
    from sqlalchemy import make_url
    from sqlalchemy.dialects.postgresql.psycopg2 import PGDialect_psycopg2

    for key, value in env_example.items():
        monkeypatch.setenv(key, value)
    config, _ = dagster_instance_config(str(SYSTEMD))
    # What dagster-postgres does when the storage starts: resolve {env: ...}, build the URL.
    storage = process_config(pg_config(), config["storage"]["postgres"])
    assert storage.success, storage.errors
    url = pg_url_from_config(storage.value)
    assert url.startswith("postgresql+psycopg2://")
    _, connect = PGDialect_psycopg2().create_connect_args(make_url(url))
    assert connect["sslmode"] == "verify-full"
    assert connect["sslrootcert"] == "/etc/kinitro/postgres-ca.crt"
    assert connect["host"] == env_example["DAGSTER_PG_HOST"] and connect["dbname"] == env_example["DAGSTER_PG_DB"]


# --- nginx -------------------------------------------------------------------------------------


def test_nginx_site_has_tls_rate_limits_and_ui_auth():
    site = NGINX_SITE.read_text()
    assert re.search(r"ssl_protocols TLSv1\.2 TLSv1\.3;", site)
    assert "return 301 https://$host$request_uri;" in site
    assert re.search(r"limit_req_zone \$binary_remote_addr zone=kinitro_api:\S+ rate=\d+r/s;", site)
    assert re.search(r"limit_req zone=kinitro_api burst=\d+", site) and "limit_req_status 429;" in site
    metrics = re.search(r"location = /metrics \{(.*?)\}", site, re.S).group(1)
    rules = [line.strip() for line in metrics.strip().splitlines() if line.strip().startswith(("allow", "deny"))]
    assert any(re.fullmatch(r"allow \d+\.\d+\.\d+\.\d+/\d+;", r) for r in rules) and rules[-1] == "deny all;"
    ui = site[site.index("server_name dagster.example.org;", site.index("listen 443")):]
    assert "auth_basic_user_file" in ui
    assert "proxy_set_header Upgrade $http_upgrade;" in ui
    assert "proxy_set_header Connection $kinitro_connection_upgrade;" in ui


def test_nginx_accepts_the_site(tmp_path):
    nginx, openssl = shutil.which("nginx"), shutil.which("openssl")
    if nginx is None or openssl is None:
        pytest.skip("nginx (and openssl for a test certificate) not installed: apt-get install -y nginx")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=backend.example.org",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    site = re.sub(r"/etc/letsencrypt/live/[^/]+/fullchain\.pem", str(cert), NGINX_SITE.read_text())
    site = re.sub(r"/etc/letsencrypt/live/[^/]+/privkey\.pem", str(key), site)
    if os.geteuid() != 0:  # `nginx -t` binds the listen addresses: ports below 1024 need root
        site = re.sub(r"(listen (?:\[::\]:)?)(80|443)\b", lambda m: f"{m[1]}{18000 + int(m[2])}", site)
    (tmp_path / "kinitro.conf").write_text(site)
    # The site goes inside `http { }`, as Debian's nginx.conf includes conf.d/*.conf; every path
    # nginx would write is under tmp_path, so the check needs no root.
    kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    temp_paths = " ".join(f"{kind}_temp_path {tmp_path / kind};" for kind in kinds)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path / 'nginx.pid'};\nevents {{}}\n"
        f"http {{\n  {temp_paths}\n  access_log {tmp_path / 'access.log'};\n"
        f"  include {tmp_path / 'kinitro.conf'};\n}}\n"
    )
    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


# --- OPERATIONS.md -----------------------------------------------------------------------------


def test_operations_doc_names_files_that_exist():
    text = (DEPLOY / "OPERATIONS.md").read_text()
    named = set(re.findall(r"\b((?:deploy|tests|sim_images)/[\w./*-]*[\w*])", text))
    missing = sorted(p for p in named if not any(REPO.glob(p)))
    assert not missing, f"deploy/OPERATIONS.md names files that are not in the repository: {missing}"
    for name in UNITS:
        assert f"{name}.service" in text or name in text
