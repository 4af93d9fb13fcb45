"""A real cycle, verified as a validator does (`kinitro verify` over HTTP against the weights API), and
its episodes replayed from the CLI and from the Dagster job."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import sqlalchemy as sa
from click.testing import CliRunner
from PIL import Image

from kinitro_dagster.audit.signing import demo_hotkey
from kinitro_dagster.cli import main
from kinitro_dagster.definitions import build_definitions
from kinitro_dagster.defs.audit import VERIFIES_CHECK, audit_dir
from kinitro_dagster.defs.partitions import ENABLED_ENV_IDS
from kinitro_dagster.demo import open_cycle, run_cycle
from kinitro_dagster.settings import state_dir
from kinitro_dagster.warehouse import Warehouse


def _verify(url: str, signer: str, *args: str):
    return CliRunner().invoke(main, ["verify", "--api-url", url, "--signer", signer, *args])


def _looks_like_a_scene(path: Path) -> None:
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape == (240, 240, 3) and pixels.std() > 10  # a rendered scene, not a blank frame


def test_a_cycle_verifies_replays_and_a_row_changed_afterwards_is_named(demo_state, tmp_path, serving_api):
    database_url = demo_state["warehouse"].database_url
    defs = build_definitions(demo_state)
    with dg.instance_for_test() as instance:
        cycle = open_cycle(instance, demo_state)
        run_cycle(defs, instance, cycle)
        scored = instance.get_latest_materialization_event(dg.AssetKey("pareto_scores")).asset_materialization
        for plot in ("pareto front plot", "history plot"):  # what an analyst sees beside the leaderboard
            assert scored.metadata[plot].md_str.startswith(f"![{plot.split()[0]}](data:image/png;base64,")
        assert "no episode ended by an error" in scored.metadata["error kinds"].md_str

        # The noisy expert's first push episode, replayed by the Dagster job an analyst launches in the UI.
        store = Warehouse(database_url)
        recorded = {(r.uid, r.episode): r for r in store.episodes(cycle, ENABLED_ENV_IDS[1])}
        store.dispose()
        run = defs.resolve_job_def("replay_episode").execute_in_process(instance=instance, run_config={"ops": {
            "replay_recorded_episode": {"config": {"cycle": str(int(cycle)), "env_id": ENABLED_ENV_IDS[1],
                                                   "uid": 1, "episode": 0}}}})
        assert run.success
        output = next(e for e in run.all_events if e.event_type_value == "STEP_OUTPUT")
        metadata = output.event_specific_data.metadata
        assert metadata["replayed"].data["steps"] == recorded[(1, 0)].steps
        assert metadata["replayed"].data["total_reward"] == recorded[(1, 0)].total_reward
        assert metadata["thumbnail"].md_str.startswith("![thumbnail](data:image/png;base64,")
        _looks_like_a_scene(Path(metadata["animation"].path).with_name("thumbnail.png"))

        checks = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey("audit_export"), VERIFIES_CHECK)])
        evaluation = next(iter(checks.values())).event.dagster_event.event_specific_data
        assert evaluation.passed, evaluation.metadata

    # The asset's files are what an analyst loads in one line.
    episodes = pd.read_parquet(audit_dir(cycle) / "episodes.parquet")
    assert set(episodes["env_id"]) == set(ENABLED_ENV_IDS) and len(episodes) == 3 * 2 * len(ENABLED_ENV_IDS)
    signer = demo_hotkey(state_dir() / "wallets").ss58_address

    # The expert's second reach episode, replayed from the CLI: same outcome, frames to look at.
    out = tmp_path / "replay"
    replayed = CliRunner().invoke(main, ["replay", cycle, ENABLED_ENV_IDS[0], "0", "1", "--out", str(out),
                                         "--database-url", database_url])
    assert replayed.exit_code == 0, replayed.output
    assert "reproduced: the replay's outcome equals the recorded one" in replayed.output
    steps = int(episodes.query("env_id == @ENABLED_ENV_IDS[0] and uid == 0 and episode == 1")["steps"].iloc[0])
    assert len(list((out / "frames").glob("step_*.png"))) == steps + 1  # the reset's frame, then one a step
    with Image.open(out / "episode.gif") as gif:
        assert gif.n_frames == steps + 1
    _looks_like_a_scene(out / "thumbnail.png")

    with serving_api(database_url) as url:
        verified = _verify(url, signer)
        assert verified.exit_code == 0, verified.output
        assert "verified:" in verified.output and f"cycle {cycle}" in verified.output
        by_block = _verify(url, signer, "--block", str(int(cycle)), "--export", str(audit_dir(cycle)))
        assert by_block.exit_code == 0, by_block.output

        # The expert's first reach episode, rewritten in the warehouse after publication.
        env = ENABLED_ENV_IDS[0]
        store = Warehouse(database_url)
        with store.engine.begin() as conn:
            changed = conn.execute(sa.text(
                "UPDATE episodes SET success = NOT success WHERE cycle_key = :c AND env_id = :e AND uid = 0 "
                "AND episode = 0"), {"c": cycle, "e": env}).rowcount
        store.dispose()
        assert changed == 1
        tampered = _verify(url, signer)
        assert tampered.exit_code == 1
        assert f"FAIL episodes/{env}" in tampered.output and "verification failed" in tampered.output
        assert f"ok   episodes/{ENABLED_ENV_IDS[1]}" in tampered.output  # the other env is untouched

        stranger = _verify(url, demo_hotkey(Path(state_dir()) / "elsewhere").ss58_address)
        assert stranger.exit_code == 1 and "FAIL signer" in stranger.output and "FAIL signature" in stranger.output
