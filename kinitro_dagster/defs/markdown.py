"""Markdown tables for asset metadata: what an analyst sees next to each materialization."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def md_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def md_image(png: bytes, alt: str) -> str:
    """A PNG inlined in Markdown metadata (the Dagster UI renders it in place)."""
    import base64

    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"
