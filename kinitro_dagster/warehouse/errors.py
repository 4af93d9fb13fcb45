"""How a database error is quoted to an operator: its first line.

No imports: the CLI, the store and the weights API all use it, and importing it costs nothing.
"""

from __future__ import annotations


def first_error_line(exc: BaseException) -> str:
    """The first line of `exc`'s message, or "" when it has none. For an error SQLAlchemy wrapped,
    the driver's own message (`exc.orig`): SQLAlchemy's adds the statement and a help link."""
    return (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [""])[0]
