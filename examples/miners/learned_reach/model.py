"""The learned reach policy's network: both corner cameras + the hand's position -> MetaWorld's action.

    frames (corner, corner2: 84x84 RGB) -> shared conv encoder -> spatial soft-argmax keypoints
        -> goal head -> where the goal is (x, y, z, normalized)
    [goal, ee_pos, goal - ee_pos] -> action head -> native action [x, y, z, grip] in [-1, 1]

The frames are the episode's second observation (policy.py holds still for the first step, because
the reset frame draws the goal's marker at a stale position). The arm is then in the same pose
every episode, the goal (a small red sphere, a few pixels wide) never moves, and the arm hides it
once it gets close, so the policy looks once and keeps the goal. Each frame has the training set's
mean frame (`mean_frames`, a buffer saved with the weights) subtracted, which leaves mostly what
differs between episodes: the goal and the puck. Trained by `train.py` (behaviour cloning of
MetaWorld's scripted expert, the goal as an auxiliary target); imported by `policy.py` and
`train.py` alike.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

CAMERAS = ("corner", "corner2")
IMAGE_SIZE = 84
# Workspace normalization: metres -> roughly [-1, 1] around the reach goals' region.
CENTER = (0.0, 0.75, 0.15)
SCALE = 5.0


class SpatialSoftArgmax(nn.Module):
    """(B, C, H, W) feature maps -> (B, 2C) expected (x, y) of each channel's softmax, in [-1, 1]."""

    def __init__(self, height: int, width: int) -> None:
        super().__init__()
        self.log_temperature = nn.Parameter(torch.zeros(()))
        self.register_buffer("xs", torch.linspace(-1.0, 1.0, width), persistent=False)
        self.register_buffer("ys", torch.linspace(-1.0, 1.0, height), persistent=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = features.shape
        logits = features.reshape(batch, channels, height * width) / self.log_temperature.exp()
        weights = torch.softmax(logits, dim=-1).reshape(batch, channels, height, width)
        x = (weights.sum(dim=2) * self.xs).sum(dim=-1)
        y = (weights.sum(dim=3) * self.ys).sum(dim=-1)
        return torch.cat([x, y], dim=1)


class ReachNet(nn.Module):
    def __init__(self, keypoints: int = 16) -> None:
        super().__init__()
        self.register_buffer("mean_frames", torch.zeros(len(CAMERAS), 3, IMAGE_SIZE, IMAGE_SIZE))
        self.register_buffer("center", torch.tensor(CENTER), persistent=False)
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 16, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, keypoints, 3, padding=1),
        )  # fmt: skip
        self.keypoints = SpatialSoftArgmax(IMAGE_SIZE // 2, IMAGE_SIZE // 2)
        self.goal_head = nn.Sequential(
            nn.Linear(len(CAMERAS) * 2 * keypoints, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 3)
        )  # fmt: skip
        self.action_head = nn.Sequential(
            nn.Linear(9, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 4), nn.Tanh()
        )  # fmt: skip

    def goal(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, 2, 84, 84, 3) uint8 frames -> (B, 3) the goal's position, normalized (see `normalize`)."""
        batch = frames.shape[0]
        images = frames.permute(0, 1, 4, 2, 3).float() / 255.0 - self.mean_frames  # B, cams, 3, H, W
        images = images.reshape(batch * len(CAMERAS), 3, IMAGE_SIZE, IMAGE_SIZE) * 4.0
        points = self.keypoints(self.encoder(images)).reshape(batch, -1)
        return self.goal_head(points)

    def act(self, goal: torch.Tensor, ee_pos: torch.Tensor) -> torch.Tensor:
        """Normalized goal (B, 3) and the hand's position in metres (B, 3) -> native action (B, 4)."""
        hand = self.normalize(ee_pos)
        return self.action_head(torch.cat([goal, hand, goal - hand], dim=1))

    def normalize(self, position: torch.Tensor) -> torch.Tensor:
        return (position - self.center) * SCALE

    def denormalize(self, position: torch.Tensor) -> torch.Tensor:
        return position / SCALE + self.center


def camera_frames(images: dict[str, np.ndarray]) -> np.ndarray:
    """{camera: (84, 84, 3) uint8} -> (2, 84, 84, 3) in `CAMERAS` order (a writable copy)."""
    return np.stack([np.asarray(images[name], dtype=np.uint8) for name in CAMERAS])
