"""A validator's check of published weights, with no access to the backend's database.

Given a weights response (the JSON of `/v1/weights/...`), the cycle's audit export and the SS58
address the validator expects to have signed, `verify_weights` checks, and reports by name:

    signed        the response carries a digest, its parts, a signer and a signature
    signer        the signer is the expected address (and its public key is the signer's)
    signature     the signature is the signer's over the cycle, digest and weights served
    digest        the served parts hash to the served digest
    <part>        each part recomputed from the export equals the signed one: "cycle",
                  "configuration", "scoring", "commitments", "episodes/<env>" (a missing or
                  extra env is named too)
    export        the export's weights are the served ones
    weights       the weights recomputed from the export's commitments and episodes with this
                  project's scoring code equal the served ones bit for bit (floats and u16)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kinitro_dagster.audit.attestation import attested_fields
from kinitro_dagster.audit.digest import digest_of, digest_parts, signed_message
from kinitro_dagster.audit.export import CycleAudit
from kinitro_dagster.audit.signing import signature_valid, ss58_of_public_key
from kinitro_dagster.scoring.inputs import ScoringParameters, score_records
from kinitro_dagster.scoring.weights import weights_to_u16
from kinitro_dagster.warehouse.records import CommitmentStatus, WeightsRecord


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class VerifyReport:
    cycle_id: str | None
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def add(self, name: str, passed: bool, detail: str) -> bool:
        self.checks.append(Check(name, passed, detail))
        return passed


def served_weights(response: Mapping[str, Any]) -> tuple[dict[int, float], dict[int, int]]:
    """The response's weights and u16 values keyed by int uid."""
    weights = {int(uid): float(w) for uid, w in response["weights"].items()}
    u16 = response["weights_u16"]
    return weights, {int(uid): int(v) for uid, v in zip(u16["uids"], u16["values"], strict=True)}


def recompute_weights(audit: CycleAudit) -> tuple[dict[int, float], dict[int, int]]:
    """The weights and u16 values this project's scoring gives the export's records."""
    config = audit.cycle.config
    if config is None:
        raise ValueError(f"cycle {audit.cycle.cycle_key} recorded no configuration (opened before revision 0003)")
    if audit.weights is None or audit.weights.attestation is None:
        raise ValueError(f"the export of cycle {audit.cycle.cycle_key} holds no signed weights")
    scoring = {k: v for k, v in audit.weights.attestation.scoring.items() if k != "code_version"}
    miners = [c for c in audit.commitments if c.status is CommitmentStatus.OK]
    inputs, scores = score_records(miners, audit.episodes_by_env, list(config.env_ids), config.episodes_per_env,
                                   ScoringParameters(**scoring))
    weights = {int(uid): float(w) for uid, w in zip(inputs.uids, scores.weights, strict=True)}
    u16_uids, u16_values = weights_to_u16(list(weights), list(weights.values()))
    return weights, dict(zip(u16_uids, u16_values, strict=True))


def verify_weights(response: Mapping[str, Any], audit: CycleAudit, expected_signer: str) -> VerifyReport:
    report = VerifyReport(cycle_id=response.get("cycle_id"))
    signed = {k: response.get(k) for k in ("digest", "digest_parts", "signature", "signer", "public_key")}
    if not report.add("signed", all(signed.values()),
                      "digest, parts, signer and signature present" if all(signed.values()) else
                      f"the response carries no {', '.join(k for k, v in signed.items() if not v)}: "
                      "published unsigned (before revision 0004) or by another backend"):
        return report
    weights, u16 = served_weights(response)
    _check_signature(report, response, weights, u16, expected_signer)
    _check_parts(report, response, audit)
    _check_weights(report, audit, weights, u16)
    return report


def _check_signature(report: VerifyReport, response: Mapping[str, Any], weights: dict[int, float],
                     u16: dict[int, int], expected: str) -> None:  # fmt: skip
    signer = response["signer"]
    key_matches = _ss58_or_none(response["public_key"]) == signer
    report.add("signer", signer == expected and key_matches,
               f"signed by {signer}" if signer == expected and key_matches else
               f"signed by {signer}, not the expected {expected}" if signer != expected else
               f"the public key {response['public_key']} is not {signer}'s")
    message = signed_message(response["cycle_id"], response["block"], response["digest"], weights, u16)
    valid = signature_valid(message, response["signature"], expected)
    report.add("signature", valid, f"sr25519 signature by {expected} over the cycle, digest and weights" if valid
               else f"the signature is not {expected}'s over this response's cycle, digest and weights")


def _check_parts(report: VerifyReport, response: Mapping[str, Any], audit: CycleAudit) -> None:
    served: dict[str, str] = response["digest_parts"]
    report.add("digest", digest_of(served) == response["digest"],
               "the parts hash to the digest" if digest_of(served) == response["digest"]
               else "the served parts do not hash to the served digest")
    c = audit.cycle
    scoring = audit.weights.attestation.scoring if audit.weights and audit.weights.attestation else {}
    recomputed = digest_parts(cycle_key=c.cycle_key, block=c.block, block_hash=c.block_hash, configuration=c.config,
                              scoring=scoring, commitments=audit.commitments, episodes_by_env=audit.episodes_by_env)
    for name in sorted(set(served) | set(recomputed)):
        if name not in recomputed:
            report.add(name, False, f"signed, but the export has no {name}")
        elif name not in served:
            report.add(name, False, f"the export has {name}, which the signed digest does not cover")
        else:
            same = served[name] == recomputed[name]
            report.add(name, same, f"matches the signed digest ({served[name][:12]}…)" if same else
                       f"the export's {name} differ from what was signed (sha256 {recomputed[name][:12]}…, "
                       f"signed {served[name][:12]}…)")


def _check_weights(report: VerifyReport, audit: CycleAudit, weights: dict[int, float], u16: dict[int, int]) -> None:
    exported = audit.weights
    same_export = exported is not None and exported.weights == weights and dict(
        zip(exported.u16_uids, exported.u16_values, strict=True)) == u16
    report.add("export", same_export, "the export's weights are the served ones" if same_export
               else "the export's weights are not the served ones: it is another cycle's or another publication's")
    try:
        recomputed, recomputed_u16 = recompute_weights(audit)
    except ValueError as error:
        report.add("weights", False, f"cannot recompute: {error}")
        return
    differ = sorted(uid for uid in set(recomputed) | set(weights) if recomputed.get(uid) != weights.get(uid))
    differ_u16 = sorted(uid for uid in set(recomputed_u16) | set(u16) if recomputed_u16.get(uid) != u16.get(uid))
    if not differ and not differ_u16:
        report.add("weights", True, f"recomputed bit for bit for {len(weights)} uids (floats and u16)")
        return
    shown = ", ".join(f"uid {uid}: served {weights.get(uid)!r}, recomputed {recomputed.get(uid)!r}"
                      for uid in (differ or differ_u16)[:5])
    report.add("weights", False, f"{len(set(differ) | set(differ_u16))} uids differ from the recomputation: {shown}")


def _ss58_or_none(public_key_hex: str) -> str | None:
    try:
        return ss58_of_public_key(public_key_hex)
    except (ValueError, TypeError):
        return None


def weights_response_fields(record: WeightsRecord) -> dict[str, Any]:
    """The fields of a weights response `verify_weights` reads, as the weights API serves them."""
    return {"cycle_id": record.cycle_key, "block": record.block,
            "weights": {str(uid): w for uid, w in sorted(record.weights.items())},
            "weights_u16": {"uids": list(record.u16_uids), "values": list(record.u16_values)},
            **attested_fields(record.attestation)}
