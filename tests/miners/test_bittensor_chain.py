"""BittensorChain on the real bittensor 11 SDK, offline: only the transport is local.

`LocalSubstrate` implements the SDK's own chain-access seam (`bt.Substrate`, bittensor/_substrate.py)
from a small chain history the test builds, answering each read with the storage state *at the block
it is asked about*, decoded the way the SDK's RPC backend hands values over. Everything above it is
the SDK's real code: `bt.Subtensor` connecting, block pinning, the Commitments pallet decoding
(including the SCALE length prefix of revealed timelock payloads) and the uid join.

The unreachable / silent endpoint tests go one level lower still: the SDK's real websocket backend
against a closed port and a socket that never answers.
"""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import bittensor as bt
import bittensor_core
import pytest

from kinitro_dagster.defs.resources import ChainResource
from kinitro_dagster.miners.bittensor_chain import BittensorChain, ChainReadError, ChainUnavailable
from kinitro_dagster.miners.chain import BlockInfo, ChainCommitment

NETUID = 7


def hotkey(name: str) -> str:
    """A real ss58 address (format 42), from the SDK's own core."""
    return bittensor_core.ss58_encode(hashlib.sha256(name.encode()).digest(), 42)


def block_hash_of(number: int) -> str:
    return "0x" + hashlib.sha256(f"local-chain:{number}".encode()).hexdigest()


def scale_bytes(payload: bytes) -> bytes:
    """SCALE `Vec<u8>`: compact length prefix, then the bytes (what a revealed timelock payload is)."""
    n = len(payload)
    if n < 1 << 6:
        prefix = bytes([n << 2])
    elif n < 1 << 14:
        prefix = ((n << 2) | 0b01).to_bytes(2, "little")
    else:
        prefix = ((n << 2) | 0b10).to_bytes(4, "little")
    return prefix + payload


def as_transport_bytes(data: bytes) -> str:
    """How the SDK's transport hands over `Vec<u8>`: text when it is valid utf-8, else 0x-hex."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "0x" + data.hex()


@dataclass
class LocalChain:
    """A subnet's history: who registered at which uid, and who committed what, block by block."""

    best: int
    finalized: int
    subnets: dict[int, int] = field(default_factory=lambda: {NETUID: 1})  # netuid -> registered at block
    registrations: list[tuple[int, int, str]] = field(default_factory=list)  # (block, uid, hotkey)
    commitments: list[tuple[int, str, dict]] = field(default_factory=list)  # (block, hotkey, Data field)
    reveals: list[tuple[int, str, bytes]] = field(default_factory=list)  # (block, hotkey, plaintext)

    def register(self, block: int, uid: int, name: str) -> str:
        self.registrations.append((block, uid, hotkey(name)))
        return hotkey(name)

    def commit(self, block: int, name: str, text: str) -> None:
        data = text.encode()
        self.commitments.append((block, hotkey(name), {f"Raw{len(data)}": "0x" + data.hex()}))

    def commit_sealed(self, block: int, name: str, reveal_round: int) -> None:
        field_ = {"TimelockEncrypted": {"encrypted": "0x" + b"ciphertext".hex(), "reveal_round": reveal_round}}
        self.commitments.append((block, hotkey(name), field_))

    def reveal(self, block: int, name: str, plaintext: str) -> None:
        self.reveals.append((block, hotkey(name), plaintext.encode()))

    # Storage as it stands at `block` (decoded values, keyed the way query_map hands them over).

    def uids(self, netuid: int, block: int) -> list[tuple[str, int]]:
        holder: dict[int, str] = {}
        for at, uid, key in sorted(self.registrations):
            if at <= block and netuid in self.subnets:
                holder[uid] = key  # a later registration at a uid replaces its previous holder
        return [(key, uid) for uid, key in holder.items()]

    def commitment_of(self, netuid: int, block: int) -> list[tuple[str, dict]]:
        latest: dict[str, tuple[int, dict]] = {}
        for at, key, data in sorted(self.commitments, key=lambda c: c[0]):
            if at <= block and netuid in self.subnets:
                latest[key] = (at, data)
        for at, key, _ in self.reveals:
            if at <= block and key in latest and "TimelockEncrypted" in latest[key][1]:
                del latest[key]  # the chain drops a sealed commitment's entry once it is revealed
        return [(key, {"deposit": 0, "block": at, "info": {"fields": [data]}}) for key, (at, data) in latest.items()]

    def revealed_commitments(self, netuid: int, block: int) -> list[tuple[str, list]]:
        out: dict[str, list] = {}
        for at, key, text in self.reveals:
            if at <= block and netuid in self.subnets:
                out.setdefault(key, []).append((as_transport_bytes(scale_bytes(text)), at))
        return list(out.items())


