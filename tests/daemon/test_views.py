"""The run views (`status`, `history`, `inspect`) show only what is on disk."""

from store import Batch, Store

from ..spies import count_syncs


def test_run_views_sync_what_they_show(tmp_path, monkeypatch) -> None:
    # A quiet commit (an inline call's) is visible before it is durable; a view
    # about to show it makes it durable first.
    from flowmetal.daemon.views import history_view, inspect_view, status_view
    with Store.open(tmp_path / "home", sync=True) as st:
        st.commit(Batch().create_run("r1", file="x.flow", root_flow="r1")
                  .create_flow("r1", run_id="r1", name="main", state="running"))
        st.commit_group([Batch().call_ended(
            "r1", 1, "r1.1", run_id="r1", name="one", state="ok",
            result={"ok": True, "repr": "Ok(1)"}, error=None, value={"ok": True, "v": None},
            request={"kind": "call", "children": ["r1.1"]})], durable=False)
        calls = count_syncs(monkeypatch)
        for view in (status_view, history_view, inspect_view):
            n = len(calls)
            assert view(st, "r1") is not None
            assert len(calls) == n + 1, view.__name__
        assert [f["id"] for f in status_view(st, "r1")["flows"]] == ["r1", "r1.1"]
