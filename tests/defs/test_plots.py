"""The analysts' plots: real PNGs of the front and of per-miner history, drawn from plain arrays."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from kinitro_dagster.defs.markdown import md_image
from kinitro_dagster.defs.plots import front_plot, history_plot

ENVS = ["metaworld/reach-v3", "metaworld/push-v3", "metaworld/pick-place-v3"]


def _image(png: bytes) -> np.ndarray:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGB"))


def test_the_front_plot_draws_front_miners_in_colour_and_the_rest_in_grey():
    success = np.array([[1.0, 1.0, 0.9], [1.0, 0.2, 0.0], [0.1, 0.1, 0.0]])
    pixels = _image(front_plot(ENVS, [0, 1, 2], success, np.array([True, False, False])))
    assert pixels.shape[0] >= 300 and pixels.shape[1] >= 400
    saturated = (pixels.max(axis=2).astype(int) - pixels.min(axis=2)) > 80
    assert saturated.sum() > 100  # the front's coloured line

    nobody = _image(front_plot(ENVS, [0, 1, 2], success, np.array([False, False, False])))
    assert ((nobody.max(axis=2).astype(int) - nobody.min(axis=2)) > 80).sum() < saturated.sum()


def test_the_history_plot_has_a_panel_per_env_and_skips_miners_not_asked_for():
    history = [(block, uid, env, (block / 100 + uid) % 1.0) for block in (100, 200, 300) for uid in (0, 1, 2)
               for env in ENVS]
    png = history_plot(history, [0, 1])
    assert _image(png).shape[1] >= 3 * 300  # three panels side by side
    assert md_image(png, "history").startswith("![history](data:image/png;base64,iVBORw0KGgo")
    assert _image(history_plot([], [0])).size > 0  # no scored cycle yet: an empty figure, not an error
