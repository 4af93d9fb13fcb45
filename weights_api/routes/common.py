"""Path limits and documented error responses shared by the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import HTTPException, Path, Request
from fastapi.responses import Response

from kinitro_dagster.warehouse import Warehouse
from kinitro_dagster.warehouse.records import CycleRecord
from weights_api.cache import SerializedBody, etag_matches
from weights_api.models import ErrorResponse

NOT_FOUND = {404: {"model": ErrorResponse, "description": "Nothing recorded for this yet."}}
UNAVAILABLE = {503: {"model": ErrorResponse, "description": "The warehouse cannot be read."}}

EXAMPLE_BLOCK = 12300  # the guide's example block; the schema's examples use it
MAX_BLOCK = 2**63 - 1  # blocks are stored as BIGINT; SQLite cannot even bind a larger integer

CycleIdParam = Annotated[
    str,
    Path(
        pattern=r"^[0-9]{1,19}$",
        description="Cycle key (zero-padded block, e.g. 0000012300) or the block.",
        examples=[f"{EXAMPLE_BLOCK:010d}", str(EXAMPLE_BLOCK)],
    ),
]


def cycle_by_id(store: Warehouse, cycle_id: str) -> CycleRecord:
    """The cycle with key `cycle_id`, else the one that opened at that block; 404 when neither."""
    cycle = store.get_cycle(cycle_id)
    if cycle is None and int(cycle_id) <= MAX_BLOCK:  # 19 digits can exceed a BIGINT: no such block
        cycle = store.cycle_at_block(int(cycle_id))
    if cycle is None:
        raise HTTPException(404, f"no evaluation cycle {cycle_id}; recent ones are listed by /v1/status")
    return cycle


def conditional_response(request: Request, entry: SerializedBody, cache_control: str | None = None) -> Response:
    """`entry`'s body, or a bodiless 304 when the request's If-None-Match matches its ETag; both
    carry the ETag (and `cache_control`, if given)."""
    headers = {"ETag": entry.etag}
    if cache_control is not None:
        headers["Cache-Control"] = cache_control
    if etag_matches(request.headers.get("if-none-match"), entry.etag):
        return Response(status_code=304, headers=headers)
    return Response(content=entry.body, media_type="application/json", headers=headers)
