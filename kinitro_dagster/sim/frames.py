"""A SimEnv wrapper that saves the camera frames a policy sees (`kinitro env test --save-images`)."""

from __future__ import annotations

from pathlib import Path


class FrameSavingEnv:
    """Wraps a SimEnv and writes every camera frame it returns as DIR/episode_NNN/<camera>_SSS.png."""

    def __init__(self, env, directory: Path) -> None:
        self.env, self.env_id, self.config = env, env.env_id, env.config
        self.directory = directory
        self.episode_dir = directory
        self.episodes = 0
        self.steps = 0

    def reset(self, seed: int) -> dict:
        self.episode_dir = self.directory / f"episode_{self.episodes:03d}"
        self.episode_dir.mkdir(parents=True, exist_ok=True)
        self.episodes += 1
        self.steps = 0
        observation = self.env.reset(seed)
        self._save(observation)
        return observation

    def step(self, action):
        result = self.env.step(action)
        self.steps += 1
        self._save(result.observation)
        return result

    def task_config(self) -> dict:
        return self.env.task_config()

    def close(self) -> None:
        self.env.close()

    def _save(self, observation: dict) -> None:
        import base64

        import numpy as np
        from PIL import Image

        for camera, image in observation["rgb"].items():
            pixels = np.frombuffer(base64.b64decode(image["data"]), dtype=image["dtype"]).reshape(image["shape"])
            Image.fromarray(pixels).save(self.episode_dir / f"{camera}_{self.steps:03d}.png")
