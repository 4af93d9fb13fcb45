"""The signing key: a named wallet's hotkey, refused early when missing; the demo's throwaway one, reused."""

from __future__ import annotations

import re

import pytest

from kinitro_dagster.audit.signing import (
    SigningKeyError,
    check_hotkey_file,
    demo_hotkey,
    signature_valid,
    ss58_of_public_key,
    wallet_hotkey,
)
from kinitro_dagster.defs.resources import SigningResource, build_resources
from kinitro_dagster.settings import SchedulerSettings


def test_a_named_wallet_signs_and_its_signatures_verify_by_address_alone(tmp_path):
    from bittensor.wallet import Wallet

    Wallet("backend", "signer", path=str(tmp_path)).create_new_hotkey(use_password=False, suppress=True)
    key = SigningResource(wallet_name="backend", wallet_hotkey="signer", wallet_path=str(tmp_path)).key()
    assert not key.throwaway and ss58_of_public_key(key.public_key_hex) == key.ss58_address
    signature = key.sign(b"kinitro-weights/v1\n{}")
    assert signature_valid(b"kinitro-weights/v1\n{}", signature, key.ss58_address)
    assert not signature_valid(b"kinitro-weights/v1\n{ }", signature, key.ss58_address)
    assert not signature_valid(b"kinitro-weights/v1\n{}", "not hex", key.ss58_address)
    assert wallet_hotkey("backend", "signer", tmp_path).ss58_address == key.ss58_address  # same key on reload


def test_the_demo_key_is_made_once_and_reused(tmp_path):
    first, again = demo_hotkey(tmp_path / "wallets"), demo_hotkey(tmp_path / "wallets")
    assert first.throwaway and first.ss58_address == again.ss58_address
    assert first.ss58_address != demo_hotkey(tmp_path / "elsewhere").ss58_address


def test_a_missing_named_hotkey_stops_the_code_location_with_how_to_make_one(tmp_path, monkeypatch):
    monkeypatch.setenv("KINITRO_STATE_DIR", str(tmp_path / "state"))
    settings = SchedulerSettings(database_url=f"sqlite:///{tmp_path / 'w.db'}", wallet_name="backend",
                                 wallet_path=str(tmp_path / "wallets"))
    how = re.escape("btcli wallet new_hotkey --wallet.name backend --wallet.hotkey default")
    with pytest.raises(SigningKeyError, match=how):
        build_resources(settings)
    with pytest.raises(SigningKeyError, match="does not exist"):
        check_hotkey_file("backend", "default", tmp_path)
    with pytest.raises(SigningKeyError, match="cannot load the signing hotkey"):
        wallet_hotkey("backend", "default", tmp_path)
