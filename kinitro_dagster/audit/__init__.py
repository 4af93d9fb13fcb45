"""What makes a published cycle checkable by someone who does not trust this backend.

Pure Python (no Dagster, no database):

* `digest` — the canonical serialization of a cycle's inputs, their digest, and the message the
  backend's hotkey signs (the digest and the weights).
* `signing` — the sr25519 hotkey from a bittensor wallet (or the demo's throwaway one), signatures.
* `export` — the per-cycle audit export: Parquet tables of the cycle, its commitments, episodes,
  scores and weights, and back.
* `verify` — a validator's check of a weights response against an export: signature, digest and
  the weights recomputed with the project's scoring code.
"""