class LocalSubstrate:
    """The SDK's `Substrate` protocol over a `LocalChain`: the reads `bt.Subtensor` makes, nothing else.

    An unexpected call fails loudly, so a change in what the SDK reads shows up here first.
    """

    def __init__(self, chain: LocalChain) -> None:
        self.chain = chain
        self.token_symbols: dict[int, str] = {}
        self.connects = 0
        self.closes = 0
        self.reads: list[tuple[str, str, str | None]] = []  # (module, item, block_hash)

    def balance(self, rao: int, netuid: int = 0) -> bt.Balance:
        return bt.Balance(int(rao), netuid, self.token_symbols.get(netuid) if netuid else None)

    async def connect(self) -> None:
        self.connects += 1

    async def close(self) -> None:
        self.closes += 1

    async def block_hash(self, block: int | None = None) -> str:
        number = self.chain.best if block is None else block
        if number > self.chain.best or number < 0:
            raise bt.ChainError(f"no block at height {number}")  # what the RPC backend raises
        return block_hash_of(number)

    async def block_number(self) -> int:
        return self.chain.best

    async def finalized_block_number(self) -> int:
        return self.chain.finalized

    async def block_time(self) -> float:
        return 12.0

    async def query(
        self, module: str, storage_function: str, params: list | None = None, block_hash: str | None = None
    ) -> Any:
        block = self._at(module, storage_function, block_hash)
        if (module, storage_function) == ("SubtensorModule", "NetworksAdded"):
            (netuid,) = params or []
            return netuid in self.chain.subnets and self.chain.subnets[netuid] <= block
        raise NotImplementedError(f"LocalSubstrate has no storage item {module}.{storage_function}")

    async def query_map(
        self, module: str, storage_function: str, params: list | None = None, block_hash: str | None = None
    ) -> list[tuple[Any, Any]]:
        block = self._at(module, storage_function, block_hash)
        netuid = (params or [None])[0]
        match (module, storage_function):
            case ("SubtensorModule", "TokenSymbol"):  # read once on connect, for display
                return [(n, "0x" + "τ".encode().hex()) for n in self.chain.subnets]
            case ("SubtensorModule", "Uids"):
                return self.chain.uids(netuid, block)
            case ("Commitments", "CommitmentOf"):
                return self.chain.commitment_of(netuid, block)
            case ("Commitments", "RevealedCommitments"):
                return self.chain.revealed_commitments(netuid, block)
        raise NotImplementedError(f"LocalSubstrate has no storage map {module}.{storage_function}")

    def _at(self, module: str, item: str, block_hash: str | None) -> int:
        self.reads.append((module, item, block_hash))
        if block_hash is None:
            return self.chain.best
        for number in range(self.chain.best + 1):
            if block_hash_of(number) == block_hash:
                return number
        raise bt.ChainError(f"unknown block {block_hash}")

    def __getattr__(self, name: str) -> Any:
        # runtime_call, query_batch, constant, get_block, submit, ...: not on BittensorChain's path.
        raise AttributeError(f"LocalSubstrate does not serve Substrate.{name}")


@pytest.fixture(autouse=True)
def _sdk_cache_in_tmp(tmp_path, monkeypatch):
    """The SDK caches token symbols in ~/.bittensor on connect; keep that inside the test."""
    monkeypatch.setenv("BTCLI_TOKEN_SYMBOLS_CACHE", str(tmp_path / "token_symbols.json"))


@pytest.fixture
def chain() -> LocalChain:
    c = LocalChain(best=200, finalized=197)
    c.register(10, 0, "alice")
    c.register(12, 1, "bob")
    c.register(15, 2, "carol")
    c.register(20, 3, "dave")  # never commits
    c.commit(30, "alice", "kinitro-demo/scripted-expert:3f2a9c1b:dep-1")
    c.commit(40, "bob", "not a kinitro commitment, passed through as is")
    c.commit(50, "carol", "someone/policy:0123456789abcdef0123456789abcdef01234567")
    c.commit(150, "bob", "someone/bob-v2:aaaaaaaa")  # after the cycle block below
    c.commit(160, "erin", "erin/early:bbbbbbbb")  # committed, registered only later
    c.register(170, 4, "erin")
    return c


def reader(chain: LocalChain) -> tuple[BittensorChain, LocalSubstrate]:
    substrate = LocalSubstrate(chain)
    return BittensorChain("local", NETUID, substrate=substrate, timeout_s=5), substrate


