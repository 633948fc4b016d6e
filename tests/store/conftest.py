import pytest

from store import Batch, Store


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


@pytest.fixture
def st(home):
    s = Store.open(home, sync=False)
    yield s
    s.close()


def make_flow(st, flow_id="f1", run_id="r1", **kw):
    """A run with one running root flow."""
    b = Batch()
    if st.get_run(run_id) is None:
        b.create_run(run_id, file="main.flow", root_flow=flow_id)
    b.create_flow(flow_id, run_id=run_id, name=kw.pop("name", "main"),
                  state=kw.pop("state", "running"), **kw)
    st.commit(b)
    return flow_id
