"""A cycle still without weights past its recorded timeout is due for scoring with what it has."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kinitro_dagster.defs.sensors import _past_deadline
from kinitro_dagster.warehouse.records import CycleConfiguration, CycleRecord, CycleStatus


def _config(timeout_s: int) -> CycleConfiguration:
    return CycleConfiguration(env_ids=("metaworld/reach-v3",), episodes_per_env=2, eval_interval_blocks=100,
                              max_timesteps=10, action_timeout=0.5, eval_timeout=30.0, use_images=False,
                              privileged_state=False, pareto_temperature=1.0, cycle_timeout_seconds=timeout_s,
                              code_version="test")  # fmt: skip


def test_only_running_cycles_past_their_own_timeout_are_due(warehouse) -> None:
    now = datetime.now(UTC)
    cycles = {
        "0000000100": (now - timedelta(hours=3), CycleStatus.RUNNING, _config(3600)),  # overdue
        "0000000200": (now - timedelta(hours=3), CycleStatus.RUNNING, _config(4 * 3600)),  # its own, longer
        "0000000300": (now - timedelta(hours=3), CycleStatus.COMPLETED, _config(60)),  # already has weights
        "0000000400": (now - timedelta(minutes=1), CycleStatus.RUNNING, None),  # the setting's timeout
        "0000000500": (now - timedelta(hours=3), CycleStatus.RUNNING, None),
    }
    for key, (opened_at, status, config) in cycles.items():
        warehouse.upsert_cycle(CycleRecord(cycle_key=key, block=int(key), block_hash="0x" + key, opened_at=opened_at,
                                           status=status, config=config))  # fmt: skip
    assert sorted(_past_deadline(warehouse, default_timeout_s=7200)) == ["0000000100", "0000000500"]
