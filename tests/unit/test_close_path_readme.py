"""service/README.md names a close event's hops and its counting rule's exclusions as files that
exist, none both (the path itself is traced by tests/integration/test_close_path.py)."""

from __future__ import annotations

from tests.fixtures.close_path import ROOT, readme_claim


def test_the_readme_names_existing_files_and_a_rule() -> None:
    hops, excluded = readme_claim()
    assert len(hops) >= 5 and len(excluded) >= 5, (hops, excluded)
    assert not hops & excluded, f"both a hop and excluded: {hops & excluded}"
    missing = sorted(p for p in hops | excluded if not (ROOT / p).is_file())
    assert not missing, f"service/README.md names files that do not exist: {missing}"
