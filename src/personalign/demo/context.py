"""What the demo's steps share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console


@dataclass
class DemoContext:
    """Where to write, how big to go, and what earlier steps produced (``state``, read by later steps)."""

    out: Path
    quick: bool = False
    seed: int = 0
    console: Console = field(default_factory=Console)
    state: dict[str, Any] = field(default_factory=dict)
