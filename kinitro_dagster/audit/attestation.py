"""Making a weights row's attestation: the digest of its inputs, signed with the backend's hotkey."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kinitro_dagster.audit.digest import digest_of, digest_parts, signed_message
from kinitro_dagster.audit.signing import SigningKey
from kinitro_dagster.scoring.inputs import ScoringParameters
from kinitro_dagster.version import code_version
from kinitro_dagster.warehouse.records import Attestation, CommitmentRecord, CycleRecord, EpisodeRecord


def scoring_record(parameters: ScoringParameters) -> dict[str, Any]:
    """The scoring part of a digest: the rule's parameters and the code version that applied them."""
    return {**parameters.to_json(), "code_version": code_version()}


def attest(
    cycle: CycleRecord,
    commitments: Sequence[CommitmentRecord],
    episodes_by_env: Mapping[str, Sequence[EpisodeRecord]],
    scoring: Mapping[str, Any],
    weights: Mapping[int, float],
    u16: Mapping[int, int],
    key: SigningKey,
) -> Attestation:
    parts = digest_parts(cycle_key=cycle.cycle_key, block=cycle.block, block_hash=cycle.block_hash,
                         configuration=cycle.config, scoring=scoring, commitments=commitments,
                         episodes_by_env=episodes_by_env)
    digest = digest_of(parts)
    signature = key.sign(signed_message(cycle.cycle_key, cycle.block, digest, weights, u16))
    return Attestation(digest=digest, parts=parts, scoring=dict(scoring), signer=key.ss58_address,
                       public_key=key.public_key_hex, signature=signature)


ATTESTED_FIELDS = ("digest", "digest_parts", "signature", "signer", "public_key")


def attested_fields(attestation: Attestation | None) -> dict[str, Any]:
    """The fields a weights response adds to prove itself; all None for unsigned weights."""
    if attestation is None:
        return dict.fromkeys(ATTESTED_FIELDS)
    return {"digest": attestation.digest, "digest_parts": dict(attestation.parts), "signature": attestation.signature,
            "signer": attestation.signer, "public_key": attestation.public_key}
