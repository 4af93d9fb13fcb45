"""Episode seeds (DESIGN §4): every miner of a cycle faces the same episodes.

Seed of episode `i` of env `e` in the cycle opened at a block with hash `h`:
HMAC-SHA256(operator_secret, f"{h}|{e}|{i}") truncated to 31 bits. The secret keeps miners from
predicting seeds from the public block hash; seeds are never sent to the policy.
"""

from __future__ import annotations

import hashlib
import hmac

_SEED_MASK = (1 << 31) - 1


def episode_seed(operator_secret: str, block_hash: str, env_id: str, episode: int) -> int:
    if not operator_secret:
        raise ValueError("operator secret is empty: set KINITRO_SEED_SECRET")
    message = f"{block_hash}|{env_id}|{episode}".encode()
    digest = hmac.new(operator_secret.encode(), message, hashlib.sha256).digest()
    return int.from_bytes(digest[:4], "big") & _SEED_MASK


def episode_seeds(operator_secret: str, block_hash: str, env_id: str, n_episodes: int) -> list[int]:
    return [episode_seed(operator_secret, block_hash, env_id, i) for i in range(n_episodes)]
