"""Key encoding: ids validated once, cached, the cache bounded."""

import pytest

from store import StoreError
from store import keys as K


def test_enc_id_checks_once_caches_and_stays_bounded(monkeypatch):
    monkeypatch.setattr(K, "_ENCODED", {})
    monkeypatch.setattr(K, "_ENCODED_MAX", 3)
    assert K.enc_id("r1.1") == b"r1.1" and "r1.1" in K._ENCODED
    assert K.enc_id("r1.1") is K._ENCODED["r1.1"]
    for bad in ("", "a\x00b", "x" * 300, None, ["r1"]):
        with pytest.raises(StoreError):
            K.enc_id(bad)
    for i in range(5):
        K.enc_id(f"r{i}")
    assert len(K._ENCODED) <= 3 and "r4" in K._ENCODED   # the recent ones
