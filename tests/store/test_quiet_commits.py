"""Quiet commits: committed without the meta page's sync; made durable by the next
commit, by `make_durable`, or by a reader of the output before it shows it."""

import pytest

from store import Batch, Store

from ..spies import count_syncs
from .conftest import make_flow


@pytest.fixture
def synced(home, monkeypatch):
    """A durable store whose fsyncs of the data file (`Env.sync_file`) are counted."""
    calls = count_syncs(monkeypatch)
    s = Store.open(home, sync=True)
    yield s, calls
    s.close()


def test_the_environment_leaves_the_meta_page_to_make_durable(synced):
    st, _ = synced
    flags = st._env.env.flags()
    assert flags["sync"] is True and flags["metasync"] is False


def test_a_durable_commit_syncs_its_meta_page_and_a_quiet_one_does_not(synced):
    st, calls = synced
    make_flow(st)                       # durable (Store.commit)
    assert len(calls) == 1
    env = st._env
    assert env._synced == env._commits
    st.commit_group([Batch().inbox_append("f1", 1)], durable=False)
    assert len(calls) == 1              # no sync of its own
    assert env._synced == env._commits - 1
    assert st.inbox_count("f1") == 1    # and yet visible at once
    st.commit_group([Batch().inbox_append("f1", 2)], durable=False)
    # The second commit's data sync took the first one's meta page along.
    assert len(calls) == 1 and env._synced == env._commits - 1
    env.make_durable()
    assert len(calls) == 2 and env._synced == env._commits
    env.make_durable()                  # nothing left to sync
    assert len(calls) == 2
    st.make_durable()                   # a reader's: whatever any process committed
    assert len(calls) == 3
    st.commit_group([Batch().inbox_append("f1", 3)], durable=False)
    st.commit(Batch().inbox_append("f1", 4))
    assert len(calls) == 4 and env._synced == env._commits


def test_an_unsynced_store_never_syncs(home):
    with Store.open(home, sync=False) as st:
        env = st._env
        real, env.env = env.env, _CountingSync(env.env)
        try:
            make_flow(st)
            st.commit_group([Batch().inbox_append("f1", 1)], durable=False)
            st.make_durable()
            assert env.env.calls == 0
        finally:
            env.env = real


def test_reading_output_to_show_it_makes_it_durable(synced):
    st, calls = synced
    make_flow(st)
    n = len(calls)
    assert st.read_output("r1") == []
    assert len(calls) == n              # nothing read, nothing to sync
    st.commit_group([Batch().append_output("r1", "hello\n", flow_id="f1")], durable=False)
    assert len(calls) == n
    [chunk] = st.read_output("r1")
    assert chunk.text == "hello\n" and len(calls) == n + 1


class _CountingSync:
    """The LMDB environment, its fsyncs counted."""

    def __init__(self, env):
        self._env = env
        self.calls = 0

    def sync(self, force=False):
        self.calls += 1
        return self._env.sync(force)

    def __getattr__(self, name):
        return getattr(self._env, name)


class _FailingSync:
    """The LMDB environment, but its fsync fails (a disk error)."""

    def __init__(self, env):
        self._env = env

    def sync(self, force=False):
        import lmdb
        raise lmdb.Error("mdb_env_sync: No space left on device")

    def __getattr__(self, name):
        return getattr(self._env, name)


def test_a_failed_sync_breaks_the_store_and_applies_nothing_twice(home):
    from store import StoreError, StoreFullError
    st = Store.open(home, sync=True)
    make_flow(st)
    env = st._env
    real, env.env = env.env, _FailingSync(env.env)
    try:
        ps = st.commit_group([Batch().inbox_append("f1", "a"), Batch().inbox_append("f1", "b")])
    finally:
        env.env = real
    # Committed, but not known to be on disk: each caller hears of it, and the group
    # is not split and applied again batch by batch (as after a full disk).
    errors = [p.exception() for p in ps]
    assert all(isinstance(e, StoreError) and not isinstance(e, StoreFullError)
               for e in errors), errors
    assert "could not be synced" in str(errors[0])
    with pytest.raises(StoreError, match="close and reopen"):
        st.inbox_count("f1")
    with pytest.raises(StoreError, match="close and reopen"):
        st.commit(Batch().inbox_append("f1", "c"))
    st.close()
    with Store.open(home, sync=True) as st:
        assert st.inbox_count("f1") == 2
