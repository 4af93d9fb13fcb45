"""Which failures are a full disk (the host's fault), by the tools' own wording; a real full disk
under the runtime store is in test_runtimes.py, a full hub cache in tests/defs/test_retries.py."""

from __future__ import annotations

import errno

import pytest

from kinitro_dagster.miners.disk import DiskFull, is_disk_full, reports_disk_full


@pytest.mark.parametrize("output", [
    # uv, as test_runtimes.py's full tmpfs made it say
    "error: Failed to install: cowsay\n  Caused by: failed to write to file `/x/.uv-cache/.tmpY7`: "
    "No space left on device (os error 28)",
    # pip inside `docker build` of a runtime image
    "ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device",
    # dockerd, committing a layer
    "failed to register layer: write /var/lib/docker/overlay2/abc/diff/x.so: no space left on device",
    "Disk quota exceeded (os error 122)",
])  # fmt: skip
def test_a_tools_report_of_a_full_disk_is_recognised(output):
    assert reports_disk_full(output)


@pytest.mark.parametrize("output", [
    "Because nonexistent-pkg-xyz was not found in the package registry",
    "ERROR: Could not install packages due to an OSError: [Errno 13] Permission denied",
    "dns error: failed to lookup address information",
])  # fmt: skip
def test_other_failures_are_not_a_full_disk(output):
    assert not reports_disk_full(output)


def test_only_this_processs_enospc_is_a_full_disk():
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    # A server's error text (e.g. a hub's 507) is not this host's disk.
    assert not is_disk_full(OSError("507 Insufficient Storage: no space left on device"))


def test_the_message_names_the_place_and_the_fix():
    message = str(DiskFull("/var/lib/kinitro/runtimes", "installing the runtime's wheels", "os error 28"))
    assert message.startswith("disk full under /var/lib/kinitro/runtimes while installing the runtime's wheels: ")
    assert "not the miner's" in message and "kinitro runtimes prune" in message
    # The hub cache holds snapshots, not runtimes: no prune hint there.
    hub = str(DiskFull("/var/lib/kinitro/hub", "fetching demo/expert@0123456789ab", fix=None))
    assert hub.endswith("not the miner's: free space there") and "prune" not in hub
