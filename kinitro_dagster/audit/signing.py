"""The backend's signing key: a hotkey of a bittensor wallet, sr25519.

Operators name a wallet (`KINITRO_SCHEDULER_WALLET_NAME`, `_WALLET_HOTKEY`, `_WALLET_PATH`) and
validators check signatures against that hotkey's SS58 address. With no wallet named, the embedded
default signs with a throwaway hotkey it creates under the state dir: the signatures are real, but
the key proves nothing about who ran the backend, and the backend says so whenever it signs.
Verification needs only `bittensor_core` (bittensor's key binding), which imports in milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import bittensor_core

DEMO_WALLET_NAME = "kinitro-demo"
DEMO_HOTKEY = "default"
SR25519 = bittensor_core.CRYPTO_SR25519


class SigningKeyError(RuntimeError):
    """The configured hotkey cannot be loaded; the message says how to make one."""


class Keypair(Protocol):
    @property
    def ss58_address(self) -> str: ...

    @property
    def public_key(self) -> bytes: ...

    def sign(self, data: bytes) -> bytes: ...


@dataclass(frozen=True)
class SigningKey:
    keypair: Keypair
    wallet: str  # "name/hotkey at path", for logs and metadata
    throwaway: bool  # the demo's key: it proves nothing about who signed

    @property
    def ss58_address(self) -> str:
        return self.keypair.ss58_address

    @property
    def public_key_hex(self) -> str:
        return bytes(self.keypair.public_key).hex()

    def sign(self, message: bytes) -> str:
        return bytes(self.keypair.sign(message)).hex()


def hotkey_file(name: str, hotkey: str, path: str | Path) -> Path:
    """Where bittensor keeps hotkey `name/hotkey` under the wallets at `path`."""
    return Path(path).expanduser() / name / "hotkeys" / hotkey


def check_hotkey_file(name: str, hotkey: str, path: str | Path) -> None:
    """Refuse a named hotkey that does not exist, when the code location loads rather than when
    the first cycle's weights are due (no key is read here: that is the signer's business)."""
    if not hotkey_file(name, hotkey, path).is_file():
        raise SigningKeyError(
            f"the signing hotkey {name}/{hotkey} does not exist under {path} (no {hotkey_file(name, hotkey, path)}): "
            f"create it with `btcli wallet new_hotkey --wallet.name {name} --wallet.hotkey {hotkey} --wallet.path "
            f"{path}`, or point KINITRO_SCHEDULER_WALLET_NAME/_WALLET_HOTKEY/_WALLET_PATH at an existing one")


def wallet_hotkey(name: str, hotkey: str, path: str | Path) -> SigningKey:
    """The hotkey `name/hotkey` of the wallets under `path` (bittensor's layout)."""
    from bittensor.wallet import Wallet  # the SDK's import takes seconds; only signers pay it

    wallet = Wallet(name, hotkey, path=str(Path(path).expanduser()))
    try:
        keypair = wallet.hotkey
    except Exception as error:  # a missing file, a wrong password, a corrupt keyfile
        raise SigningKeyError(
            f"cannot load the signing hotkey {name}/{hotkey} under {path}: {error}; create one with "
            f"`btcli wallet new_hotkey --wallet.name {name} --wallet.hotkey {hotkey}` or point "
            "KINITRO_SCHEDULER_WALLET_NAME/_WALLET_HOTKEY/_WALLET_PATH at an existing one"
        ) from error
    if keypair.crypto_type != SR25519:
        raise SigningKeyError(f"the signing hotkey {name}/{hotkey} is not sr25519; validators verify sr25519")
    return SigningKey(keypair=keypair, wallet=f"{name}/{hotkey} at {path}", throwaway=False)


def demo_hotkey(directory: Path) -> SigningKey:
    """The embedded default's throwaway hotkey under `directory`, created on first use and reused,
    so one demo state signs every cycle with the same address."""
    from bittensor.wallet import Wallet

    wallet = Wallet(DEMO_WALLET_NAME, DEMO_HOTKEY, path=str(directory))
    if not Path(wallet.hotkey_file.path).exists():
        directory.mkdir(parents=True, exist_ok=True)
        wallet.create_new_hotkey(use_password=False, overwrite=False, suppress=True)
    key = wallet_hotkey(DEMO_WALLET_NAME, DEMO_HOTKEY, directory)
    return SigningKey(keypair=key.keypair, wallet=key.wallet, throwaway=True)


def signature_valid(message: bytes, signature_hex: str, ss58_address: str) -> bool:
    """Whether `signature_hex` is `ss58_address`'s sr25519 signature of `message`."""
    try:
        signature = bytes.fromhex(signature_hex.removeprefix("0x"))
        return bool(bittensor_core.verify(message, signature, ss58_address, SR25519))
    except (ValueError, TypeError):
        return False


def ss58_of_public_key(public_key_hex: str) -> str:
    """The SS58 address (generic substrate format, as bittensor uses) of a public key."""
    return bittensor_core.ss58_encode(bytes.fromhex(public_key_hex.removeprefix("0x")))
