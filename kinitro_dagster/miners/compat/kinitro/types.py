"""`kinitro.types`: the one name Kinitro's miner template imports from it (`EncodedImage`)."""

from typing import TypedDict


class EncodedImage(TypedDict):
    """An image on the wire: base64 of the array's raw bytes, its shape and its numpy dtype name.

    Example: `{"data": "AAEC...", "shape": [84, 84, 3], "dtype": "uint8"}`.
    """

    data: str
    shape: list[int]
    dtype: str
