"""The one rule for a numeric parameter's range, shared by every node's start-up and run-time checks."""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Bound:
    """An inclusive, finite range for a numeric parameter (`lo_open`: lo itself excluded)."""
    lo: float
    hi: float
    lo_open: bool = False

    def holds(self, value: object) -> bool:
        """Whether `value` is a finite number (not a bool) inside the range."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        v = float(value)
        return math.isfinite(v) and (v > self.lo if self.lo_open else v >= self.lo) and v <= self.hi

    def describe(self) -> str:
        return f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}]"

    def check(self, name: str, value: object) -> float:
        """`value` as a float, or ValueError saying which range it must lie in."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name} must be a number {self.describe()}, got {type(value).__name__}")
        if not self.holds(value):
            raise ValueError(f"{name} must be {self.describe()}, got {value!r}")
        return float(value)
