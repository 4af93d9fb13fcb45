"""The Dagster UI over a real cycle, in a headless browser: what an operator sees and clicks.

One cycle of the demo miners runs into a persistent Dagster instance (SQLite under a DAGSTER_HOME
holding the project's dagster.yaml, as `kinitro dev` serves it); `dagster-webserver` serves the code
location on that instance and the warehouse, and Debian's chromium, driven by Playwright, checks:

- the global asset lineage, groups expanded: all five assets;
- the partitions of episode_results: the cycle, both env partitions materialized, one partition's
  metadata (success by miner);
- the latest materializations of pareto_scores (miners scored, the Pareto front, per-env scores) and
  weights (miners with weight, and the digest and signer the warehouse recorded);
- launching from the UI, by clicks in Dagster's launch dialog: score_cycle for the cycle (one
  partition: Dagster launches it as one run) and a backfill of the cycle's episode_results (both env
  partitions). No daemon runs here, so the run stays queued and the backfill requested; the instance
  and the Runs pages must show both.

Each page is saved as a screenshot under KINITRO_TEST_SCREENSHOTS (default .kinitro/ui-screenshots).
Needs chromium (`.ci/run` installs Debian's); no browser download.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from PIL import Image
from playwright.sync_api import Locator, Page, expect, sync_playwright

from kinitro_dagster.definitions import build_definitions
from kinitro_dagster.defs.partitions import ENABLED_ENV_IDS
from kinitro_dagster.demo import DAGSTER_YAML, open_cycle, run_cycle
from kinitro_dagster.sim.registry import env_id_to_partition_key
from kinitro_dagster.warehouse import Warehouse

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("KINITRO_TEST_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(os.environ.get("KINITRO_TEST_SCREENSHOTS", REPO_ROOT / ".kinitro" / "ui-screenshots"))
LOCATION = "kinitro_dagster.definitions"  # the code location `-m kinitro_dagster.definitions` serves
TIMEOUT_MS = 60_000  # for each page element: the UI is slow on a 2-core machine
STARTUP_TIMEOUT_S = 120
VIEWPORT = {"width": 1600, "height": 1000}
PAGES = ["1-lineage", "2-episode-partitions", "3-pareto-scores", "4-weights", "5-score-cycle-launched", "6-runs",
         "7-backfill"]  # the screenshots, in the order the test takes them
# The settings of the demo_state fixture, for the webserver's code location (it builds its resources
# from the environment).
CYCLE_ENVIRONMENT = {
    "KINITRO_SCHEDULER_EPISODES_PER_ENV": "2",
    "KINITRO_SCHEDULER_EVAL_INTERVAL_BLOCKS": "100",
    "KINITRO_EXECUTOR_MAX_TIMESTEPS": "150",
    "KINITRO_EXECUTOR_USE_IMAGES": "false",
    "KINITRO_EXECUTOR_PRIVILEGED_STATE": "true",
    "HF_HUB_OFFLINE": "1",
    "MUJOCO_GL": "egl",
}


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The SQLite warehouse only: one cycle is what this test needs (tests/warehouse covers PostgreSQL)."""
    return f"sqlite:///{tmp_path / 'warehouse' / 'warehouse.db'}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _log_tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""


def _wait_until_serving(process: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"dagster-webserver exited with {process.returncode}:\n{_log_tail(log)}", pytrace=False)
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    pytest.fail(f"dagster-webserver did not answer {url}/server_info in {STARTUP_TIMEOUT_S}s:\n{_log_tail(log)}",
                pytrace=False)


