"""cycle_sensor opens a cycle when the chain head is an eval interval past the last one."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import yaml

from kinitro_dagster.defs.partitions import cycles
from kinitro_dagster.defs.sensors import cycle_sensor


def _tick(instance, resources):
    return cycle_sensor(dg.build_sensor_context(instance=instance, resources=resources))


def _set_head(resources, block: int) -> None:
    path = Path(resources["chain"].chain_file)
    doc = yaml.safe_load(path.read_text())
    doc["head_block"] = block
    path.write_text(yaml.safe_dump(doc))


def test_opens_first_cycle_then_waits_for_the_interval(demo_state, tmp_path):
    with dg.instance_for_test() as instance:
        _set_head(demo_state, 1200)
        first = _tick(instance, demo_state)
        assert isinstance(first, dg.SensorResult)
        assert [r.partition_key for r in first.run_requests] == ["0000001200"]
        assert first.dynamic_partitions_requests[0].partition_keys == ["0000001200"]
        instance.add_dynamic_partitions(cycles.name, ["0000001200"])

        _set_head(demo_state, 1299)  # interval is 100 blocks
        waiting = _tick(instance, demo_state)
        assert isinstance(waiting, dg.SkipReason) and "1300" in waiting.skip_message

        _set_head(demo_state, 1300)
        second = _tick(instance, demo_state)
        assert [r.partition_key for r in second.run_requests] == ["0000001300"]
        # Every tick records the head it saw, so the API's /v1/status reports the live chain.
        assert demo_state["warehouse"].store().chain_head()[0] == 1300
