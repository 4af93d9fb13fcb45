"""Miner runtimes: the packages a policy declares, resolved with uv and installed from wheels (DESIGN §7).

A policy declares what it needs in `requirements.txt` (and `[project].dependencies` of a
`pyproject.toml`, if it has one). A runtime is the runner's base set (what serving needs: fastapi,
uvicorn, pydantic, numpy, as `sim_images/miner-runner/requirements.txt` pins them) plus those
declarations, resolved together by `uv pip compile --only-binary :all:` for the interpreter the
policy will run on, so a conflict with the base set is reported rather than papered over.

- Content-addressed: the runtime id is the sha256 of the resolved pins, the interpreter and the
  index settings, so 256 miners that resolve to the same set share one runtime.
- Wheels only: no sdist is ever built, so no build script of a miner's dependency runs here.
- Limits: one wall-clock budget for resolve + install, a maximum installed size (measured while
  installing and at the end; over it the runtime is deleted), and the index the operator chose
  (`index_url`, `extra_index_url`: e.g. a CPU-only torch index).
- Reuse without uv: `<root>/index/<key>.json` maps the declared requirements (normalized), the
  base set, the interpreter and the index settings to the runtime id, so a second miner with the
  same declarations finds its runtime in milliseconds. A declaration such as `foo>=1` therefore
  keeps resolving to what it resolved to the first time, until the index entry is deleted.
- Concurrency: builders of the same id take a file lock (`<root>/.locks/<id>.lock`); one builds
  into `<root>/.build-*` and renames it into place when complete, the others wait and reuse it.
- No declarations, or only ones the base runtime already satisfies (the example miners' fastapi,
  numpy, metaworld...): no runtime, the policy runs as before (this venv; the runner image).

Local mode (`ensure_venv_runtime`): a relocatable venv at `<root>/<id>/`; the policy server runs
with `<root>/<id>/bin/python`. Docker mode (`ensure_image_runtime`): an image layer
`FROM <miner-runner image>` with the missing wheels installed by pip in `docker build --network
host` (registry access only: the context holds the pinned requirements and the CA bundle, no host
mounts; the build's containers get CPU and memory limits), tagged `kinitro/runtime:<id[:16]>`.

Failures a miner causes are `RuntimeBuildError(reason)`, one line naming the requirement; the
evaluator records them as the miner's `deployment_failed` episodes. `RuntimeSetupError` means no
runtime can be built on this machine at all (uv missing), and `DiskFull` that the disk under the
store (or docker's) is full: the evaluator's problems, not a miner's; they fail the step.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import importlib.metadata
import json
import logging
import math
import os
import platform
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from kinitro_dagster.miners.disk import DiskFull, is_disk_full, reports_disk_full
from kinitro_dagster.miners.docker_deployment import POLICY_UID
from kinitro_dagster.settings import executor_default
from kinitro_dagster.sizes import parse_memory

logger = logging.getLogger(__name__)

PYPI_SIMPLE = "https://pypi.org/simple"
RUNNER_REQUIREMENTS = Path(__file__).resolve().parents[2] / "sim_images" / "miner-runner" / "requirements.txt"
RUNTIME_IMAGE_REPO = "kinitro/runtime"
MANIFEST = "kinitro-runtime.json"
SIZE_SETTING = "KINITRO_EXECUTOR_MINER_RUNTIME_MAX_SIZE"
TIMEOUT_SETTING = "KINITRO_EXECUTOR_MINER_RUNTIME_BUILD_TIMEOUT"
# What a runtime must import to serve a policy (as the miner-runner image checks).
SERVING_IMPORTS = "import fastapi, uvicorn, pydantic, numpy"
_SIZE_POLL_S = 2.0
_LOCK_POLL_S = 0.2
_UV_OUTPUT_CHARS = 4000


class RuntimeBuildError(RuntimeError):
    """A policy's runtime cannot be built; `reason` is one operator-readable line naming the cause."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RuntimeSetupError(RuntimeError):
    """No runtime can be built on this machine (uv missing, docker missing): not any miner's fault."""