def _start_webserver(home: Path, database_url: str, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, **CYCLE_ENVIRONMENT, "DAGSTER_HOME": str(home), "KINITRO_DATABASE_URL": database_url}
    webserver = Path(sys.executable).parent / "dagster-webserver"
    with log.open("wb") as out:
        # Its own process group: the code server it starts goes with it.
        return subprocess.Popen([str(webserver), "-h", "127.0.0.1", "-p", str(port), "-m", LOCATION],
                                cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the webserver's process group, then SIGKILL to whatever of it is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=20)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


@pytest.fixture
def ui_with_a_cycle(demo_state: dict, tmp_path: Path) -> Iterator[tuple[str, dg.DagsterInstance, str]]:
    """(webserver URL, the instance, cycle key): one cycle run into a persistent instance that
    dagster-webserver serves; the webserver and its process group are stopped afterwards."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no chromium at {CHROMIUM}: `.ci/run` installs Debian's (apt-get install chromium), or set "
                    "KINITRO_TEST_CHROMIUM", pytrace=False)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DAGSTER_YAML, home / "dagster.yaml")  # QueuedRunCoordinator: UI launches wait for a daemon
    log = tmp_path / "webserver.log"
    with dg.DagsterInstance.from_config(str(home)) as instance:  # creates the storage before the webserver reads it
        port = _free_port()
        process = _start_webserver(home, demo_state["warehouse"].database_url, port, log)
        try:
            cycle = open_cycle(instance, demo_state)  # the webserver starts while the cycle runs
            run_cycle(build_definitions(demo_state), instance, cycle)
            url = f"http://127.0.0.1:{port}"
            _wait_until_serving(process, url, log)
            yield url, instance, cycle
        finally:
            _stop(process)
            print(f"dagster-webserver log: {log}")


def _shown(scope: Page | Locator, text: str) -> None:
    """`text`, exactly, visible in `scope` (Dagster renders some labels twice: once hidden, to measure them)."""
    expect(scope.get_by_text(text, exact=True).filter(visible=True).first).to_be_visible(timeout=TIMEOUT_MS)


def _screenshot(page: Page, name: str, shots: list[Path]) -> None:
    assert name in PAGES, name
    path = SCREENSHOTS / f"{name}.png"
    page.wait_for_load_state("networkidle", timeout=TIMEOUT_MS)
    page.screenshot(path=str(path), full_page=True)
    shots.append(path)


def _lineage(page: Page, url: str) -> None:
    page.goto(f"{url}/asset-groups", timeout=TIMEOUT_MS)
    expect(page.get_by_text("Global asset lineage")).to_be_visible(timeout=TIMEOUT_MS)
    _shown(page, "scoring")
    page.get_by_role("button", name="settings", exact=True).click(timeout=TIMEOUT_MS)  # the graph's menu
    page.get_by_role("menuitem", name="Expand all groups").click(timeout=TIMEOUT_MS)
    expect(page.get_by_role("menuitem", name="Collapse all groups")).to_be_visible(timeout=TIMEOUT_MS)
    page.keyboard.press("Escape")  # closes the menu
    expect(page).to_have_url(re.compile(r"expanded=.*scoring"), timeout=TIMEOUT_MS)
    for asset in ("miner_commitments", "episode_results", "pareto_scores", "weights", "audit_export"):
        _shown(page, asset)


def _episode_partitions(page: Page, url: str, cycle: str) -> None:
    page.goto(f"{url}/assets/episode_results?view=partitions", timeout=TIMEOUT_MS)
    expect(page.get_by_text(f"Materialized ({len(ENABLED_ENV_IDS)})")).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.get_by_text("Missing (0)")).to_be_visible(timeout=TIMEOUT_MS)
    page.get_by_text(cycle, exact=True).filter(visible=True).first.click(timeout=TIMEOUT_MS)
    env_keys = [env_id_to_partition_key(env_id) for env_id in ENABLED_ENV_IDS]
    for env_key in env_keys:
        _shown(page, env_key)
    page.get_by_text(env_keys[0], exact=True).filter(visible=True).first.click(timeout=TIMEOUT_MS)
    _shown(page, f"{cycle}|{env_keys[0]}")
    _shown(page, "success by miner")
    _shown(page, ENABLED_ENV_IDS[0])  # its env_id entry


def _metadata_row(page: Page, key: str) -> Locator:
    return page.locator("tr", has=page.get_by_text(key, exact=True)).first


def _pareto_scores(page: Page, url: str, cycle: str, n_scored: int) -> None:
    page.goto(f"{url}/assets/pareto_scores", timeout=TIMEOUT_MS)
    expect(page.get_by_text("Latest materialization")).to_be_visible(timeout=TIMEOUT_MS)
    _shown(page, cycle)
    expect(_metadata_row(page, "miners scored")).to_contain_text(str(n_scored), timeout=TIMEOUT_MS)
    expect(_metadata_row(page, "pareto front")).to_be_visible(timeout=TIMEOUT_MS)
    scores = _metadata_row(page, "scores")
    for env_id in ENABLED_ENV_IDS:  # the per-env columns of the scores table
        expect(scores).to_contain_text(env_id.split("/")[-1], timeout=TIMEOUT_MS)


def _weights(page: Page, url: str, cycle: str, n_weighted: int, digest: str, signer: str) -> None:
    page.goto(f"{url}/assets/weights", timeout=TIMEOUT_MS)
    expect(page.get_by_text("Latest materialization")).to_be_visible(timeout=TIMEOUT_MS)
    _shown(page, cycle)
    expect(_metadata_row(page, "miners with weight")).to_contain_text(str(n_weighted), timeout=TIMEOUT_MS)
    expect(_metadata_row(page, "digest")).to_contain_text(digest, timeout=TIMEOUT_MS)
    expect(_metadata_row(page, "signer")).to_contain_text(signer, timeout=TIMEOUT_MS)


def _choose_cycle(page: Page, cycle: str) -> None:
    """In the open launch dialog: the cycle, from the partition picker of its first dimension."""
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Select a partition or create one").first.click(timeout=TIMEOUT_MS)
    page.get_by_role("menuitem", name=cycle).click(timeout=TIMEOUT_MS)
    dialog.get_by_text("Launch runs to materialize").click(timeout=TIMEOUT_MS)  # closes the picker


def _launch_score_cycle(page: Page, url: str, cycle: str) -> None:
    page.goto(f"{url}/locations/{LOCATION}/jobs/score_cycle/partitions", timeout=TIMEOUT_MS)
    page.get_by_role("button", name="Materialize…").click(timeout=TIMEOUT_MS)
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text("Launch runs to materialize 3 assets")).to_be_visible(timeout=TIMEOUT_MS)
    _choose_cycle(page, cycle)
    _shown(dialog, "1 partition")
    dialog.get_by_role("button", name="Launch 1 run").click(timeout=TIMEOUT_MS)
    expect(page.get_by_text("Launched run")).to_be_visible(timeout=TIMEOUT_MS)


def _launch_episode_backfill(page: Page, url: str, cycle: str) -> None:
    page.goto(f"{url}/assets/episode_results?view=partitions", timeout=TIMEOUT_MS)
    page.get_by_role("button", name="Materialize…").click(timeout=TIMEOUT_MS)
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text("Launch runs to materialize episode_results")).to_be_visible(timeout=TIMEOUT_MS)
    _choose_cycle(page, cycle)
    dialog.get_by_role("button", name="All", exact=True).nth(1).click(timeout=TIMEOUT_MS)  # every env
    _shown(dialog, f"{len(ENABLED_ENV_IDS)} partitions")
    dialog.get_by_role("button", name="Launch backfill").click(timeout=TIMEOUT_MS)
    # The launch dialog closes; a closed partition-picker popover (also a role=dialog) may stay in the page.
    expect(page.locator("[role=dialog].dagster-dialog")).to_have_count(0, timeout=TIMEOUT_MS)


def _launched(instance: dg.DagsterInstance) -> tuple[dg.DagsterRun, PartitionBackfill]:
    """The score_cycle run and the episode backfill the clicks made (they wait: no daemon here)."""
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while True:
        runs = [r for r in instance.get_runs(filters=dg.RunsFilter(job_name="score_cycle"))
                if r.tags.get("dagster/from_ui") == "true"]
        backfills = instance.get_backfills()
        if (runs and backfills) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert len(runs) == 1, [r.tags for r in runs]
    assert len(backfills) == 1, backfills
    return runs[0], backfills[0]


def _feed_row(page: Page, run_or_backfill_id: str) -> Locator:
    """The row of the Runs page's feed (a virtualized table of divs) that names this run or backfill."""
    return page.locator("[class*='VirtualizedTable_row']", has=page.get_by_text(run_or_backfill_id, exact=True))


def _runs_pages(page: Page, url: str, cycle: str, run_id: str, backfill_id: str, shots: list[Path]) -> None:
    page.goto(f"{url}/runs", timeout=TIMEOUT_MS)
    expect(page.get_by_text("Queued (1)")).to_be_visible(timeout=TIMEOUT_MS)  # the tab: the one run launched
    run_row = _feed_row(page, run_id[:8])
    expect(run_row).to_contain_text("score_cycle", timeout=TIMEOUT_MS)
    expect(run_row).to_contain_text(f"partition: {cycle}", timeout=TIMEOUT_MS)
    expect(run_row).to_contain_text("Queued", timeout=TIMEOUT_MS)
    backfill_row = _feed_row(page, backfill_id)
    expect(backfill_row).to_contain_text("Backfill", timeout=TIMEOUT_MS)
    expect(backfill_row).to_contain_text(f"{len(ENABLED_ENV_IDS)} partitions", timeout=TIMEOUT_MS)
    expect(backfill_row).to_contain_text("episode_results", timeout=TIMEOUT_MS)
    _screenshot(page, "6-runs", shots)
    page.goto(f"{url}/runs/b/{backfill_id}", timeout=TIMEOUT_MS)
    expect(page.get_by_text("Partition selection")).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.get_by_role("link", name="episode_results").first).to_be_visible(timeout=TIMEOUT_MS)
    for env_id in ENABLED_ENV_IDS:
        key = f"{cycle}|{env_id_to_partition_key(env_id)}"
        _shown(page, key)
    _screenshot(page, "7-backfill", shots)