def test_commitments_join_uids_and_hotkeys_at_the_block(chain):
    read, substrate = reader(chain)
    assert read.commitments(at_block=120) == [
        ChainCommitment(0, hotkey("alice"), "kinitro-demo/scripted-expert:3f2a9c1b:dep-1", 30),
        ChainCommitment(1, hotkey("bob"), "not a kinitro commitment, passed through as is", 40),
        ChainCommitment(2, hotkey("carol"), "someone/policy:0123456789abcdef0123456789abcdef01234567", 50),
    ]
    # Every chain read of the cycle was pinned to block 120's hash, not the head.
    pinned = {h for _, item, h in substrate.reads if item != "TokenSymbol"}  # TokenSymbol: on connect
    assert pinned == {block_hash_of(120)}
    assert substrate.connects == substrate.closes == 1


def test_commitment_made_after_the_block_is_not_seen(chain):
    read, _ = reader(chain)
    at_120 = {c.uid: c for c in read.commitments(at_block=120)}
    assert (at_120[1].raw, at_120[1].block) == ("not a kinitro commitment, passed through as is", 40)
    at_head = {c.uid: c for c in read.commitments(at_block=200)}
    assert (at_head[1].raw, at_head[1].block) == ("someone/bob-v2:aaaaaaaa", 150)
    assert at_head[4] == ChainCommitment(4, hotkey("erin"), "erin/early:bbbbbbbb", 160)
    assert 4 not in at_120 and 4 not in {c.uid for c in read.commitments(at_block=165)}  # not yet registered


def test_registered_miner_without_commitment_and_deregistered_committer_are_skipped(chain):
    chain.commit(60, "frank", "frank/gone:cccccccc")  # frank was never (or is no longer) registered
    read, _ = reader(chain)
    found = read.commitments(at_block=120)
    assert 3 not in {c.uid for c in found}  # dave: registered, no commitment
    assert hotkey("frank") not in {c.hotkey for c in found}


def test_sealed_commitment_is_skipped_until_the_chain_reveals_it(chain):
    chain.register(25, 5, "gina")
    chain.commit_sealed(100, "gina", reveal_round=424242)
    chain.reveal(130, "gina", "gina/sealed-policy:dddddddd:dep-9")
    read, _ = reader(chain)
    assert 5 not in {c.uid for c in read.commitments(at_block=120)}
    revealed = {c.uid: c for c in read.commitments(at_block=140)}[5]
    # Once revealed the chain keeps only the decrypted text, dated at the reveal block.
    assert revealed == ChainCommitment(5, hotkey("gina"), "gina/sealed-policy:dddddddd:dep-9", 130)


def test_head_is_the_finalized_block_and_its_hash(chain):
    read, _ = reader(chain)
    assert read.head() == BlockInfo(number=197, hash=block_hash_of(197))
    assert read.block_hash(120) == block_hash_of(120)


def test_block_past_the_head_is_a_clear_error(chain):
    read, _ = reader(chain)
    with pytest.raises(ChainReadError, match=r"chain 'local' \(netuid 7\).*block 5000.*no block at height 5000"):
        read.block_hash(5000)


def test_unknown_subnet_is_a_clear_error(chain):
    substrate = LocalSubstrate(chain)
    read = BittensorChain("local", 99, substrate=substrate, timeout_s=5)
    with pytest.raises(ChainReadError, match=r"subnet 99 does not exist.*KINITRO_SCHEDULER_NETUID"):
        read.commitments(at_block=120)


def test_unknown_network_name_is_a_clear_error():
    with pytest.raises(ChainUnavailable, match=r"Unknown network 'finey'.*KINITRO_SCHEDULER_NETWORK"):
        BittensorChain("finey", NETUID).head()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_network_fails_fast_with_chain_unavailable():
    endpoint = f"ws://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    with pytest.raises(ChainUnavailable) as raised:
        BittensorChain(endpoint, NETUID, timeout_s=10).head()
    assert time.monotonic() - started < 5
    message = str(raised.value)
    assert endpoint in message and "netuid 7" in message and "KINITRO_SCHEDULER_NETWORK" in message


def test_silent_endpoint_times_out_instead_of_hanging():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(server.accept()[0]), daemon=True).start()
    endpoint = f"ws://127.0.0.1:{server.getsockname()[1]}"  # accepts, never speaks websocket
    started = time.monotonic()
    try:
        with pytest.raises(ChainUnavailable, match=r"no answer within 1 s to read the finalized head"):
            BittensorChain(endpoint, NETUID, timeout_s=1).head()
        assert time.monotonic() - started < 8
    finally:
        for conn in accepted:
            conn.close()
        server.close()


def test_chain_resource_reads_the_configured_network_and_subnet():
    reader_ = ChainResource(kind="bittensor", network="test", netuid=42).reader()
    assert isinstance(reader_, BittensorChain)
    assert (reader_.network, reader_.netuid) == ("test", 42)


def test_importing_the_reader_does_not_import_bittensor():
    code = (
        "import sys, kinitro_dagster.miners.bittensor_chain, kinitro_dagster.miners.chain; "
        "sys.exit('bittensor' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