@dataclass(frozen=True)
class RuntimeSettings:
    """How runtimes are built (`KINITRO_EXECUTOR_MINER_RUNTIME_*`) and where they live (`root`)."""

    root: Path  # <state dir>/runtimes
    index_url: str = executor_default("miner_runtime_index_url")
    extra_index_url: str | None = executor_default("miner_runtime_extra_index_url")
    max_size: str | int = executor_default("miner_runtime_max_size")  # installed size: `6Gi`, `500Mi` or bytes
    build_timeout_s: float = executor_default("miner_runtime_build_timeout")  # resolve + install, wall clock
    # Docker mode: limits of the build's containers (the miner deployment's, by default).
    build_cpus: float = executor_default("miner_deployment_cpu")
    build_memory: str | int = executor_default("miner_deployment_memory")

    @property
    def max_size_bytes(self) -> int:
        return parse_memory(self.max_size)

    def index_args(self) -> list[str]:
        args = ["--index-url", self.index_url]
        if self.extra_index_url:
            args += ["--extra-index-url", self.extra_index_url]
        return args

    def index_identity(self) -> dict[str, str | None]:
        return {"index_url": self.index_url, "extra_index_url": self.extra_index_url or None}

    def index_label(self) -> str:
        """The index for messages (without any credentials in its URL)."""
        label = _without_credentials(self.index_url)
        if self.extra_index_url:
            label += f" (or {_without_credentials(self.extra_index_url)})"
        return label


@dataclass(frozen=True)
class Runtime:
    """A built runtime: a venv directory (local mode) or an image tag (docker mode)."""

    id: str
    location: str
    pins: tuple[str, ...]
    built: bool  # this call built it (False: reused)
    seconds: float  # what this call took (the build, or finding it)
    size_bytes: int | None = None

    @property
    def python(self) -> str:
        """The interpreter of a venv runtime (local mode)."""
        return str(Path(self.location) / "bin" / "python")


@dataclass(frozen=True)
class Target:
    """What runtimes are built for: an interpreter, its platform, and what it already has.

    `base` is installed in every runtime (requirements); `constraints` are versions already present
    that a runtime must not change (docker mode: the runner image's packages); `installed` is what
    the base runtime provides without any build (name -> version), for the no-build shortcut.
    """

    identity: str  # goes into every id: the interpreter (local) or the base image id (docker)
    python_version: str  # e.g. 3.12.1
    platform_label: str  # e.g. "linux x86_64", for messages
    resolve_args: tuple[str, ...]  # uv pip compile's interpreter / platform selection
    base: tuple[str, ...] = ()
    constraints: tuple[str, ...] = ()
    installed: Mapping[str, str] = field(default_factory=dict)

    @property
    def python_label(self) -> str:
        return "Python " + ".".join(self.python_version.split(".")[:2])


class Builder(Protocol):
    def location(self, runtime_id: str) -> str: ...

    def complete(self, runtime_id: str) -> bool: ...

    def size(self, runtime_id: str) -> int | None: ...

    def build(self, runtime_id: str, pins: Sequence[str], deadline: float) -> int:
        """Build runtime `runtime_id` with exactly `pins`; returns its size in bytes."""
        ...


# -- what a policy declares -------------------------------------------------------------------


def declared_requirements(policy_dir: Path) -> list[str]:
    """The policy's requirements, normalized (`str(Requirement)`), in file order, without duplicates.

    Only index requirements (`name[extras] specifier ; marker`) are accepted: options (`-r`, `-e`,
    `--index-url`, ...), URLs and paths would let a policy choose where code comes from.
    """
    policy_dir = Path(policy_dir)
    lines: list[tuple[str, str]] = []  # (where, text)
    requirements_txt = policy_dir / "requirements.txt"
    if requirements_txt.is_file():
        for number, text in _logical_lines(_read_text(requirements_txt)):
            lines.append((f"requirements.txt line {number}", text))
    pyproject = policy_dir / "pyproject.toml"
    if pyproject.is_file():
        try:
            project = tomllib.loads(_read_text(pyproject)).get("project", {})
        except tomllib.TOMLDecodeError as error:
            raise RuntimeBuildError(f"pyproject.toml is not valid TOML: {error}") from None
        dependencies = project.get("dependencies", []) if isinstance(project, dict) else []
        if not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies):
            raise RuntimeBuildError("pyproject.toml's [project].dependencies must be a list of requirement strings")
        lines += [("pyproject.toml [project].dependencies", d.strip()) for d in dependencies if d.strip()]
    declared: list[str] = []
    for where, text in lines:
        normalized = normalized_requirement(_index_requirement(where, text))
        if normalized not in declared:
            declared.append(normalized)
    return declared


def normalized_requirement(requirement: Requirement) -> str:
    """One spelling per meaning (`CowSay == 6.1` and `cowsay==6.1` alike), so the reuse index matches."""
    extras = f"[{','.join(sorted(canonicalize_name(e) for e in requirement.extras))}]" if requirement.extras else ""
    marker = f"; {requirement.marker}" if requirement.marker is not None else ""
    return f"{canonicalize_name(requirement.name)}{extras}{requirement.specifier}{marker}"


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise RuntimeBuildError(f"cannot read {path.name}: {error}") from None


def _logical_lines(text: str) -> Iterable[tuple[int, str]]:
    """(first line number, text) of each requirement line: comments dropped, `\\` continuations joined."""
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = (pending + line).strip(), ""
        if line:
            yield start, line
    if pending.strip():
        yield start, pending.strip()


