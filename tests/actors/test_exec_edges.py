"""Edge cases of `fctx.actions.exec`: background children holding the output open,
a stdin the command never reads, a bad working directory, NUL bytes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from actors import Runtime, result_of
from store import Store

from ..procs import assert_dies, wait_for, words_in

FLOWS = '''
def _bg_timeout(fctx):
    return fctx.actions.exec(["sh", "-c", "sleep 20 & echo $! > " + fctx.args.pidfile +
                              "; echo started"], timeout = 2).stdout

def _bg_no_timeout(fctx):
    r = fctx.actions.exec(["sh", "-c", "sleep 20 & echo $! > " + fctx.args.pidfile +
                           "; echo started; exit 3"])
    return [r.exit_code, r.stdout, r.stderr]

def _bg_short(fctx):
    r = fctx.actions.exec(["sh", "-c", "(sleep 0.3; echo late) & echo early"])
    return r.stdout

def _unread_input(fctx):
    return fctx.actions.exec(["sleep", "20"], input = "x" * 4194304, timeout = 2).stdout

def _cwd(fctx):
    return fctx.actions.exec(["pwd"], cwd = fctx.args.cwd).stdout

def _nul_arg(fctx):
    return fctx.actions.exec(["echo", "a\\x00b"]).stdout

def _nul_env(fctx):
    return fctx.actions.exec(["true"], env = {"A": "x\\x00y"}).stdout

def _nul_cwd(fctx):
    return fctx.actions.exec(["true"], cwd = "/tm\\x00p").stdout

bg_timeout = flow(implementation = _bg_timeout, args = {"pidfile": args.string()})
bg_no_timeout = flow(implementation = _bg_no_timeout, args = {"pidfile": args.string()})
bg_short = flow(implementation = _bg_short)
unread_input = flow(implementation = _unread_input)
cwd = flow(implementation = _cwd, args = {"cwd": args.string()})
nul_arg = flow(implementation = _nul_arg)
nul_env = flow(implementation = _nul_env)
nul_cwd = flow(implementation = _nul_cwd)

def _timed(fctx):
    return fctx.actions.exec(["sh", "-c", "echo ok"], timeout = fctx.args.t).stdout

timed = flow(implementation = _timed, args = {"t": args.float()})
'''


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    path = tmp_path / "edges.flow"
    path.write_text(FLOWS)
    return path


def _run(store: Store, path: Path, flow: str, args: dict | None = None):
    """Run `flow` to its end; its Result, and how long it took (s)."""
    start = time.monotonic()
    with Runtime(store) as rt:
        rid = rt.create_run(str(path), path.read_text(), flow=flow, args=args)
        w = rt.wait_run(rid, 60)
        assert w.done.is_set(), "run did not finish in time"
    return result_of(w), time.monotonic() - start


def test_timeout_covers_a_background_child_holding_the_output(
        store: Store, flows: Path, tmp_path: Path) -> None:
    # The shell exits at once; its `sleep 20` keeps stdout open. The buggy code waited
    # for it (20 s) and returned Ok.
    pidfile = tmp_path / "pid"
    result, took = _run(store, flows, "bg_timeout", {"pidfile": str(pidfile)})
    assert not result.ok
    assert "exec: sh timed out after 2 s" in result.error
    assert took < 15
    assert_dies(int(pidfile.read_text()), "the background child outlived the timeout")


def test_without_timeout_a_background_child_is_killed_after_the_command_exits(
        store: Store, flows: Path, tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    result, took = _run(store, flows, "bg_no_timeout", {"pidfile": str(pidfile)})
    assert result.ok, result
    code, stdout, stderr = result.value
    assert (code, stdout) == (3, "started\n")   # the main process's outcome
    assert "output still held open" in stderr
    assert took < 15
    assert_dies(int(pidfile.read_text()), "the background child outlived the command")


def test_a_background_child_that_ends_soon_is_read_to_the_end(store: Store,
                                                              flows: Path) -> None:
    result, _ = _run(store, flows, "bg_short")
    assert result.ok, result
    assert result.value == "early\nlate\n"


def test_timeout_covers_feeding_input_the_command_never_reads(store: Store,
                                                             flows: Path) -> None:
    # 4 MiB do not fit in the pipe; the buggy code blocked writing them until
    # `sleep 20` exited, and the timeout never started.
    result, took = _run(store, flows, "unread_input")
    assert not result.ok
    assert "exec: sleep timed out after 2 s" in result.error
    assert took < 15


def test_a_missing_working_directory_is_not_a_missing_command(store: Store, flows: Path,
                                                              tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent"
    result, _ = _run(store, flows, "cwd", {"cwd": str(missing)})
    assert not result.ok
    assert f"exec: working directory does not exist: {missing}" in result.error
    assert "command not found" not in result.error


def test_a_file_as_working_directory(store: Store, flows: Path, tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("")
    result, _ = _run(store, flows, "cwd", {"cwd": str(file)})
    assert not result.ok
    assert f"exec: working directory is not a directory: {file}" in result.error


def test_a_good_working_directory_still_works(store: Store, flows: Path,
                                              tmp_path: Path) -> None:
    result, _ = _run(store, flows, "cwd", {"cwd": str(tmp_path)})
    assert result.ok, result
    assert result.value == f"{tmp_path}\n"


@pytest.mark.parametrize("flow, message", [
    ("nul_arg", "exec: argument 2 contains a NUL byte"),
    ("nul_env", "exec: environment variable A contains a NUL byte"),
    ("nul_cwd", "exec: cwd contains a NUL byte"),
])
def test_nul_bytes_are_reported_plainly(store: Store, flows: Path, flow: str,
                                        message: str) -> None:
    result, _ = _run(store, flows, flow)
    assert not result.ok
    assert message in result.error
    assert "ValueError" not in result.error


def test_closing_the_runtime_stops_its_commands_and_resume_issues_them_again(
        tmp_path: Path) -> None:
    import time
    from actors import Runtime, result_of
    from store import Store
    flow = Path(__file__).parent / "napping.flow"
    out, dur = tmp_path / "out.txt", tmp_path / "dur.txt"
    dur.write_text("30")
    st = Store.open(tmp_path / "home", sync=False)
    try:
        rt = Runtime(st)
        rid = rt.create_run(str(flow), flow.read_text(), flow="nap",
                            args={"out": str(out), "dur": str(dur)})
        wait_for(lambda: len(words_in(out)) >= 2)
        first = int(words_in(out)[1])
        t0 = time.monotonic()
        rt.close()
        assert time.monotonic() - t0 < 15
        assert_dies(first, "the command outlived its runtime")
        # Its action is still pending: the next runtime runs the command again.
        dur.write_text("0")
        with Runtime(st) as rt2:
            rt2.resume_run(rid)
            w = rt2.wait_run(rid, 60)
        assert repr(result_of(w)) == "Ok(0)"
        lines = out.read_text().splitlines()
        assert [l.split()[0] for l in lines] == ["start", "start", "end"]
        assert lines[2].split()[1] != str(first)
    finally:
        st.close()


@pytest.mark.parametrize("t", ["1e9", "3e6", "5"])
def test_long_timeouts_work(store: Store, flows: Path, t: str) -> None:
    # A month is a fair timeout; past ~24 days the selector's own wait overflowed.
    result, _ = _run(store, flows, "timed", {"t": t})
    assert repr(result) == 'Ok("ok\\n")'


@pytest.mark.parametrize("t", ["inf", "nan", "2e9", "0", "-1"])
def test_bad_timeouts_are_the_flows_error(store: Store, flows: Path, t: str) -> None:
    result, _ = _run(store, flows, "timed", {"t": t})
    assert not result.ok
    assert "exec: timeout must be a number of seconds above 0, at most 1e9" in result.error
    assert "Overflow" not in result.error and "ValueError" not in result.error
