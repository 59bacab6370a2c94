"""tests/README.md's map from modules to their tests names only paths that exist, and every
package of the project has a section in it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAP = ROOT / "tests" / "README.md"
PACKAGES = ("service/core", "service/runtime", "service/transports", "chaos", "sim")


def named_paths(text: str) -> list[str]:
    """Every backticked repository path in the map (`service/...`, `chaos/...`, `sim/...`, `tests/...`)."""
    return [p for p in re.findall(r"`([a-z_]+/[A-Za-z0-9_./]*)`", text)
            if p.split("/")[0] in {"service", "chaos", "sim", "tests"}]


def test_every_path_in_the_map_exists():
    paths = named_paths(MAP.read_text(encoding="utf-8"))
    assert len(paths) > 100, "the map names almost nothing: has its format changed?"
    missing = sorted({p for p in paths if not (ROOT / p).exists()})
    assert not missing, f"tests/README.md names paths that do not exist (moved or renamed?): {missing}"


def test_every_package_has_a_section():
    headings = re.findall(r"^### `([^`]+)`", MAP.read_text(encoding="utf-8"), flags=re.M)
    assert set(PACKAGES) <= {h.rstrip("/") for h in headings}


def test_a_stale_path_is_reported():
    assert named_paths("| `service/gone.py` | `tests/unit/test_gone.py` |") == ["service/gone.py",
                                                                              "tests/unit/test_gone.py"]
