"""Episode seeds (DESIGN §4): HMAC-SHA256(secret, "block_hash|env_id|i") truncated to 31 bits."""

import hashlib
import hmac

import pytest

from kinitro_dagster.sim.seeds import episode_seed, episode_seeds

HASH = "0x" + "ab" * 32


def test_seed_is_the_documented_hmac_truncated_to_31_bits():
    digest = hmac.new(b"s3cret", f"{HASH}|metaworld/reach-v3|4".encode(), hashlib.sha256).digest()
    assert episode_seed("s3cret", HASH, "metaworld/reach-v3", 4) == int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def test_seeds_are_shared_by_miners_but_differ_by_episode_env_block_and_secret():
    seeds = episode_seeds("s3cret", HASH, "metaworld/reach-v3", 50)
    assert seeds == episode_seeds("s3cret", HASH, "metaworld/reach-v3", 50)  # every miner gets these
    assert len(set(seeds)) == 50 and all(0 <= s < 2**31 for s in seeds)
    assert seeds != episode_seeds("s3cret", HASH, "metaworld/push-v3", 50)
    assert seeds != episode_seeds("s3cret", "0x" + "cd" * 32, "metaworld/reach-v3", 50)
    assert seeds != episode_seeds("other", HASH, "metaworld/reach-v3", 50)


def test_empty_secret_is_refused():
    with pytest.raises(ValueError, match="KINITRO_SEED_SECRET"):
        episode_seed("", HASH, "metaworld/reach-v3", 0)
