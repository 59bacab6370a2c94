"""Every module of `service/runtime/` stays readable in one sitting: at most 300 lines (a
module that grows past it holds two ideas; split it by responsibility)."""

from __future__ import annotations

from pathlib import Path

RUNTIME = Path(__file__).resolve().parents[2] / "service" / "runtime"
MAX_LINES = 300


def test_no_runtime_module_is_over_300_lines() -> None:
    sizes = {path.name: len(path.read_text(encoding="utf-8").splitlines()) for path in RUNTIME.glob("*.py")}
    assert len(sizes) >= 10, f"found only {sorted(sizes)} in {RUNTIME}: has the package moved?"
    over = {name: lines for name, lines in sizes.items() if lines > MAX_LINES}
    assert not over, f"service/runtime modules over {MAX_LINES} lines (split them by responsibility): {over}"