def _index_requirement(where: str, text: str) -> Requirement:
    if text.startswith("-"):
        raise RuntimeBuildError(
            f"{where} {text!r} is an option: only requirements from the index are allowed "
            "(name[extras] specifier ; marker), the index is the operator's"
        )
    try:
        requirement = Requirement(text)
    except InvalidRequirement as error:
        hint = " (URLs and paths are not allowed)" if re.search(r"[/\\]|://", text) else ""
        raise RuntimeBuildError(f"{where} {text!r} is not a requirement{hint}: {error}".splitlines()[0]) from None
    if requirement.url:
        raise RuntimeBuildError(
            f"{where} {text!r} names a URL: only requirements from the index are allowed (e.g. {requirement.name}==1.0)"
        )
    return requirement


def satisfied_by(declared: Iterable[str], installed: Mapping[str, str]) -> bool:
    """Whether every declaration is a plain `name specifier` that `installed` (name -> version) meets."""
    for text in declared:
        requirement = Requirement(text)
        if requirement.marker is not None or requirement.extras:
            return False  # the resolver decides those
        version = installed.get(canonicalize_name(requirement.name))
        if version is None or not SpecifierSet(str(requirement.specifier)).contains(version, prereleases=True):
            return False
    return True


# -- the two targets --------------------------------------------------------------------------


def runner_base_set(path: Path = RUNNER_REQUIREMENTS) -> tuple[str, ...]:
    """The runner image's server packages (`sim_images/miner-runner/requirements.txt`): every runtime has them."""
    if not path.is_file():
        raise RuntimeSetupError(f"{path} is missing: miner runtimes are built on that base set, which ships with "
                                "the code (sim_images/evaluator/build.sh copies it); or set "
                                "KINITRO_EXECUTOR_MINER_RUNTIMES=false")
    lines = _logical_lines(path.read_text())
    return tuple(normalized_requirement(_index_requirement(path.name, text)) for _, text in lines)


@functools.cache
def local_target(python: str = sys.executable) -> Target:
    """Runtimes for local mode: venvs made from this interpreter, with the runner's base set.

    The base runtime (no build) is this process's own environment, where the policy ran before.
    """
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()
                 if d.metadata["Name"]}  # fmt: skip
    base_python = os.path.realpath(getattr(sys, "_base_executable", None) or python)
    machine = platform.machine().lower()
    return Target(
        identity=f"venv:{platform.python_implementation().lower()}-{platform.python_version()}:{base_python}",
        python_version=platform.python_version(),
        platform_label=f"{platform.system().lower()} {machine}",
        resolve_args=("--python", python),
        base=runner_base_set(),
        installed=installed,
    )


# -- the runtime itself -----------------------------------------------------------------------


def ensure_venv_runtime(policy_dir: Path, settings: RuntimeSettings, target: Target | None = None) -> Runtime | None:
    """Local mode: the venv runtime of `policy_dir` (built or reused), or None for the base runtime."""
    target = target or local_target()
    return ensure_runtime(policy_dir, settings, target, VenvBuilder(settings, target))


def ensure_runtime(policy_dir: Path, settings: RuntimeSettings, target: Target, builder: Builder) -> Runtime | None:
    """The runtime of what `policy_dir` declares, for `target`: reused when known, else resolved and built.

    None when the policy declares nothing the base runtime lacks. Raises RuntimeBuildError, or
    DiskFull when the store's disk fills up.
    """
    started = time.monotonic()
    declared = declared_requirements(policy_dir)
    if not declared or satisfied_by(declared, target.installed):
        return None
    try:
        return _ensure_declared(declared, settings, target, builder, started)
    except OSError as error:  # the index, the lock or the runtime written to a full disk
        if is_disk_full(error):
            raise DiskFull(str(settings.root), "building a miner runtime", str(error)) from error
        raise


def _ensure_declared(declared: list[str], settings: RuntimeSettings, target: Target, builder: Builder,
                     started: float) -> Runtime:  # fmt: skip
    key = _digest({"declared": sorted(declared), "target": target.identity, "base": list(target.base),
                   "constraints": list(target.constraints), "index": settings.index_identity()})  # fmt: skip
    known = _read_index(settings.root, key)
    if known is not None and builder.complete(known["id"]):
        _check_size(known.get("size_bytes"), settings)  # the limit may have been lowered since
        mark_used(settings.root, known["id"])
        return Runtime(known["id"], builder.location(known["id"]), tuple(known["pins"]), built=False,
                       seconds=time.monotonic() - started, size_bytes=known.get("size_bytes"))  # fmt: skip
    deadline = started + settings.build_timeout_s
    pins = resolve(declared, target, settings, deadline)
    runtime_id = _digest({"pins": pins, "target": target.identity, "index": settings.index_identity()})
    with _build_lock(settings, runtime_id, deadline):
        built = not builder.complete(runtime_id)
        size = builder.build(runtime_id, pins, deadline) if built else builder.size(runtime_id)
        _check_size(size, settings)
        _write_index(settings.root, key, {"id": runtime_id, "pins": pins, "size_bytes": size,
                                          "declared": declared, "target": target.identity})  # fmt: skip
        mark_used(settings.root, runtime_id)
    return Runtime(runtime_id, builder.location(runtime_id), tuple(pins), built=built,
                   seconds=time.monotonic() - started, size_bytes=size)  # fmt: skip


