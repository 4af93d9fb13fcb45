"""Train the learned reach policy: behaviour cloning of MetaWorld's scripted expert on reach-v3.

Run from the repository root, in the project's venv with torch added (the project itself does not
depend on torch; see README.md beside this file):

    .venv/bin/uv pip install --python .venv/bin/python torch==2.15.0
    MUJOCO_GL=egl .venv/bin/python examples/miners/learned_reach/train.py

Data. Episodes come from `kinitro_dagster.gym` (`kinitro/metaworld-reach-v3`), the evaluator's own
env: the camera frames after the policy's first action (it holds still for one step, see
policy.py) are, byte for byte, what the evaluator sends a policy then.
Privileged state (`privileged_state=True`) is used here only, at training time: it is what the
scripted expert acts on, and its last three numbers are the goal, the auxiliary target. The policy
never reads it (`policy.py` uses the cameras and `proprio.ee_pos`). Each training episode plays
the expert from that seed's start, with per-episode Gaussian action noise and sometimes a few
random steps first (so the hand visits states off the expert's path, labelled with the clean
expert action there: DART-style), until the expert's success or 150 steps. Training seeds are
1_000_000 + i, the validation seeds 2_000_000 + i; none is in 0..999, where README.md's evaluation
plays.

Loss. Mean squared error of the predicted native action [x, y, z, grip] against the expert's,
plus the goal position's (normalized units) as an auxiliary loss. Adam, fixed seeds, one thread
per core; the data is cached (`--cache`) so a re-run skips collection.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import gymnasium  # noqa: E402
import torch  # noqa: E402
from metaworld.policies import ENV_POLICY_MAP  # noqa: E402
from model import ReachNet, camera_frames  # noqa: E402

GYM_ID = "kinitro_dagster.gym:kinitro/metaworld-reach-v3"
TRAIN_SEED0, VALID_SEED0 = 1_000_000, 2_000_000
MAX_STEPS = 150
HOLD = np.zeros(7)  # the policy's first action: ee_twist 0, gripper open


def collect(seeds: range, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """First frames, goals and (ee_pos, expert action) pairs of the expert's episodes on `seeds`."""
    cameras = gymnasium.make(GYM_ID, obs_format="arrays", privileged_state=True)
    blind = gymnasium.make(GYM_ID, obs_format="arrays", privileged_state=True, use_images=False)
    expert = ENV_POLICY_MAP["reach-v3"]()
    frames, goals, episode, ee_pos, actions, successes = [], [], [], [], [], 0
    for index, seed in enumerate(seeds):
        # The policy holds still for one step, then looks (policy.py: the reset frame's goal marker is stale).
        cameras.reset(seed=seed)
        seen, *_ = cameras.step(HOLD)
        frames.append(camera_frames(seen["rgb"]))
        state = seen["extra"]["state"]
        goals.append(state[-3:])
        blind.reset(seed=seed)  # the same episode, stepped without rendering
        observation, *_ = blind.step(HOLD)
        assert np.array_equal(observation["extra"]["state"], state)
        noise = rng.uniform(0.0, 0.6)
        wander = int(rng.integers(0, 25)) if rng.random() < 0.5 else 0
        for step in range(MAX_STEPS):
            clean = np.clip(expert.get_action(observation["extra"]["state"]), -1.0, 1.0)
            episode.append(index)
            ee_pos.append(observation["proprio"]["ee_pos"])
            actions.append(clean)
            played = rng.uniform(-1.0, 1.0, 4) if step < wander else clean + rng.normal(0.0, noise, 4)
            played = np.clip(played, -1.0, 1.0)
            flat = [*played[:3], 0.0, 0.0, 0.0, (played[3] + 1.0) / 2.0]
            observation, _, terminated, truncated, info = blind.step(flat)
            if terminated or truncated:
                successes += bool(info["success"])
                break
    cameras.close()
    blind.close()
    print(f"  {len(seeds)} episodes, {len(actions)} labelled states, expert (with noise) succeeded {successes}")
    return {
        "frames": np.stack(frames), "goals": np.asarray(goals, np.float32),
        "episode": np.asarray(episode, np.int64), "ee_pos": np.asarray(ee_pos, np.float32),
        "actions": np.asarray(actions, np.float32),
    }  # fmt: skip


