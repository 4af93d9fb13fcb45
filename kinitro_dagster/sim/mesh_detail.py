"""Fewer triangles for the meshes the cameras draw: where a frame's time goes at 84x84.

A MetaWorld frame under llvmpipe is bound by geometry, not pixels: the Sawyer's 14 meshes hold
67k triangles (about 20 a pixel of arm at 84x84), and a frame costs nearly the same at 16x16 as
at 84x84, while one with a tenth of the triangles costs a quarter. The per-call costs around it are
small (making the GL context current ~5 µs, reading the pixels back ~6 µs, updating the scene
~4 µs), so rendering both cameras in one pass would save well under 1 %.

`render_model(model, detail)` is a copy of `model` whose large meshes are simplified (quadric edge
collapse, `fast_simplification`) to `detail` of their triangles, with smooth area-weighted vertex
normals as MuJoCo computes them for these meshes. Only a renderer's GL context is made from the copy:
the scene is still built from the physics model and data, so whatever an env changes in its model
at run time is drawn as before, and physics never sees the simplified meshes. Meshes with texture
coordinates or under `MIN_FACES` triangles are kept whole.

The frames differ from the full meshes' by about what moving the camera a few millimetres does
(the silhouette's and small features' pixels, which point sampling without multisampling flips):
tests/sim/test_mesh_detail.py holds them to `FRAME_TOLERANCE`, and benchmarks/bench_frames.py
prints the figures for every detail it times.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass

import fast_simplification
import mujoco
import numpy as np

MIN_FACES = 1000
"""Meshes with fewer triangles than this are drawn whole: they cost little and are often boxes,
whose flat faces smooth normals would round off."""


@dataclass(frozen=True)
class FrameTolerance:
    """How far a frame drawn with simplified meshes may be from the full meshes' (uint8 RGB)."""

    mean_abs: float  # mean absolute difference over all pixels and channels
    changed_fraction: float  # pixels whose largest channel difference is over `changed_by`
    changed_by: int


SIMPLIFIED_DETAIL = 0.2
"""The detail the tolerance below is stated for (KINITRO_EXECUTOR_RENDER_MESH_DETAIL=0.2)."""

FRAME_TOLERANCE = FrameTolerance(mean_abs=2.0, changed_fraction=0.03, changed_by=32)
"""What `SIMPLIFIED_DETAIL` holds to on MetaWorld's cameras at 84x84 (measured: mean 1.4, 1.5 % of
pixels changed by more than 32; moving the full-mesh camera 2 mm changes 0.75 %). Pixel statistics
are not what a learned policy sees, though: examples/miners/learned_reach, trained on full-mesh
frames, reaches 0 of its goals at 0.2 (tests/miners/test_torch_runtime.py), hence the default 1.0."""


def render_model(model: mujoco.MjModel, detail: float) -> mujoco.MjModel:
    """`model` itself at detail 1; else a copy whose large meshes keep `detail` of their triangles."""
    if not 0 < detail <= 1:
        raise ValueError(f"render mesh detail must be in (0, 1], got {detail}")
    if detail == 1:
        return model
    simplified = copy.copy(model)
    for mesh in range(model.nmesh):
        faces = int(model.mesh_facenum[mesh])
        if faces < MIN_FACES or model.mesh_texcoordnum[mesh] > 0:
            continue
        vertices, triangles, normals = _simplified_mesh(model, mesh, max(MIN_FACES // 2, round(faces * detail)))
        if len(vertices) > model.mesh_vertnum[mesh] or len(normals) > model.mesh_normalnum[mesh]:
            continue  # cannot happen for a simplification; keep the mesh whole rather than overrun
        _write_mesh(simplified, mesh, vertices, triangles, normals)
    return simplified


def _simplified_mesh(model: mujoco.MjModel, mesh: int, target: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    start, count = model.mesh_vertadr[mesh], model.mesh_vertnum[mesh]
    first, faces = model.mesh_faceadr[mesh], model.mesh_facenum[mesh]
    vertices = model.mesh_vert[start : start + count]
    triangles = model.mesh_face[first : first + faces]
    # By content: every env of a task in a worker draws the same meshes, simplified once.
    key = (hashlib.blake2b(vertices.tobytes() + triangles.tobytes(), digest_size=16).digest(), target)
    if key not in _SIMPLIFIED:
        points, kept = fast_simplification.simplify(vertices.astype(np.float64), triangles.astype(np.int64),
                                                    target_count=target)  # fmt: skip
        _SIMPLIFIED[key] = (points, kept, _vertex_normals(points, kept))
    return _SIMPLIFIED[key]


_SIMPLIFIED: dict[tuple[bytes, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def _vertex_normals(points: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals (the sum of the adjacent faces' cross products), unit length."""
    corners = points[faces]
    face_normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    normals = np.zeros_like(points)
    for corner in range(3):
        np.add.at(normals, faces[:, corner], face_normals)
    lengths = np.linalg.norm(normals, axis=1, keepdims=True)
    return normals / np.where(lengths > 0, lengths, 1.0)


def _write_mesh(model: mujoco.MjModel, mesh: int, vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray) -> None:
    """Put the simplified mesh in the first slots of the mesh's own ranges (the arrays cannot shrink)."""
    start, normal_start, first = model.mesh_vertadr[mesh], model.mesh_normaladr[mesh], model.mesh_faceadr[mesh]
    model.mesh_vert[start : start + len(vertices)] = vertices
    model.mesh_vertnum[mesh] = len(vertices)
    model.mesh_normal[normal_start : normal_start + len(normals)] = normals
    model.mesh_normalnum[mesh] = len(normals)
    model.mesh_face[first : first + len(faces)] = faces
    model.mesh_facenormal[first : first + len(faces)] = faces  # one normal per vertex, as in the full mesh
    model.mesh_facenum[mesh] = len(faces)