def resolve(declared: Sequence[str], target: Target, settings: RuntimeSettings, deadline: float) -> list[str]:
    """`uv pip compile` of base set + declarations for `target`: sorted `name==version` pins."""
    with tempfile.TemporaryDirectory(prefix="kinitro-resolve-") as work:
        work_dir = Path(work)
        (work_dir / "base.in").write_text("".join(f"{r}\n" for r in target.base))
        (work_dir / "policy.in").write_text("".join(f"{r}\n" for r in declared))
        command = [
            *uv_command(), "pip", "compile", "--quiet", "--no-header", "--no-annotate", "--only-binary", ":all:",
            *target.resolve_args, *settings.index_args(), "--output-file", "pins.txt", "base.in", "policy.in",
        ]  # fmt: skip
        if target.constraints:
            (work_dir / "constraints.txt").write_text("".join(f"{c}\n" for c in target.constraints))
            command += ["--constraint", "constraints.txt"]
        result = _run_uv(command, work_dir, settings, deadline, "resolving the policy's requirements")
        if result.returncode != 0 and reports_disk_full(result.stderr):  # uv's cache lives in the store
            raise DiskFull(str(settings.root), "resolving the policy's requirements", _last_line(result.stderr))
        if result.returncode != 0:
            raise RuntimeBuildError(explain_resolution_failure(result.stderr, declared, target, settings))
        pins = sorted(_normalized_pin(line) for line in (work_dir / "pins.txt").read_text().splitlines()
                      if line.strip() and not line.lstrip().startswith(("#", "-")))  # fmt: skip
    return pins


def _normalized_pin(line: str) -> str:
    requirement = Requirement(line.strip())
    return f"{canonicalize_name(requirement.name)}{requirement.specifier}"


def _safe_normalized(text: str) -> str | None:
    try:
        return _normalized_pin(text)
    except InvalidRequirement:
        return None


def explain_resolution_failure(stderr: str, declared: Sequence[str], target: Target, settings: RuntimeSettings) -> str:
    """One line from uv's resolver error that names the requirement at fault."""
    text = " ".join(stderr.split())

    def named(uv_text: str) -> str:
        """The policy's own line for a package uv names (`foo==1.0`, `foo`), else uv's text."""
        name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", uv_text)
        wanted = canonicalize_name(name.group(0)) if name else None
        for requirement in declared:
            if canonicalize_name(Requirement(requirement).name) == wanted:
                return f"requirement {requirement!r}"
        return f"requirement {uv_text!r} (a dependency of the policy's requirements)"

    where = f"{target.python_label} on {target.platform_label}"
    if match := re.search(r"Because (\S+) was not found in the package registry", text):
        return f"{named(match.group(1))} not found on {settings.index_label()}"
    # `foo==1.0 has no usable wheels`, `all versions of foo have no usable wheels`, `foo==1.0 has no
    # wheels with a matching platform tag`: the first package uv blames.
    if match := re.search(r"(?:Because|and) (?:all versions of )?(\S+?)(?:==\S+)? (?:has|have) no (?:usable )?wheels",
                          text):  # fmt: skip
        return f"{named(match.group(1))} has no wheel for {where} (sdists are not built)"
    if match := re.search(r"Because there is no version of (\S+?) and", text):
        return f"{named(match.group(1))} has no such version on {settings.index_label()}"
    if match := re.search(r"Because you require (.+?) and (?:you require )?(.+?), we can conclude", text):
        pieces = [match.group(1), match.group(2)]
        fixed = {_normalized_pin(p) for p in (*target.base, *target.constraints) if "==" in p}
        base = [p for p in pieces if _safe_normalized(p) in fixed]
        ours = [p for p in pieces if p not in base]
        if base and ours:
            return (f"{named(ours[0])} conflicts with the runtime's base set ({base[0]}: what serves the policy, "
                    "not replaceable)")
        return f"requirements conflict: {pieces[0]} and {pieces[1]}"
    if re.search(r"Failed to fetch|error sending request|dns error|Connection refused|tcp connect error", text):
        failure = re.search(r"(Failed to fetch: `[^`]+`|error sending request for url \([^)]+\))", text)
        detail = failure.group(1) if failure else text[:300]
        return f"cannot reach the index {settings.index_label()}: {_without_credentials(detail)}"
    cause = re.search(r"(?:cause|×|error): (Because .+?)(?: hint:|$)", text)
    detail = (cause.group(1) if cause else text)[:500]
    return f"cannot resolve the policy's requirements for {where}: {_without_credentials(detail)}"


