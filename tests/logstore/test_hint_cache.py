"""Tail hints parsed from bytes this process packed or parsed before are the same objects, and
exactly what parsing the bytes anew gives (`hint._KNOWN`): the cache never changes an answer."""

from __future__ import annotations

from logstore import hint as hint_mod
from logstore.hint import Hint, pack_hint, parse_hint


def _fresh(raw: bytes) -> Hint | None:
    """What parsing `raw` gives without the cache."""
    saved = dict(hint_mod._KNOWN)
    hint_mod._KNOWN.clear()
    try:
        return parse_hint(raw)
    finally:
        hint_mod._KNOWN.clear()
        hint_mod._KNOWN.update(saved)


def test_a_packed_hint_parses_back_as_the_same_object_and_equal_to_a_fresh_parse():
    h = Hint(100, 4096, 150, 123456, synced=True)
    raw = pack_hint(h)
    assert parse_hint(raw) is h
    assert parse_hint(raw + bytes(4)) is h  # a slot read with its padding
    assert _fresh(raw) == h and _fresh(raw) is not h
    damaged = raw[:-1] + bytes([raw[-1] ^ 1])
    assert parse_hint(damaged) is None and _fresh(damaged) is None


def test_hints_whose_bytes_do_not_say_all_of_them_are_not_cached():
    short_boot = Hint(1, 2, 3, 4, boot=b"abc")
    raw = pack_hint(short_boot)
    parsed = parse_hint(raw)
    assert parsed is not short_boot and parsed == _fresh(raw)
    assert parsed is not None and parsed.boot == b"abc" + bytes(13)
    truthy = Hint(1, 2, 3, 4, synced=1)  # type: ignore[arg-type]
    assert parse_hint(pack_hint(truthy)) is not truthy


def test_a_cached_hint_is_trusted_by_the_boot_id_of_the_moment(monkeypatch):
    h = Hint(0, 10, 1, 5)  # unsynced, this boot
    raw = pack_hint(h)
    assert parse_hint(raw) is h and h.trusted
    monkeypatch.setattr(hint_mod, "BOOT_ID", b"\x01" * 16)  # as after a reboot
    assert not parse_hint(raw).trusted  # type: ignore[union-attr]


def test_the_cache_stays_small():
    for i in range(3 * hint_mod._KNOWN_MAX):
        parse_hint(pack_hint(Hint(i, i, i, i)))
    assert len(hint_mod._KNOWN) <= hint_mod._KNOWN_MAX
