"""Unit tests of user resources: the manager, tempdir and process kinds."""

from __future__ import annotations

import os
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

from actors.user_resources import ResourceManager, _find_by_token, _owned
from flowmetal.actor_prelude import ProcessHandle, TempDirHandle, process, tempdir

from ..procs import alive, assert_dies


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_spec(port: int) -> dict:
    code = ("import socket,time\ns=socket.socket()\n"
            "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            f"s.bind(('127.0.0.1',{port}))\ns.listen()\ntime.sleep(600)\n")
    return process([sys.executable, "-c", code], port=port).to_json()


def test_open_reopen_close(tmp_path):
    m = ResourceManager(tmp_path)
    port = free_port()
    handles, err = m.open_all("r1.2", {"work": tempdir().to_json(), "srv": server_spec(port)})
    assert err is None
    work, srv = handles["work"], handles["srv"]
    assert isinstance(work, TempDirHandle) and isinstance(srv, ProcessHandle)
    assert Path(work.path).is_dir() and oct(Path(work.path).stat().st_mode & 0o777) == "0o700"
    man = m.read_manifest("r1.2")
    pid = man["resources"]["srv"]["state"]["pid"]
    assert alive(pid)
    # A crash: the directory vanished and the server died. reopen brings both back.
    os.killpg(pid, signal.SIGKILL)
    os.rmdir(work.path)
    assert_dies(pid, "the server outlived SIGKILL")
    assert m.reopen_all("r1.2") is None
    pid2 = m.read_manifest("r1.2")["resources"]["srv"]["state"]["pid"]
    assert pid2 != pid and alive(pid2) and Path(work.path).is_dir()
    # Reopen while all is well: reattaches, same pid.
    assert m.reopen_all("r1.2") is None
    assert m.read_manifest("r1.2")["resources"]["srv"]["state"]["pid"] == pid2
    m.close_all("r1.2")
    assert not Path(work.path).exists()
    assert_dies(pid2, "close_all left the server running")
    assert m.read_manifest("r1.2") is None
    m.close_all("r1.2")   # idempotent


def test_open_failure_names_resource_and_closes_others(tmp_path, monkeypatch):
    # The directories made are recorded, not looked for in /tmp: there another test
    # run (or anything else) may make or remove "flowmetal-work-*" meanwhile.
    made, real_mkdtemp = [], tempfile.mkdtemp

    def mkdtemp(*args, **kw):
        made.append(real_mkdtemp(*args, **kw))
        return made[-1]
    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    m = ResourceManager(tmp_path)
    handles, err = m.open_all("r2", {"work": tempdir().to_json(),
                                     "bad": process(["/nonexistent/server"]).to_json()})
    assert handles is None
    assert err == "resource bad: cannot open process: command not found: /nonexistent/server"
    # The directory opened before the failure was removed again.
    assert len(made) == 1 and not Path(made[0]).exists(), made
    assert m.read_manifest("r2") is None


def test_process_that_never_listens(tmp_path):
    m = ResourceManager(tmp_path)
    spec = process([sys.executable, "-c", "import time; time.sleep(60)"], port=free_port(),
                   ready_timeout=0.5).to_json()
    handles, err = m.open_all("r3", {"srv": spec})
    assert handles is None and "did not listen on port" in err


def test_sweep_closes_ended_flows(tmp_path):
    m = ResourceManager(tmp_path)
    handles, _ = m.open_all("r4", {"work": tempdir().to_json()})
    assert m.sweep(lambda fid: True) == []
    assert m.sweep(lambda fid: False) == ["r4"]
    assert not Path(handles["work"].path).exists()


def test_owned_refuses_foreign_pids():
    assert not _owned(os.getpid(), "no-such-token")
    assert _find_by_token("no-such-token") == []


def test_opened_resources_print_as_starlark_values():
    from flowmetal.actor_prelude import ResourcesOpened, TempDirHandle
    from flowmetal.starlark.values import to_repr
    opened = ResourcesOpened({"work": TempDirHandle("work", "/tmp/w"), "a": "x"})
    assert to_repr(opened) == '<resources a = "x", work = <tempdir /tmp/w>>'
    assert to_repr(ResourcesOpened(None, "no disk")) == "<resources not opened: no disk>"