# -- local mode: a venv under the state dir -----------------------------------------------------


class VenvBuilder:
    """Relocatable venvs at `<root>/<id>/`, made from `target`'s interpreter by `uv venv` + `uv pip install`."""

    def __init__(self, settings: RuntimeSettings, target: Target, python: str = sys.executable) -> None:
        self.settings = settings
        self.target = target
        self.python = python

    def location(self, runtime_id: str) -> str:
        return str(self.settings.root / runtime_id)

    def complete(self, runtime_id: str) -> bool:
        # Only a finished build is renamed into place, so the directory's presence says it is complete.
        return (self.settings.root / runtime_id / MANIFEST).is_file()

    def size(self, runtime_id: str) -> int | None:
        try:
            return int(json.loads((self.settings.root / runtime_id / MANIFEST).read_text())["size_bytes"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def build(self, runtime_id: str, pins: Sequence[str], deadline: float) -> int:
        root = self.settings.root
        started = time.monotonic()
        for leftover in root.glob(f".build-{runtime_id[:16]}-*"):  # a builder killed mid-way (we hold the lock)
            shutil.rmtree(leftover, ignore_errors=True)
        work = root / f".build-{runtime_id[:16]}-{uuid.uuid4().hex[:8]}"
        venv = work / "venv"
        try:
            work.mkdir(parents=True)
            (work / "pins.txt").write_text("".join(f"{p}\n" for p in pins))
            self._uv(["venv", "--quiet", "--relocatable", "--python", self.python, str(venv)], work, deadline,
                     "creating the runtime's venv")  # fmt: skip
            self._install(venv, work, deadline)
            check = subprocess.run([str(venv / "bin" / "python"), "-c", SERVING_IMPORTS], capture_output=True,
                                   text=True, timeout=max(1.0, deadline - time.monotonic()))  # fmt: skip
            if check.returncode != 0:
                raise RuntimeBuildError(f"the runtime cannot serve a policy ({SERVING_IMPORTS} fails): "
                                        f"{_last_line(check.stderr)}")  # fmt: skip
            size = directory_size(venv)
            _check_size(size, self.settings)
            manifest = {"id": runtime_id, "pins": list(pins), "target": self.target.identity,
                        "index": self.settings.index_identity(), "size_bytes": size,
                        "build_seconds": round(time.monotonic() - started, 2), "built_at": time.time()}  # fmt: skip
            (venv / MANIFEST).write_text(json.dumps(manifest, indent=1))
            os.rename(venv, root / runtime_id)  # atomic: the runtime appears complete or not at all
            return size
        except subprocess.TimeoutExpired:
            raise self._timeout("checking the runtime") from None
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _install(self, venv: Path, work: Path, deadline: float) -> None:
        """`uv pip install --no-deps` of the pins; killed when over the size limit or the deadline."""
        command = [
            *uv_command(), "pip", "install", "--quiet", "--no-deps", "--only-binary", ":all:",
            "--link-mode", "hardlink", "--python", str(venv / "bin" / "python"), *self.settings.index_args(),
            "-r", "pins.txt",
        ]  # fmt: skip
        with tempfile.TemporaryFile(dir=work) as output:
            process = subprocess.Popen(command, cwd=work, env=uv_environment(self.settings), stdin=subprocess.DEVNULL,
                                       stdout=output, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
            try:
                next_size_check = time.monotonic() + _SIZE_POLL_S
                while True:
                    try:
                        process.wait(timeout=min(_SIZE_POLL_S, max(0.05, deadline - time.monotonic())))
                        break
                    except subprocess.TimeoutExpired:
                        pass
                    if time.monotonic() >= deadline:
                        raise self._timeout("installing the policy's requirements")
                    if time.monotonic() >= next_size_check:
                        _check_size(directory_size(venv), self.settings)
                        next_size_check = time.monotonic() + _SIZE_POLL_S
            finally:
                if process.poll() is None:
                    _kill_group(process)
            output.seek(0)
            text = output.read().decode("utf-8", "replace")
        if process.returncode != 0 and reports_disk_full(text):
            raise DiskFull(str(self.settings.root), "installing the runtime's wheels", _last_line(text))
        if process.returncode != 0:
            raise RuntimeBuildError(f"installing the runtime's wheels failed: {_last_line(text)}")

    def _uv(self, args: list[str], cwd: Path, deadline: float, doing: str) -> None:
        result = _run_uv([*uv_command(), *args], cwd, self.settings, deadline, doing)
        if result.returncode != 0 and reports_disk_full(result.stderr):
            raise DiskFull(str(self.settings.root), doing, _last_line(result.stderr))
        if result.returncode != 0:
            raise RuntimeBuildError(f"{doing} failed: {_last_line(result.stderr)}")

    def _timeout(self, doing: str) -> RuntimeBuildError:
        return RuntimeBuildError(timeout_message(self.settings, doing))


def _check_size(size: int | None, settings: RuntimeSettings) -> None:
    if size is not None and size > settings.max_size_bytes:
        raise RuntimeBuildError(size_message(size, settings.max_size_bytes))


def size_message(size: int, limit: int) -> str:
    return f"runtime is {_mib(size)} MiB, over the {_mib(limit)} MiB limit ({SIZE_SETTING})"


def timeout_message(settings: RuntimeSettings, doing: str) -> str:
    return f"timed out after {settings.build_timeout_s:g} s {doing} ({TIMEOUT_SETTING})"


def _mib(size: int) -> str:
    mib = size / 2**20
    return f"{mib:.0f}" if mib >= 10 else f"{mib:.1f}".removesuffix(".0")


def directory_size(path: Path) -> int:
    """Bytes of the regular files under `path` (links not followed, each hard-linked file once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            try:
                info = os.lstat(os.path.join(folder, name))
            except OSError:  # removed while we looked (an install in progress)
                continue
            if (info.st_dev, info.st_ino) in seen or not stat.S_ISREG(info.st_mode):
                continue
            seen.add((info.st_dev, info.st_ino))
            total += info.st_size
    return total


# -- uv -----------------------------------------------------------------------------------------


def uv_command() -> list[str]:
    """The uv binary: this environment's (the `uv` package), else the one on PATH."""
    try:
        import uv

        return [uv.find_uv_bin()]
    except (ImportError, FileNotFoundError):
        pass
    if found := shutil.which("uv"):
        return [found]
    raise RuntimeSetupError("miner runtimes need uv and none is installed: `make install` (it is a dependency), "
                            "or pip install uv, or set KINITRO_EXECUTOR_MINER_RUNTIMES=false")  # fmt: skip


def uv_environment(settings: RuntimeSettings) -> dict[str, str]:
    """This process's environment (proxies, CA bundle) without any UV_* or KINITRO_* setting of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "KINITRO_", "VIRTUAL_ENV", "CONDA_"))}
    env.update({
        "UV_NO_CONFIG": "1",  # no uv.toml / pyproject settings from wherever we are
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_CACHE_DIR": str(settings.root / ".uv-cache"),  # beside the runtimes: hard links work, wheels shared
        "NO_COLOR": "1",
    })
    return env


def _run_uv(
    command: list[str], cwd: Path, settings: RuntimeSettings, deadline: float, doing: str
) -> subprocess.CompletedProcess[str]:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise RuntimeBuildError(timeout_message(settings, doing))
    try:
        return subprocess.run(command, cwd=cwd, env=uv_environment(settings), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=remaining)  # fmt: skip
    except subprocess.TimeoutExpired:
        raise RuntimeBuildError(timeout_message(settings, doing)) from None


def _kill_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


# -- index and locks ----------------------------------------------------------------------------


def mark_used(root: Path, runtime_id: str) -> None:
    """Record that a runtime was just built or reused: `<root>/used/<id>`'s mtime (runtime_store prunes by it)."""
    used = root / "used"
    used.mkdir(parents=True, exist_ok=True)
    (used / runtime_id).touch()


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _read_index(root: Path, key: str) -> dict | None:
    try:
        entry = json.loads((root / "index" / f"{key}.json").read_text())
    except (OSError, ValueError):
        return None
    return entry if isinstance(entry, dict) and isinstance(entry.get("id"), str) else None


def _write_index(root: Path, key: str, entry: dict) -> None:
    index = root / "index"
    index.mkdir(parents=True, exist_ok=True)
    temporary = index / f".{key}.{uuid.uuid4().hex[:8]}"
    temporary.write_text(json.dumps(entry, indent=1))
    os.replace(temporary, index / f"{key}.json")


@contextlib.contextmanager
def _build_lock(settings: RuntimeSettings, runtime_id: str, deadline: float):
    """One builder per runtime id across processes; the others wait (until the build deadline)."""
    locks = settings.root / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{runtime_id}.lock", "a+") as lock:
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise RuntimeBuildError(timeout_message(
                        settings, f"waiting for another build of runtime {runtime_id[:16]}")) from None
                time.sleep(_LOCK_POLL_S)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _without_credentials(text: str) -> str:
    def strip(match: re.Match[str]) -> str:
        parts = urlsplit(match.group(0))
        if parts.username is None and parts.password is None:
            return match.group(0)
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    return re.sub(r"[a-z][a-z0-9+.-]*://[^\s`'\")]+", strip, text)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return _without_credentials(lines[-1][:_UV_OUTPUT_CHARS]) if lines else "no output"


# -- docker mode: an image layer on the miner-runner image ------------------------------------------

# Run in the base image (no network, read-only, unprivileged) to learn what a runtime builds on.
_IMAGE_PROBE = """
import importlib.metadata as m, json, platform
print(json.dumps({"python": platform.python_version(), "implementation": platform.python_implementation().lower(),
                  "machine": platform.machine(), "libc": list(platform.libc_ver()),
                  "dists": {d.metadata["Name"]: d.version for d in m.distributions() if d.metadata["Name"]}}))
"""
_MAX_MANYLINUX_MINOR = 40  # the newest manylinux_2_NN uv knows as a --python-platform
_RUNTIME_DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
USER root
# requirements.txt: the index lines and the pins this runtime adds; pip-ca.crt: the machine's CA bundle
# (for a TLS-intercepting proxy), at a path of its own. Nothing else is in the build context.
COPY requirements.txt *.crt /etc/kinitro/runtime/
ARG INSTALL_TIMEOUT=1800
RUN set -eu; \\
    if [ -s /etc/kinitro/runtime/pip-ca.crt ]; then export PIP_CERT=/etc/kinitro/runtime/pip-ca.crt; fi; \\
    python -m ensurepip >/dev/null; \\
    timeout -k 10 "$INSTALL_TIMEOUT" python -m pip install --no-cache-dir --disable-pip-version-check \\
        --no-deps --only-binary :all: --progress-bar off -r /etc/kinitro/runtime/requirements.txt; \\
    python -m pip uninstall -y -q pip; \\
    python -c '{serving}'
USER {uid}:{uid}
"""


def ensure_image_runtime(
    policy_dir: Path, settings: RuntimeSettings, base_image: str, *, target: Target | None = None
) -> Runtime | None:
    """Docker mode: the runtime image of `policy_dir` on `base_image` (built or reused), or None for the base."""
    if not declared_requirements(policy_dir):
        return None  # before probing the image: most policies declare nothing
    target = target or image_target(base_image, settings)
    return ensure_runtime(policy_dir, settings, target, ImageBuilder(settings, target, base_image))


_image_targets: dict[str, Target] = {}


def image_target(base_image: str, settings: RuntimeSettings) -> Target:
    """What `base_image` has (interpreter, platform, packages), probed once per image id and kept in the index."""
    from kinitro_dagster.miners.docker_engine import docker_client, require_image

    require_image(base_image)  # DockerSetupError when missing
    image = docker_client().images.get(base_image)
    if image.id in _image_targets:
        return _image_targets[image.id]
    cached = settings.root / "index" / f"image-{image.id.removeprefix('sha256:')}.json"
    try:
        probe = json.loads(cached.read_text())
    except (OSError, ValueError):
        output = docker_client().containers.run(
            image.id, ["python", "-c", _IMAGE_PROBE], remove=True, network_mode="none", read_only=True,
            user=f"{POLICY_UID}:{POLICY_UID}", environment={"PYTHONDONTWRITEBYTECODE": "1"},
        )  # fmt: skip
        probe = json.loads(output.decode().strip().splitlines()[-1])
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps(probe, indent=1))
    libc, libc_version = (probe["libc"] + ["", ""])[:2]
    machine = probe["machine"]
    if libc == "glibc" and re.fullmatch(r"2\.\d+", libc_version):
        python_platform = f"{machine}-manylinux_2_{min(int(libc_version.split('.')[1]), _MAX_MANYLINUX_MINOR)}"
    else:
        python_platform = f"{machine}-unknown-linux-musl"
    pins = tuple(sorted(f"{canonicalize_name(name)}=={version}" for name, version in probe["dists"].items()))
    target = Target(
        identity=f"image:{image.id}",
        python_version=probe["python"],
        platform_label=f"linux {machine}",
        # The interpreter here only runs uv's resolver; the markers and tags are the image's.
        resolve_args=("--python", sys.executable, "--python-version", probe["python"],
                      "--python-platform", python_platform),
        constraints=pins,
        installed={canonicalize_name(name): version for name, version in probe["dists"].items()},
    )
    _image_targets[image.id] = target
    return target


class ImageBuilder:
    """Images `kinitro/runtime:<id[:16]>` = `base_image` + the pins it lacks, installed by pip in `docker build`."""

    def __init__(self, settings: RuntimeSettings, target: Target, base_image: str) -> None:
        self.settings = settings
        self.target = target
        self.base_image = base_image

    def location(self, runtime_id: str) -> str:
        return f"{RUNTIME_IMAGE_REPO}:{runtime_id[:16]}"

    def complete(self, runtime_id: str) -> bool:
        image = self._image(runtime_id)
        return image is not None and image.labels.get("kinitro.runtime") == runtime_id

    def size(self, runtime_id: str) -> int | None:
        from kinitro_dagster.miners.docker_engine import docker_client

        image = self._image(runtime_id)
        if image is None:
            return None
        return max(0, int(image.attrs.get("Size", 0)) - int(docker_client().images.get(self.base_image).attrs["Size"]))

    def build(self, runtime_id: str, pins: Sequence[str], deadline: float) -> int:
        import docker
        from docker.errors import APIError, BuildError

        from kinitro_dagster.miners.docker_engine import docker_client
        from kinitro_dagster.miners.runner_image import machine_ca_bundle

        tag = self.location(runtime_id)
        have = set(self.target.constraints)
        missing = [pin for pin in pins if pin not in have]
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RuntimeBuildError(timeout_message(self.settings, "building the runtime image"))
        memory = parse_memory(self.settings.build_memory)
        cores = max(1, min(os.cpu_count() or 1, math.ceil(self.settings.build_cpus)))
        limits = {"memory": memory, "memswap": memory, "cpusetcpus": f"0-{cores - 1}" if cores > 1 else "0"}
        lines = [f"--index-url {self.settings.index_url}"]
        if self.settings.extra_index_url:
            lines.append(f"--extra-index-url {self.settings.extra_index_url}")
        log: list[str] = []
        # Its own client: a silent download of a big wheel must not hit the shared client's 60 s read timeout.
        client = docker.from_env(timeout=int(remaining) + 60)
        try:
            with tempfile.TemporaryDirectory(prefix="kinitro-runtime-") as context:
                (Path(context) / "Dockerfile").write_text(
                    _RUNTIME_DOCKERFILE.replace("{serving}", SERVING_IMPORTS).replace("{uid}", str(POLICY_UID)))
                (Path(context) / "requirements.txt").write_text("".join(f"{line}\n" for line in [*lines, *missing]))
                if (bundle := machine_ca_bundle()) is not None:
                    shutil.copyfile(bundle, Path(context) / "pip-ca.crt")
                stream = client.api.build(
                    path=context, tag=tag, network_mode="host", rm=True, forcerm=True, pull=False, decode=True,
                    buildargs={"BASE_IMAGE": docker_client().images.get(self.base_image).id,
                               "INSTALL_TIMEOUT": str(max(1, int(remaining - 5)))},
                    labels={"kinitro.runtime": runtime_id, "kinitro.runtime.base": self.base_image},
                    container_limits=limits,
                )  # fmt: skip
                for chunk in stream:
                    if "error" in chunk:
                        raise self._build_failure(chunk["error"], log)
                    if text := chunk.get("stream", "").strip():
                        log.extend(text.splitlines())
                    if time.monotonic() > deadline + 30:
                        raise RuntimeBuildError(timeout_message(self.settings, "building the runtime image"))
        except (APIError, BuildError) as error:
            raise self._build_failure(str(error), log) from error
        except docker.errors.DockerException as error:  # a read timeout: the build went silent past the deadline
            raise RuntimeBuildError(timeout_message(self.settings, "building the runtime image")) from error
        finally:
            client.close()
        size = self.size(runtime_id) or 0
        if size > self.settings.max_size_bytes:
            with contextlib.suppress(Exception):
                docker_client().images.remove(tag, force=True)
            raise RuntimeBuildError(size_message(size, self.settings.max_size_bytes))
        return size

    def _image(self, runtime_id: str):
        from docker.errors import ImageNotFound

        from kinitro_dagster.miners.docker_engine import docker_client

        try:
            return docker_client().images.get(self.location(runtime_id))
        except ImageNotFound:
            return None

    def _build_failure(self, error: str, log: Sequence[str]) -> RuntimeBuildError | DiskFull:
        if "non-zero code: 124" in error or "exit code: 124" in error:
            return RuntimeBuildError(timeout_message(self.settings, "installing the runtime's wheels"))
        pip_errors = [line for line in log if line.startswith("ERROR:")]
        detail = _without_credentials(pip_errors[-1] if pip_errors else error.strip().splitlines()[-1])[:500]
        if reports_disk_full(error) or any(reports_disk_full(line) for line in pip_errors):
            return DiskFull("docker's storage (`docker system df` shows it)", "building the runtime image", detail)
        return RuntimeBuildError(f"building the runtime image failed: {detail}")
