"""Key layouts: the single-Redis names are the gateway contract (kept exactly); the cluster
layout puts every key one script touches in one hash slot, and spreads shards over slots."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from service import keys
from service.keys import SINGLE, KeyLayout

ids = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)


def test_the_single_layout_is_the_contract_names() -> None:
    assert [SINGLE.status_key("s1"), SINGLE.session_key("s1"), SINGLE.lease_key("s1"), SINGLE.fence_key("s1"),
            SINGLE.seq_key("s1"), SINGLE.update_id_key("s1", "u1"), SINGLE.outbox_key(), SINGLE.dead_key()] == [
        "rl:status:s1", "rl:session:s1", "rl:lease:s1", "rl:fence:s1", "rl:seq:s1", "rl:outbox:id:u1",
        "rl:outbox", "rl:outbox:dead"]
    assert SINGLE.status_key("s1") == keys.status_key("s1") and SINGLE.outbox_key() == keys.OUTBOX_KEY
    assert list(SINGLE.outbox_shards()) == [0] and SINGLE.shard_of("anything") == 0


def test_the_cluster_layout_tags_each_key_with_the_session_shard() -> None:
    layout = KeyLayout(16)
    shard = layout.shard_of("s1")
    tag = f"{{s{shard:02d}}}"
    assert layout.status_key("s1") == f"rl:{tag}:status:s1"
    assert layout.outbox_of("s1") == f"rl:{tag}:outbox" and layout.dead_key(shard) == f"rl:{tag}:outbox:dead"
    assert layout.update_id_key("s1", "u1") == f"rl:{tag}:outbox:id:u1"


@given(session_id=ids, update_id=st.text(min_size=1, max_size=40), shards=st.integers(1, 1024))
def test_every_key_of_a_session_shares_one_slot(session_id: str, update_id: str, shards: int) -> None:
    """What one fenced write or lease script touches: one slot, or Cluster refuses it."""
    layout = KeyLayout(shards)
    touched = [layout.status_key(session_id), layout.session_key(session_id), layout.lease_key(session_id),
               layout.fence_key(session_id), layout.seq_key(session_id), layout.outbox_of(session_id),
               layout.outbox_of(session_id) + ":malformed", layout.update_id_key(session_id, update_id),
               layout.dead_key(layout.shard_of(session_id))]
    assert len({key_slot(k.encode("utf-8", "surrogatepass")) for k in touched}) == 1


@given(session_id=ids, update_id=st.text(min_size=1, max_size=40), shards=st.integers(0, 1024))
def test_the_write_keys_are_the_named_keys_in_script_order(session_id: str, update_id: str, shards: int) -> None:
    layout = KeyLayout(shards)
    assert layout.write_keys(session_id, update_id) == (
        layout.fence_key(session_id), layout.status_key(session_id), layout.session_key(session_id),
        layout.outbox_of(session_id), layout.seq_key(session_id), layout.update_id_key(session_id, update_id),
        layout.outbox_of(session_id) + ":malformed")


def test_shards_are_stable_and_spread_over_slots() -> None:
    layout = KeyLayout(16)
    assert layout.shard_of("session-42") == KeyLayout(16).shard_of("session-42")  # no per-process salt
    slots = {key_slot(layout.outbox_key(s).encode()) for s in layout.outbox_shards()}
    assert len(slots) == 16
    # a 3-primary cluster splits 16384 slots in thirds: every primary holds some shards
    assert {slot * 3 // 16384 for slot in slots} == {0, 1, 2}
    counts = [0] * 16
    for i in range(16_000):
        counts[layout.shard_of(f"s{i}")] += 1
    assert min(counts) > 800 and max(counts) < 1200


@pytest.mark.parametrize("shards", [-1, 1025, True, 1.5, "4"])
def test_bad_shard_counts_are_named(shards: object) -> None:
    with pytest.raises(ValueError, match="shards"):
        KeyLayout(shards)  # type: ignore[arg-type]
