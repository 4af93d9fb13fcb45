"""The real chain behind `ChainReader`: bittensor 11's SDK, read one short connection at a time.

Reads go through `bt.Subtensor(network, substrate=...)`, the SDK's async client; the `substrate` is
the SDK's own chain-access seam (`bt.Substrate`): a `bt.RpcSubstrate` websocket in production, a
local stand-in in tests. Which SDK calls answer what:

- head: the finalized head (`Client.finalized_block`) and its hash (`Substrate.block_hash`). The
  finalized head, not the best block: a cycle's seeds come from its block hash, and a best block can
  still be reorged away, which would change the seeds of a cycle already opened.
- commitments: `subnets.commitments(netuid, block=at_block)`, one block-pinned read of the
  Commitments pallet (`CommitmentOf`, `RevealedCommitments`) joined with `SubtensorModule.Uids`, so
  each entry carries the hotkey's uid at that block. Cheaper than the metagraph runtime call, which
  would also ship stakes and scores we do not use.

Each call opens a connection, reads and closes it, all under one deadline: a sensor tick never
hangs on a silent endpoint, and no socket or event-loop thread outlives the call. `bittensor` takes
seconds to import, so it is imported on first use, not with this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kinitro_dagster.miners.chain import BlockInfo, ChainCommitment

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0  # under Dagster's 60 s sensor-evaluation limit
CLOSE_TIMEOUT_S = 5.0

# A read gets the connected client and the substrate under it (for block hashes, which the
# client only resolves internally).
type Read[T] = Callable[[Any, Any], Awaitable[T]]


class ChainReadError(RuntimeError):
    """The chain answered, but not with what was asked; the message says what to check."""


class ChainUnavailable(ChainReadError):
    """The chain could not be reached, or did not answer in time."""


class BittensorChain:
    """`ChainReader` over bittensor 11 for one subnet.

    `network` is a name the SDK knows (`finney`, `test`, `archive`, `local`, ...) or a `ws(s)://`
    endpoint. `substrate` replaces the SDK's RPC backend with any `bt.Substrate` (tests).
    """

    def __init__(
        self, network: str, netuid: int, *, substrate: Any = None, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        self.network = network
        self.netuid = netuid
        self.timeout_s = timeout_s
        self._substrate = substrate

    def head(self) -> BlockInfo:
        async def read(client: Any, substrate: Any) -> BlockInfo:
            number = await client.finalized_block()
            return BlockInfo(number=number, hash=await substrate.block_hash(number))

        return self._run("read the finalized head", read)

    def block_hash(self, number: int) -> str:
        async def read(_client: Any, substrate: Any) -> str:
            return await substrate.block_hash(number)

        return self._run(f"read the hash of block {number}", read)

    def commitments(self, at_block: int) -> list[ChainCommitment]:
        bt = _bittensor()

        async def read(client: Any, _substrate: Any) -> dict[str, Any]:
            registered = await client.query(bt.storage.SubtensorModule.NetworksAdded, [self.netuid], block=at_block)
            if not registered:
                raise ChainReadError(
                    f"subnet {self.netuid} does not exist on {self.network} at block {at_block}: "
                    "check KINITRO_SCHEDULER_NETUID (and KINITRO_SCHEDULER_NETWORK)"
                )
            return await client.subnets.commitments(self.netuid, block=at_block)

        found = _join(self._run(f"read commitments at block {at_block}", read), at_block)
        log.info(
            "chain commitments read",
            extra={"network": self.network, "netuid": self.netuid, "block": at_block, "miners": len(found)},
        )
        return found

    def _run[T](self, what: str, read: Read[T]) -> T:
        bt = _bittensor()
        where = f"chain {self.network!r} (netuid {self.netuid})"
        check = (
            "check KINITRO_SCHEDULER_NETWORK (a known network name or a ws(s):// endpoint) "
            "and that this machine can reach it"
        )
        try:
            substrate = self._substrate if self._substrate is not None else _rpc_substrate(bt, self.network)
        except ValueError as exc:  # the SDK's "Unknown network ..." names the known ones
            raise ChainUnavailable(f"{where}: {exc}; set KINITRO_SCHEDULER_NETWORK accordingly") from None
        try:
            return _run_blocking(self._session(bt, substrate, read))
        except TimeoutError:
            raise ChainUnavailable(f"{where}: no answer within {self.timeout_s:g} s to {what}; {check}") from None
        except (bt.RpcConnectionError, bt.ConnectionNotReady, OSError) as exc:
            raise ChainUnavailable(f"{where}: cannot {what}: {exc}; {check}") from exc
        except bt.ChainError as exc:
            raise ChainReadError(f"{where}: the chain refused to {what}: {exc}") from exc

    async def _session[T](self, bt: Any, substrate: Any, read: Read[T]) -> T:
        try:
            async with asyncio.timeout(self.timeout_s):
                client = await bt.Subtensor(self.network, substrate=substrate)  # awaited: connected async Client
                return await read(client, substrate)
        finally:
            # Bounded, outside the deadline: a close must not hang the caller either.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(substrate.close(), CLOSE_TIMEOUT_S)


def _bittensor() -> Any:
    import bittensor

    return bittensor


def _rpc_substrate(bt: Any, network: str) -> Any:
    """The SDK's websocket backend, with the network's public fallback and archive pools.

    Built here rather than by `bt.Subtensor(network)` so that block hashes can be asked of it
    directly (the client does not expose its substrate); the pools are the ones the client picks.
    """
    from bittensor.settings import default_archive_endpoints, default_fallback_endpoints, resolve_endpoint

    label, endpoint = resolve_endpoint(network)
    return bt.RpcSubstrate(
        endpoint,
        fallback_endpoints=[url for url in default_fallback_endpoints(label) if url != endpoint],
        archive_endpoints=default_archive_endpoints(label),
    )


def _join(by_hotkey: dict[str, Any], at_block: int) -> list[ChainCommitment]:
    """Registered miners with a readable commitment made at or before `at_block`, by uid."""
    found = []
    for hotkey, commitment in by_hotkey.items():
        if commitment.uid is None:
            continue  # left behind by a hotkey that has since deregistered
        if commitment.block > at_block:
            continue  # the read is pinned to at_block; this only guards that promise
        if commitment.value is None:
            continue  # sealed (timelocked) and not yet revealed: nothing to evaluate yet
        # The text stays raw: parsing (and rejecting) it is the resolver's job, per cycle.
        found.append(
            ChainCommitment(
                uid=int(commitment.uid), hotkey=str(hotkey), raw=commitment.value, block=int(commitment.block)
            )
        )
    return sorted(found, key=lambda c: c.uid)


def _run_blocking[T](coro: Awaitable[T]) -> T:
    """Run a coroutine to completion from synchronous code, even when called inside an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)  # type: ignore[arg-type]
    # Inside a running loop (async caller): nesting loops is not allowed, so use a private thread.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()  # type: ignore[arg-type]