def dataset(path: Path | None, name: str, seeds: range, seed: int) -> dict[str, np.ndarray]:
    cached = path.with_name(f"{path.stem}-{name}-{len(seeds)}.npz") if path else None
    if cached and cached.is_file():
        print(f"{name}: cached {cached}")
        return dict(np.load(cached))
    print(f"{name}: collecting seeds {seeds.start}..{seeds.stop - 1}")
    data = collect(seeds, np.random.default_rng([seed, seeds.start]))
    if cached:
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cached, **data)
    return data


def batch(data: dict, episodes: np.ndarray, rng: np.random.Generator, per_episode: int) -> tuple:
    """The episodes' first frames and goals, and `per_episode` labelled states of each."""
    by_episode = data["by_episode"]
    rows = np.concatenate([rng.choice(by_episode[e], per_episode) for e in episodes])
    owner = np.repeat(np.arange(len(episodes)), per_episode)
    return (torch.from_numpy(data["frames"][episodes]), torch.from_numpy(data["goals"][episodes]),
            torch.from_numpy(owner), torch.from_numpy(data["ee_pos"][rows]),
            torch.from_numpy(data["actions"][rows]))  # fmt: skip


def index_episodes(data: dict) -> None:
    order = np.argsort(data["episode"], kind="stable")
    starts = np.searchsorted(data["episode"][order], np.arange(len(data["frames"]) + 1))
    data["by_episode"] = [order[starts[i]:starts[i + 1]] for i in range(len(data["frames"]))]


def evaluate(model: ReachNet, data: dict) -> dict[str, float]:
    model.eval()
    with torch.no_grad():
        goal = torch.cat([model.goal(torch.from_numpy(data["frames"][i:i + 256]))
                          for i in range(0, len(data["frames"]), 256)])  # fmt: skip
        error_cm = (model.denormalize(goal) - torch.from_numpy(data["goals"])).norm(dim=1) * 100
        owner = torch.from_numpy(data["episode"])
        predicted = model.act(goal[owner], torch.from_numpy(data["ee_pos"]))
        action_mse = ((predicted - torch.from_numpy(data["actions"])) ** 2).mean().item()
    model.train()
    return {"goal_err_cm_median": error_cm.median().item(), "goal_err_cm_p90": error_cm.quantile(0.9).item(),
            "within_4cm": (error_cm < 4.0).float().mean().item(), "action_mse": action_mse}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=2000, help="training episodes (seeds)")
    parser.add_argument("--valid-episodes", type=int, default=300)
    parser.add_argument("--steps", type=int, default=1200, help="gradient steps")
    parser.add_argument("--batch-episodes", type=int, default=32)
    parser.add_argument("--states-per-episode", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/learned-reach/data.npz"),
                        help="collected data is kept beside this path (one file per split)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=HERE / "reach_net.pt")
    args = parser.parse_args()

    started = time.monotonic()
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(os.cpu_count() or 1)
    rng = np.random.default_rng(args.seed)
    train = dataset(args.cache, "train", range(TRAIN_SEED0, TRAIN_SEED0 + args.episodes), args.seed)
    valid = dataset(args.cache, "valid", range(VALID_SEED0, VALID_SEED0 + args.valid_episodes), args.seed)
    index_episodes(train)
    collected = time.monotonic()

    model = ReachNet()
    model.mean_frames.copy_(torch.from_numpy(train["frames"]).float().div(255.0).mean(0).permute(0, 3, 1, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=args.steps, pct_start=0.1)
    for step in range(1, args.steps + 1):
        episodes = rng.choice(len(train["frames"]), args.batch_episodes, replace=False)
        frames, goals, owner, ee_pos, actions = batch(train, episodes, rng, args.states_per_episode)
        goal = model.goal(frames)
        goal_loss = ((goal - model.normalize(goals)) ** 2).mean()
        action_loss = ((model.act(goal[owner], ee_pos) - actions) ** 2).mean()
        loss = action_loss + goal_loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 250 == 0 or step == args.steps:
            metrics = evaluate(model, valid)
            print(f"step {step}: loss {loss.item():.4f} (action {action_loss.item():.4f}, goal {goal_loss.item():.4f})"
                  f" | valid " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items())
                  + f" | {time.monotonic() - collected:.0f} s", flush=True)  # fmt: skip

    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.clone() for k, v in model.state_dict().items()}, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 2**10:.0f} KiB); collection {collected - started:.0f} s, "
          f"training {time.monotonic() - collected:.0f} s")  # fmt: skip


if __name__ == "__main__":
    main()
