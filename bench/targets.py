"""A figure's goal and its check: shared by the report's sections."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

OPS: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le, "<": operator.lt}


def lookup(results: dict[str, Any], key: str) -> float:
    """The value at a dotted key ("e2e_latency_ms.50.p99")."""
    value: Any = results
    for part in key.split("."):
        value = value[part]
    return float(value)


@dataclass(frozen=True)
class Target:
    """A figure's goal: `key` (dotted for nested ones) must stand in relation `op` to `limit`."""

    key: str
    op: str
    limit: float
    unit: str = ""

    def check(self, results: dict[str, Any]) -> dict[str, Any]:
        value = lookup(results, self.key)
        return {"key": self.key, "op": self.op, "limit": self.limit, "value": value, "passed": self.passed(value)}

    def passed(self, value: float) -> bool:
        return OPS[self.op](value, self.limit)

    def text(self) -> str:
        limit = f"{self.limit:,.0f}" if self.limit >= 10 or float(self.limit).is_integer() else f"{self.limit:g}"
        return f"{self.op} {limit}{self.unit}"
