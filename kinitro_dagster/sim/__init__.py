"""Simulated environments and the rollout loop. MetaWorld loads only when an env is made."""

from kinitro_dagster.protocol import PolicyAction
from kinitro_dagster.sim.base import EnvConfig, SimEnv, StepResult, make_env

__all__ = ["EnvConfig", "PolicyAction", "SimEnv", "StepResult", "make_env"]
