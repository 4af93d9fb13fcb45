"""The protocol with no framework at all: uvicorn + a bare ASGI function, a fixed zero action.

Not a miner template (miners use FastAPI): a diagnostic that separates uvicorn's and the loopback's
share of a round trip from FastAPI's and pydantic's, for benchmarks/bench_rollout.py.
"""

from __future__ import annotations

import json
import time

_ACTION = b'{"action":{"continuous":{"ee_twist":[0.0,0.0,0.0,0.0,0.0,0.0],"gripper":[0.0]},"discrete":{},"extra":{}}}'
_STARTED = time.time()


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    more = True
    while more:  # drain the request body
        more = (await receive()).get("more_body", False)
    if scope["path"] == "/health":
        body = json.dumps({"status": "healthy", "model_loaded": True, "uptime_seconds": time.time() - _STARTED})
        payload = body.encode()
    elif scope["path"] == "/reset":
        payload = b'{"status":"ok","episode_id":"bare"}'
    else:
        payload = _ACTION
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
