"""`verify_weights`: an untouched cycle verifies; each kind of tampering fails, and says which."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from audit_factories import ENVS, signed_cycle

from kinitro_dagster.audit.digest import canonical_json, digest_of
from kinitro_dagster.audit.export import audit_from_tables, audit_tables
from kinitro_dagster.audit.signing import demo_hotkey
from kinitro_dagster.audit.verify import verify_weights, weights_response_fields


def _served(audit) -> dict:
    """The weights response as a validator parses it: through JSON."""
    return json.loads(json.dumps(weights_response_fields(audit.weights)))


def _failed(report) -> set[str]:
    return {c.name for c in report.failures}


def test_an_untouched_cycle_verifies_through_its_parquet_export(key):
    audit = signed_cycle(key)
    exported = audit_from_tables(audit_tables(audit))
    report = verify_weights(_served(audit), exported, key.ss58_address)
    assert report.passed, [(c.name, c.detail) for c in report.failures]
    names = [c.name for c in report.checks]
    assert names[:3] == ["signed", "signer", "signature"]
    assert {f"episodes/{env}" for env in ENVS} <= set(names) and names[-1] == "weights"
    weights = audit.weights.weights
    assert sum(weights.values()) == pytest.approx(1.0) and len(set(weights.values())) > 1  # a real ranking


def test_the_export_round_trips_every_record_exactly(key):
    audit = signed_cycle(key)
    back = audit_from_tables(audit_tables(audit))
    assert back.commitments == audit.commitments
    assert back.episodes_by_env == audit.episodes_by_env
    assert back.miner_scores == audit.miner_scores and back.pareto == audit.pareto
    assert back.cycle == audit.cycle
    assert back.weights.weights == audit.weights.weights and back.weights.attestation == audit.weights.attestation
    assert dict(zip(back.weights.u16_uids, back.weights.u16_values, strict=True)) == dict(
        zip(audit.weights.u16_uids, audit.weights.u16_values, strict=True))


def test_one_changed_episode_row_fails_its_env_part_and_the_recomputed_weights(key):
    audit = signed_cycle(key)
    rows = list(audit.episodes_by_env[ENVS[1]])
    rows[7] = replace(rows[7], success=True)  # uid 1's last push episode, a failure made a success
    tampered = replace(audit, episodes_by_env={**audit.episodes_by_env, ENVS[1]: rows})
    report = verify_weights(_served(audit), tampered, key.ss58_address)
    assert _failed(report) == {f"episodes/{ENVS[1]}", "weights"}
    detail = next(c.detail for c in report.failures if c.name == f"episodes/{ENVS[1]}")
    assert "differ from what was signed" in detail


def test_a_changed_reward_alone_fails_the_digest_though_the_weights_still_recompute(key):
    audit = signed_cycle(key)
    rows = list(audit.episodes_by_env[ENVS[0]])
    rows[0] = replace(rows[0], total_reward=rows[0].total_reward + 1e-12)
    tampered = replace(audit, episodes_by_env={**audit.episodes_by_env, ENVS[0]: rows})
    assert _failed(verify_weights(_served(audit), tampered, key.ss58_address)) == {f"episodes/{ENVS[0]}"}


def test_one_changed_weight_fails_the_signature_and_the_recomputation(key):
    audit = signed_cycle(key)
    served = _served(audit)
    served["weights"]["1"] += 1e-9
    report = verify_weights(served, audit, key.ss58_address)
    assert _failed(report) == {"signature", "export", "weights"}
    assert "uid 1" in next(c.detail for c in report.failures if c.name == "weights")


def test_a_changed_signature_or_another_signer_fails_and_says_so(key, tmp_path):
    audit = signed_cycle(key)
    served = _served(audit)
    flipped = served["signature"][:-1] + ("0" if served["signature"][-1] != "0" else "1")
    assert _failed(verify_weights({**served, "signature": flipped}, audit, key.ss58_address)) == {"signature"}

    other = demo_hotkey(tmp_path / "other")
    report = verify_weights(served, audit, other.ss58_address)
    assert _failed(report) == {"signer", "signature"}
    assert other.ss58_address in next(c.detail for c in report.failures if c.name == "signer")


def test_a_resigned_forgery_by_another_key_still_fails_the_signer_check(key, tmp_path):
    """Whoever changes the weights and signs them again with their own key is not the expected signer."""
    forger = demo_hotkey(tmp_path / "forger")
    forged = signed_cycle(forger)
    assert _failed(verify_weights(_served(forged), forged, key.ss58_address)) == {"signer", "signature"}


def test_changed_commitments_configuration_or_scoring_are_named(key):
    audit = signed_cycle(key)
    served = _served(audit)
    commitments = [replace(audit.commitments[0], revision="f" * 40), *audit.commitments[1:]]
    assert _failed(verify_weights(served, replace(audit, commitments=commitments), key.ss58_address)) == {
        "commitments"}
    cycle = replace(audit.cycle, config=replace(audit.cycle.config, pareto_temperature=2.0))
    assert "configuration" in _failed(verify_weights(served, replace(audit, cycle=cycle), key.ss58_address))
    attestation = replace(audit.weights.attestation, scoring={**audit.weights.attestation.scoring, "z": 1.0})
    weights = replace(audit.weights, attestation=attestation)
    assert "scoring" in _failed(verify_weights(served, replace(audit, weights=weights), key.ss58_address))


def test_a_missing_env_and_parts_that_do_not_hash_to_the_digest_are_named(key):
    audit = signed_cycle(key)
    served = _served(audit)
    dropped = replace(audit, episodes_by_env={ENVS[0]: audit.episodes_by_env[ENVS[0]]})
    assert f"episodes/{ENVS[1]}" in _failed(verify_weights(served, dropped, key.ss58_address))
    parts = {**served["digest_parts"], "commitments": "0" * 64}
    assert digest_of(parts) != served["digest"]
    assert "digest" in _failed(verify_weights({**served, "digest_parts": parts}, audit, key.ss58_address))


def test_unsigned_weights_fail_with_the_reason(key):
    audit = signed_cycle(key)
    unsigned = replace(audit, weights=replace(audit.weights, attestation=None))
    report = verify_weights(_served(unsigned), unsigned, key.ss58_address)
    assert _failed(report) == {"signed"} and "published unsigned" in report.failures[0].detail


def test_canonical_json_hashes_floats_by_their_exact_value():
    assert canonical_json({"b": 0.1 + 0.2, "a": [1, None]}) == b'{"a":[1,null],"b":0.30000000000000004}'
    assert canonical_json(0.3) != canonical_json(0.1 + 0.2)
