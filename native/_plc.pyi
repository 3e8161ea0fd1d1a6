from typing import Any

from numpy.typing import NDArray

# float32, C-contiguous (checked there); out is written
def extend(hist: NDArray[Any], out: NDArray[Any], window: int, min_pitch: int, max_pitch: int,
           first_span: int, widen_span: int, max_periods: int, decay_floor: float) -> int: ...
