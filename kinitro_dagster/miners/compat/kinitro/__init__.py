"""A small stand-in for the `kinitro` package, for miner code written against Kinitro (DESIGN §6).

Kinitro's miner template (`kinitro miner init`) writes an `rl_interface.py` that does
`from kinitro.types import EncodedImage`, and its miner guide shows
`from kinitro.rl_interface import Action, ActionKeys, Observation`; neither module ships with
the template. Policy runtimes put the directory above this package on the policy's PYTHONPATH
(local mode: `LocalDeployment`; docker mode: `/opt/kinitro-compat` in the miner-runner image),
after the policy's own directory, so a miner that ships its own `kinitro/` keeps it.

Only the names such miner code imports are here: `kinitro.types.EncodedImage` and the public
names of `kinitro.rl_interface`. Wire-compatible with our policy protocol; pydantic and numpy
only, nothing from the evaluator (which never imports this package). Needs Python >= 3.12:
pydantic refuses `typing.TypedDict` (EncodedImage) on older Pythons.
"""
