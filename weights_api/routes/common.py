"""Path limits and documented error responses shared by the routes."""

from __future__ import annotations

from weights_api.models import ErrorResponse

NOT_FOUND = {404: {"model": ErrorResponse, "description": "Nothing recorded for this yet."}}
UNAVAILABLE = {503: {"model": ErrorResponse, "description": "The warehouse cannot be read."}}

EXAMPLE_BLOCK = 12300  # the guide's example block; the schema's examples use it
MAX_BLOCK = 2**63 - 1  # blocks are stored as BIGINT; SQLite cannot even bind a larger integer