def test_the_ui_shows_a_cycle_and_launches_its_rescoring_and_backfill(ui_with_a_cycle, demo_state):
    url, instance, cycle = ui_with_a_cycle
    store = Warehouse(demo_state["warehouse"].database_url)
    try:
        published = store.weights_for_cycle(cycle)
        n_scored = len(store.pareto_scores(cycle))
    finally:
        store.dispose()
    assert published is not None and published.attestation is not None
    n_weighted = sum(w > 0 for w in published.weights.values())

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name in [*PAGES, "failed"]:  # a previous run's
        (SCREENSHOTS / f"{name}.png").unlink(missing_ok=True)
    shots: list[Path] = []
    print(f"screenshots: {SCREENSHOTS}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport=VIEWPORT)
        page.set_default_timeout(TIMEOUT_MS)
        # No first-visit "Join the Dagster community" dialog: the project's dagster.yaml turns it off
        # (nux), so it cannot cover the menus the test clicks (a race a click-away handler lost).
        try:
            _lineage(page, url)
            _screenshot(page, "1-lineage", shots)
            _episode_partitions(page, url, cycle)
            _screenshot(page, "2-episode-partitions", shots)
            _pareto_scores(page, url, cycle, n_scored)
            _screenshot(page, "3-pareto-scores", shots)
            _weights(page, url, cycle, n_weighted, published.attestation.digest, published.attestation.signer)
            _screenshot(page, "4-weights", shots)
            _launch_score_cycle(page, url, cycle)
            _screenshot(page, "5-score-cycle-launched", shots)
            _launch_episode_backfill(page, url, cycle)
            run, backfill = _launched(instance)
            _runs_pages(page, url, cycle, run.run_id, backfill.backfill_id, shots)
        except Exception:
            failed = SCREENSHOTS / "failed.png"
            with contextlib.suppress(Exception):
                page.screenshot(path=str(failed), full_page=True)
                print(f"the page when the test failed: {failed} ({page.url})")
            raise
        finally:
            browser.close()

    # What the clicks launched, as the instance recorded it: waiting in the queue for the daemon.
    assert run.status is dg.DagsterRunStatus.QUEUED
    assert run.tags["dagster/partition"] == cycle
    assert run.asset_selection == {dg.AssetKey(k) for k in ("pareto_scores", "weights", "audit_export")}
    assert backfill.status is BulkActionStatus.REQUESTED
    assert backfill.asset_selection == [dg.AssetKey("episode_results")]
    targeted = backfill.asset_backfill_data.target_subset.get_partitions_subset(dg.AssetKey("episode_results"))
    assert set(targeted.get_partition_keys()) == {f"{cycle}|{env_id_to_partition_key(e)}" for e in ENABLED_ENV_IDS}

    assert [path.stem for path in shots] == PAGES
    for path in shots:
        assert path.stat().st_size > 30_000, f"{path}: {path.stat().st_size} bytes"
        with Image.open(path) as image:
            assert image.width == VIEWPORT["width"] and image.height >= VIEWPORT["height"], (path, image.size)
