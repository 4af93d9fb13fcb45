"""The trivial policy (../trivial), but its /health declares that it reads no camera.

The evaluator then renders nothing for it (protocol: "Observation negotiation"): what a
proprio-only policy costs next to one that reads every camera.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

TRIVIAL = Path(__file__).resolve().parents[1] / "trivial"
sys.path.insert(0, str(TRIVIAL))  # its policy and rl_interface modules
_spec = importlib.util.spec_from_file_location("trivial_server", TRIVIAL / "server.py")
trivial = sys.modules["trivial_server"] = importlib.util.module_from_spec(_spec)  # FastAPI resolves its types there
_spec.loader.exec_module(trivial)

app = trivial.app
app.router.routes = [route for route in app.router.routes if getattr(route, "path", None) != "/health"]


@app.get("/health")
async def health() -> dict:
    return {"status": "healthy", "model_loaded": True, "uptime_seconds": time.time() - trivial._started,
            "observation": {"cameras": [], "depth": False}}  # fmt: skip
