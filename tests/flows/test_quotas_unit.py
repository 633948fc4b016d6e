"""Unit tests of `flowmetal.quotas`."""

from __future__ import annotations

import pickle

import pytest

from flowmetal.quotas import (Limits, QuotaBook, QuotaConfig, QuotaConfigError, QuotaExceeded,
                              QuotaInfo, UsageLedger, current_username)

CONFIG = """
[default]
concurrent_flows = 3
output_bytes_per_run = "1k"

[users.alice]
concurrent_flows = 1
steps_per_flow = 1000
"""


def test_parse_and_lookup():
    c = QuotaConfig.parse(CONFIG)
    assert c.limits_for("bob") == Limits(3, None, 1024)
    assert c.limits_for("alice") == Limits(1, 1000, 1024)


@pytest.mark.parametrize("text, msg", [
    ("[default]\nconcurrent = 1\n", "unknown limit 'concurrent'"),
    ("[default]\nconcurrent_flows = -1\n", "must not be negative"),
    ("[default]\nconcurrent_flows = 'x'\n", "whole number"),
    ("[defaults]\n", "unknown section"),
    ("[default\n", "quotas.toml"),
])
def test_bad_config(text, msg):
    with pytest.raises(QuotaConfigError, match=msg):
        QuotaConfig.parse(text)


def test_ledger_concurrency_and_output():
    led = UsageLedger(QuotaConfig.parse(CONFIG))
    led.admit("alice", "r1")
    led.admit("alice", "r1")   # idempotent
    with pytest.raises(QuotaExceeded, match=r"quota exceeded: concurrent flows \(limit 1"):
        led.admit("alice", "r2")
    led.admit("bob", "r3")     # other users are unaffected
    led.release("r1")
    led.admit("alice", "r2")
    led.add_output("bob", "r3", 1000)
    with pytest.raises(QuotaExceeded, match="output bytes per run"):
        led.add_output("bob", "r3", 100)
    assert led.steps_for("alice", None) == 1000
    assert led.steps_for("alice", 10) == 10
    assert led.steps_for("bob", 77) == 77


def test_book_rereads_and_keeps_last_good(tmp_path):
    book = QuotaBook(tmp_path)
    book.RECHECK = 0   # look at the file every time
    assert book.limits_for("x") == Limits()
    (tmp_path / "quotas.toml").write_text(CONFIG)
    assert book.limits_for("alice").concurrent_flows == 1
    (tmp_path / "quotas.toml").write_text("[default\nbroken")
    assert book.limits_for("alice").concurrent_flows == 1
    assert book.error and "quotas.toml" in book.error


def test_quota_info_value():
    q = QuotaInfo(current_username(), Limits(2, None, None))
    assert q.starlark_getattr("username") == current_username()
    assert q.starlark_getattr("concurrent_flows") == 2
    assert pickle.loads(pickle.dumps(q)) == q
