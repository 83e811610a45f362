"""bench/ is a folder of scripts, not a package: its modules import each other by name (``import latency``), so
the tests put the folder on the path the way ``python bench/run.py`` does."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[3] / "bench"
if str(BENCH) not in sys.path:
    sys.path.append(str(BENCH))  # last: a name of bench/ never shadows an installed module
