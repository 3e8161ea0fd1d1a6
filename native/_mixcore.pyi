from collections.abc import Sequence
from typing import Any

from numpy.typing import NDArray

# what the C functions take: anything with the buffer protocol (checked there: int16 where
# samples are meant, C-contiguous)
_Buffer = bytes | bytearray | memoryview | NDArray[Any]

def mix(voices: Sequence[_Buffer], tones: Sequence[_Buffer], threshold: int, out: _Buffer,
        n: int) -> list[int]: ...
def lut_encode(table: _Buffer, pcm: _Buffer) -> bytes: ...
def lut_decode(table: _Buffer, payload: _Buffer) -> bytes: ...
def peak(pcm: _Buffer) -> int: ...
