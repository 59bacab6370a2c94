"""The core stays pure: none of its modules imports I/O, clocks or shells."""

import ast
import pathlib

import service.core

FORBIDDEN = {"asyncio", "simpy", "redis", "socket", "time", "http", "urllib", "aiohttp", "httpx",
             "websockets", "neonize", "threading", "subprocess", "os", "datetime", "selectors"}
PROJECT_SHELLS = {"sim", "chaos"}
CORE_DIR = pathlib.Path(service.core.__file__).parent


def imported_roots(path: pathlib.Path) -> set[tuple[str, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {(alias.name, alias.name.split(".")[0]) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add((node.module, node.module.split(".")[0]))
    return found


def test_core_modules_import_no_io_clock_or_shell():
    modules = sorted(CORE_DIR.glob("*.py"))
    assert len(modules) >= 6
    offences = []
    for path in modules:
        for full, root in imported_roots(path):
            shell = root == "service" and not full.startswith("service.core")
            if root in FORBIDDEN or root in PROJECT_SHELLS or shell:
                offences.append(f"{path.name} imports {full}")
    assert offences == []


def test_the_checker_itself_catches_an_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import time\nfrom service.store import StatusStore\n")
    assert {root for _, root in imported_roots(bad)} == {"time", "service"}
