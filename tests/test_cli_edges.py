"""Edge cases of the command line found by exploratory testing: malformed ids, deeply
nested JSON, an empty --home, very deep flow trees, broken quota files, overlong
durations. Each must end in a clear one-line error (or warning), never a Python
traceback. The CLI runs in subprocesses, as a user runs it."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "flowmetal"]
DEEP = "[" * 5000 + "]" * 5000

ARGS_FLOW = """
def _main(fctx):
    return [fctx.args.n, fctx.args.a]

main = flow(implementation = _main,
            args = {"n": args.int(), "a": args.any(default = None), "l": args.list(default = [])})
"""

DEEP_FLOW = """
def _f(fctx):
    return 0 if fctx.args.n == 0 else unwrap(f(n = fctx.args.n - 1)) + 1

f = flow(implementation = _f, args = {"n": args.int()})
"""


def env_for(home: Path | None) -> dict:
    env = dict(os.environ, FLOWMETAL_SYNC="0")
    env.pop("XDG_STATE_HOME", None)
    if home is not None:
        env["FLOWMETAL_HOME"] = str(home)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def fm(home: Path | None, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + list(args), env=env_for(home), capture_output=True,
                          text=True, errors="replace", timeout=timeout, cwd=ROOT)


def no_traceback(p: subprocess.CompletedProcess) -> None:
    """No Python traceback (a Starlark one, in a flow's Err, is fine)."""
    assert "Traceback (most recent call last):\n  File" not in p.stderr + p.stdout, p.stderr
    assert "Error" not in p.stderr.replace("Error:", ""), p.stderr  # no exception names


def error_line(p: subprocess.CompletedProcess) -> str:
    """The one line that says what went wrong (click's usage errors end with it)."""
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert lines, p
    return lines[-1]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def args_flow(tmp_path: Path) -> Path:
    p = tmp_path / "args.flow"
    p.write_text(ARGS_FLOW)
    return p


# ---------------------------------------------------------------- 1: malformed ids

BAD_IDS = [("", "must not be empty"), ("x" * 600, "is longer than 200 bytes"),
           ("\udcff", "is not valid UTF-8")]   # "\udcff": the byte 0xff in argv

ID_COMMANDS = [["resume"], ["status"], ["logs"], ["history"], ["inspect"], ["cancel"],
               ["batch", "status"], ["batch", "retry", "--failed"], ["send", "{}"]]


@pytest.mark.parametrize("cmd", ID_COMMANDS, ids=lambda c: "-".join(c))
def test_malformed_ids_are_usage_errors(home: Path, cmd: list) -> None:
    for bad, why in BAD_IDS:
        # The id goes right after the command words (send: RUN_OR_FLOW_ID JSON).
        words = [w for w in cmd if not w.startswith("-") and w != "{}"]
        rest = [w for w in cmd if w not in words]
        p = fm(home, *words, bad, *rest)
        assert p.returncode == 2, (bad[:10], p.stderr)
        no_traceback(p)
        assert why in error_line(p), p.stderr


def test_malformed_message_id(home: Path) -> None:
    for bad, why in BAD_IDS[1:]:
        p = fm(home, "send", "r-some-run", "{}", "--id", bad)
        assert p.returncode == 2 and why in error_line(p), p.stderr
        no_traceback(p)


# ---------------------------------------------------------------- 2, 3: deep JSON

def test_send_deeply_nested_message(home: Path) -> None:
    p = fm(home, "send", "r-some-run", DEEP)
    assert p.returncode == 2, p.stderr
    assert "nested more than 100 levels" in error_line(p)
    no_traceback(p)


@pytest.mark.parametrize("message", ['"\\ud800"', '{"a": ["x\\udfff"]}'])
def test_send_a_lone_surrogate(home: Path, message: str) -> None:
    # Refused up front, daemon or not (through a daemon it was a ProtocolError).
    p = fm(home, "send", "r-some-run", message)
    assert p.returncode == 2, p.stderr
    assert "lone surrogate" in error_line(p)
    no_traceback(p)


@pytest.mark.parametrize("message", ["1e400", "NaN", '{"a": [-Infinity]}'])
def test_send_a_number_json_does_not_have(home: Path, message: str) -> None:
    # Python's decoder reads these (1e400 as infinity); JSON has no such numbers, and
    # a flow was handed +inf.
    p = fm(home, "send", "r-some-run", message)
    assert p.returncode == 2, p.stderr
    assert "not valid JSON" in error_line(p) and "finite" in error_line(p) or \
        "out of range" in error_line(p), error_line(p)
    no_traceback(p)


def test_batch_inputs_and_list_args_refuse_infinite_numbers(home: Path, args_flow: Path,
                                                            tmp_path: Path) -> None:
    p = fm(home, "run", str(args_flow), "--flow", "main", "--arg", "n=1", "--arg", "l=[1e999]")
    assert p.returncode == 2 and error_line(p) == "Error: --arg l=[1e999]: not a valid list"
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"n": 1}\n{"n": NaN}\n')
    p = fm(home, "batch", str(args_flow), "--inputs", str(inputs), "--flow", "main")
    assert p.returncode == 2, p.stderr
    assert error_line(p).startswith(f"Error: {inputs}:2: not JSON: NaN"), error_line(p)
    no_traceback(p)


def test_run_with_deeply_nested_arg(home: Path, args_flow: Path) -> None:
    for name in ("a", "l"):   # args.any() and args.list()
        p = fm(home, "run", str(args_flow), "--flow", "main", "--arg", "n=1",
               "--arg", f"{name}={DEEP}")
        assert p.returncode == 2, p.stderr
        line = error_line(p)
        assert f"--arg {name}=[[[" in line and "not a valid" in line, line
        assert "nested more than 100 levels" in line and len(line) < 200, line
        no_traceback(p)
    # Mistyped values still read as before; 100 levels and brackets in strings are fine.
    p = fm(home, "run", str(args_flow), "--flow", "main", "--arg", "n=ten")
    assert p.returncode == 2 and error_line(p) == "Error: --arg n=ten: not a valid int"
    ok = "[" * 100 + "]" * 100
    p = fm(home, "run", str(args_flow), "--flow", "main", "--arg", "n=1",
           "--arg", f"l={ok}", "--arg", 'a=["' + "[" * 300 + '"]')
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[-1] == 'Ok([1, ["' + "[" * 300 + '"]])'


def test_an_int_arg_with_too_many_digits_says_so(home: Path, args_flow: Path) -> None:
    # The reason was Python's own, cut short: "... use sys.set_in".
    p = fm(home, "run", str(args_flow), "--flow", "main", "--arg", "n=-" + "9" * 5000)
    assert p.returncode == 2, p.stderr
    assert error_line(p).endswith(": not a valid int (5,000 digits: at most 4,000)"), p.stderr
    no_traceback(p)


def test_arg_values_that_are_not_utf8(home: Path, args_flow: Path) -> None:
    # Bytes that are not UTF-8 reach Python as surrogates; stored or printed, they
    # crashed the flow (restarted 3 times) instead of being refused.
    p = fm(home, "run", str(args_flow), "--flow", "main", "--arg", "n=1", "--arg",
           "a=x\udcffy")
    assert p.returncode == 2 and "not valid UTF-8" in error_line(p), p.stderr
    no_traceback(p)


def test_batch_inputs_too_deep_or_not_utf8(home: Path, args_flow: Path,
                                          tmp_path: Path) -> None:
    deep = tmp_path / "deep.jsonl"
    deep.write_text('{"n": 1}\n{"a": ' + DEEP + "}\n")
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b'{"n": 1}\n{"a": "\xff"}\n')
    for inputs, why in ((deep, ":2: nested more than 101 levels deep"),
                        (binary, ": not UTF-8 text")):
        p = fm(home, "batch", str(args_flow), "--flow", "main", "--inputs", str(inputs))
        assert p.returncode == 2, p.stderr
        assert error_line(p) == f"Error: {inputs}{why}"
        no_traceback(p)


# ---------------------------------------------------------------- 4: --home ""

MISSING_RUN = [(["status"], "no run 'nosuchrun'"), (["logs"], "no run 'nosuchrun'"),
               (["history"], "no run 'nosuchrun'"), (["inspect"], "no run 'nosuchrun'"),
               (["resume"], "no run 'nosuchrun'"),
               (["batch", "status"], "no batch 'nosuchrun'")]


@pytest.mark.parametrize("cmd, why", MISSING_RUN, ids=lambda c: "-".join(c) if isinstance(c, list) else "")
def test_an_id_that_names_nothing_is_a_usage_error(home: Path, cmd: list, why: str) -> None:
    # One exit status for "no such run" whichever command is asked (scripts tell it
    # from a run that ended Err, which exits 1).
    fm(home, "list")   # the store exists
    p = fm(home, *cmd, "nosuchrun")
    assert p.returncode == 2, p.stderr
    no_traceback(p)
    assert p.stderr.count("\n") == 1 and why in p.stderr, p.stderr


@pytest.mark.parametrize("cmd", [["list"], ["status", "r1"], ["run", "x.flow"],
                                 ["send", "r1", "{}"], ["daemon"]], ids=lambda c: c[0])
def test_empty_home_is_a_usage_error(tmp_path: Path, cmd: list) -> None:
    fallback = tmp_path / "env-home"
    p = fm(fallback, *cmd, "--home", "", timeout=30)   # (a daemon would not end)
    assert p.returncode == 2, p.stderr
    assert error_line(p) == "Error: --home must not be empty"
    assert not fallback.exists()   # $FLOWMETAL_HOME was not used instead


# ---------------------------------------------------------------- 5: deep flow trees

def test_status_of_a_very_deep_tree(home: Path, tmp_path: Path) -> None:
    src = tmp_path / "deep.flow"
    src.write_text(DEEP_FLOW)
    # A chain of 1,200 nested flows, or as many as the runtime allows (it ends the
    # run Err when flow calls nest too deep): either way a tree too deep to render
    # recursively.
    p = fm(home, "run", str(src), "--flow", "f", "--arg", "n=1200")
    rid = [ln.split()[1] for ln in p.stderr.splitlines() if ln.startswith("run ")][0]
    p = fm(home, "status", rid)
    assert p.returncode == 0, p.stderr[-500:]
    no_traceback(p)
    lines = p.stdout.splitlines()
    flows = lines[lines.index("flows:") + 1:]
    assert len(flows) >= 1000
    for depth, line in enumerate(flows):   # each flow one level below the one before
        assert line.startswith("  " + "  " * depth + rid), (depth, line[:100])


def _old_tree(flows: list[dict]) -> list[tuple[int, str]]:
    """The recursive rendering `status` had (the order and depths it printed)."""
    kids: dict = {}
    ids = {f["id"] for f in flows}
    for f in flows:
        kids.setdefault(f["parent"] if f["parent"] in ids else None, []).append(f)
    out = []

    def show(f: dict, depth: int) -> None:
        out.append((depth, f["id"]))
        for k in kids.get(f["id"], []):
            show(k, depth + 1)
    for f in kids.get(None, []):
        show(f, 0)
    return out


def test_flow_tree_order_is_unchanged() -> None:
    from flowmetal.daemon.views import flow_tree
    flows = [{"id": i, "parent": p} for i, p in [
        ("r", None), ("r.1", "r"), ("r.2", "r"), ("r.1.1", "r.1"), ("x", "gone"),
        ("r.2.1", "r.2"), ("r.1.2", "r.1"), ("r.1.1.1", "r.1.1"), ("y", None)]]
    assert [(d, f["id"]) for d, f in flow_tree(flows)] == _old_tree(flows)


# ---------------------------------------------------------------- 7: quota files

BROKEN_QUOTAS = [("[default\n", "Expected ']'"),
                 ('[default]\nconcurrent_flows = "two"\n', "must be a whole number"),
                 ("[default]\nconcurrent_flows = -1\n", "must not be negative"),
                 ("[default]\nflows = 3\n", "unknown limit 'flows'")]


@pytest.mark.parametrize("text, problem", BROKEN_QUOTAS,
                         ids=["toml", "string", "negative", "unknown-key"])
def test_run_warns_about_a_broken_quota_file(home: Path, args_flow: Path, text: str,
                                             problem: str) -> None:
    home.mkdir(mode=0o700)
    (home / "quotas.toml").write_text(text)
    p = fm(home, "run", str(args_flow), "--flow", "main", "--arg", "n=2")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[-1] == "Ok([2, None])"
    warning = [ln for ln in p.stderr.splitlines() if "warning" in ln]
    assert len(warning) == 1, p.stderr
    assert str(home / "quotas.toml") in warning[0] and problem in warning[0]


def test_daemon_refuses_a_broken_quota_file(home: Path) -> None:
    home.mkdir(mode=0o700)
    (home / "quotas.toml").write_text("[default\n")
    p = fm(home, "daemon", "--workers", "0", timeout=30)
    assert p.returncode == 1
    assert str(home / "quotas.toml") in error_line(p) and "Expected ']'" in p.stderr
    no_traceback(p)
    assert not (home / "daemon.sock").exists()


def test_quota_book_logs_a_broken_file(tmp_path: Path, caplog) -> None:
    from flowmetal.quotas import QuotaBook
    q = tmp_path / "quotas.toml"
    q.write_text("[default]\nconcurrent_flows = 2\n")
    book = QuotaBook(tmp_path)
    book.RECHECK = 0
    with caplog.at_level(logging.INFO, logger="flowmetal.quotas"):
        assert book.limits_for("u").concurrent_flows == 2
        q.write_text("[default]\nconcurrent_flows = -1\n# edited\n")
        assert book.limits_for("u").concurrent_flows == 2   # the last good limits
        book.config()                                        # said once, not per look
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"{q}: [default] concurrent_flows must not be negative; "
                        "keeping the previous limits"]


# ---------------------------------------------------------------- 8: prune durations

def test_prune_with_an_enormous_duration(home: Path) -> None:
    for text in ("99999999999999999999d", "9" * 400 + "s"):
        p = fm(home, "prune", "--older-than", text)
        assert p.returncode == 2, p.stderr
        assert "too long a duration" in error_line(p)
        no_traceback(p)
    p = fm(home, "prune", "--older-than", "999999999d")
    assert p.returncode == 0 and "removed 0" in p.stdout


def test_prune_refuses_a_duration_without_a_unit(home: Path) -> None:
    # Review: '7' was 7 seconds; meant as days, it deleted nearly every ended run.
    p = fm(home, "prune", "--older-than", "7")
    assert p.returncode == 2, p.stderr
    assert error_line(p) == ("Error: Invalid value for '--older-than': '7' has no unit: say "
                             "7s, 7m, 7h, 7d or 7w")


# ---------------------------------------------------------------- with a daemon: 3, 6, 7, 8

@pytest.fixture(scope="module")
def daemon_home():
    # Unix socket paths are short (108 bytes): keep the home near the root.
    home = Path(tempfile.mkdtemp(prefix="fmedge-", dir="/tmp"))
    proc = subprocess.Popen(CLI + ["daemon", "--home", str(home), "--workers", "0"],
                            env=env_for(home), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        from flowmetal.daemon.client import Client, DaemonNotRunning
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read()
            try:
                with Client.connect(home) as c:
                    if c.ping()["pid"] == proc.pid:
                        break
            except (DaemonNotRunning, OSError):
                pass
            assert time.monotonic() < deadline, "the daemon did not come up"
            time.sleep(0.05)
        yield home
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        proc.stderr.close()
        shutil.rmtree(home, ignore_errors=True)


def _frame(sock: socket.socket, payload: bytes) -> dict:
    sock.sendall(struct.pack(">I", len(payload)) + payload)
    header = b""
    while len(header) < 4:
        chunk = sock.recv(4 - len(header))
        assert chunk, "the daemon closed the connection"
        header += chunk
    (n,) = struct.unpack(">I", header)
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "the daemon closed the connection"
        data += chunk
    return json.loads(data)


def test_daemon_answers_a_deeply_nested_frame(daemon_home: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(str(daemon_home / "daemon.sock"))
        for depth in (5000, 100_000):
            body = "[" * depth + "]" * depth
            r = _frame(s, ('{"op":"send","target":"r-x","body":' + body + "}").encode())
            assert r["ok"] is False and r["kind"] == "protocol", r
            assert "nested" in r["error"]
        r = _frame(s, b'{"op":"ping"}')   # the same connection goes on
        assert r["ok"] is True
    log = (daemon_home / "daemon.log").read_text()
    assert "Traceback" not in log and "RecursionError" not in log


def test_submit_with_deeply_nested_arg(daemon_home: Path, args_flow: Path) -> None:
    p = fm(daemon_home, "submit", str(args_flow), "--flow", "main", "--arg", "n=1",
           "--arg", f"a={DEEP}")
    assert p.returncode == 2, p.stderr
    line = error_line(p)
    assert line.startswith("flowmetal submit: --arg a=[[[") and "not a valid any" in line
    assert "internal error" not in line and len(line) < 200, line


def test_batch_retry_of_a_missing_batch(daemon_home: Path) -> None:
    p = fm(daemon_home, "batch", "retry", "nonexist", "--failed")
    assert p.returncode == 2
    assert error_line(p) == "flowmetal batch retry: no batch 'nonexist'"
    # The daemon's own answer (to any client) keeps its closing quote too.
    from flowmetal.daemon.client import Client, DaemonError
    with Client.connect(daemon_home) as c:
        with pytest.raises(DaemonError) as e:
            c.call("batch_retry", batch="nonexist")
    assert "no batch 'nonexist'" in str(e.value)


def test_submit_warns_about_a_broken_quota_file(daemon_home: Path, args_flow: Path) -> None:
    q = daemon_home / "quotas.toml"
    q.write_text("[default\n")
    try:
        time.sleep(1.1)   # the daemon looks at the file at most once a second
        p = fm(daemon_home, "submit", str(args_flow), "--flow", "main", "--arg", "n=4",
               "--wait")
        assert p.returncode == 0 and p.stdout.splitlines()[-1] == "Ok([4, None])", p.stderr
        warning = [ln for ln in p.stderr.splitlines() if "warning" in ln]
        assert len(warning) == 1 and str(q) in warning[0] and "Expected ']'" in warning[0]
        log = (daemon_home / "daemon.log").read_text()
        assert f"WARNING {q}: Expected ']'" in log and "keeping the previous limits" in log
    finally:
        q.unlink()


# ---------------------------------------------------------------- views of a live run

SLEEPING_KIDS = """
def _kid(fctx):
    sleep(30)
    return fctx.args.i

kid = flow(implementation = _kid, args = {"i": args.int()})

def _main(fctx):
    hs = [fctx.actions.run(kid, i = i) for i in range(12)]
    return [unwrap(r) for r in fctx.actions.wait(hs)]

main = flow(implementation = _main)
"""


def test_inspect_and_history_of_a_run_in_flight(home: Path, tmp_path: Path) -> None:
    from .procs import foreground_run, wait_for
    src = tmp_path / "kids.flow"
    src.write_text(SLEEPING_KIDS)
    with foreground_run(CLI + ["run", str(src), "--flow", "main"], env_for(home),
                        cwd=ROOT) as (p, rid):
        def all_asleep() -> bool:
            v = json.loads(fm(home, "status", rid, "--json").stdout)
            return len(v["pending"]) == 13
        wait_for(all_asleep)
        insp = fm(home, "inspect", rid)
        hist = fm(home, "history", rid)
        hist_json = json.loads(fm(home, "history", rid, "--json").stdout)
    assert insp.returncode == 0, insp.stderr
    # The flow's own frames, not the prelude's machinery with its internal arguments.
    assert "_flow_main" not in insp.stdout and "inherit" not in insp.stdout
    assert "kids.flow:3 in _kid" in insp.stdout
    # Children in the order they were started (.2 before .10), and a wait on twelve
    # of them named in one short line.
    order = [ln.split()[1] for ln in insp.stdout.splitlines() if ln.startswith("flow ")]
    assert order == [rid] + [f"{rid}.{i}" for i in range(1, 13)]
    assert f"waiting on: wait {rid}.1, {rid}.2, {rid}.3 and 9 more" in insp.stdout
    # history lists the actions in flight: the wait and every child's sleep.
    assert hist.returncode == 0 and "no actions" not in hist.stdout
    assert hist.stdout.count("(in flight)") == 13
    assert len(hist_json) == 13 and all(e["pending"] and e["result"] is None
                                        for e in hist_json)
    assert sorted(e["kind"] for e in hist_json) == ["sleep"] * 12 + ["wait"]


# ---------------------------------------------------------------- flow names

NAMED_BY_BINDING = """
def _i(fctx):
    return fctx.args.n

main = flow(implementation = _i, args = {"n": args.int(default = 1)})

def _impl(fctx):
    return unwrap(main(n = fctx.args.n))

counter = flow(implementation = _impl, args = {"n": args.int()})
explicit = flow(implementation = _impl, args = {"n": args.int()}, name = "custom")

if __name__ == "__flow__":
    sleep(0)   # checkpointed and loaded again before the flows learn their names
    print(counter.name, explicit.name, counter(2))
"""


def test_a_flow_is_named_after_its_global(home: Path, tmp_path: Path) -> None:
    # Not after its implementation (`_i` would be "i", `_impl` "impl"); name= wins.
    src = tmp_path / "names.flow"
    src.write_text(NAMED_BY_BINDING)
    p = fm(home, "run", str(src))
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0] == "counter custom Ok(2)"
    rid = p.stderr.split()[1]
    flows = json.loads(fm(home, "status", rid, "--json").stdout)["flows"]
    assert [f["name"] for f in flows] == ["__main__", "counter", "main"]
    p = fm(home, "run", str(src), "--flow", "counter")
    assert p.returncode == 2 and "flow counter: missing argument n" in p.stderr, p.stderr


def test_sending_to_a_main_block_that_waits_on_a_flow_says_so(home: Path,
                                                               tmp_path: Path) -> None:
    from .procs import foreground_run, wait_for
    src = tmp_path / "ev.flow"
    src.write_text('def _impl(fctx):\n'
                   '    fctx.actions.close(fctx.inbox)\n'
                   '    return fctx.args.event\n\n'
                   'counter = flow(implementation = _impl, args = {"event": args.event()})\n\n'
                   'if __name__ == "__flow__":\n'
                   '    counter()\n')
    with foreground_run(CLI + ["run", str(src)], env_for(home), cwd=ROOT) as (p, rid):
        wait_for(lambda: json.loads(fm(home, "status", rid, "--json").stdout)["pending"] != [])
        r = fm(home, "send", rid, '"to main"')
        assert r.returncode == 0, r.stderr
        assert (f"note: flow {rid} is the file's __main__ block, waiting on {rid}.1 "
                "(counter)") in r.stderr
        r = fm(home, "send", f"{rid}.1", '"to counter"')
        assert r.returncode == 0 and "note:" not in r.stderr, r.stderr
        out, _ = p.communicate(timeout=60)
    assert out.splitlines()[-1] == 'Ok("to counter")'


def test_status_and_logs_say_when_nothing_runs_a_live_run(home: Path, tmp_path: Path) -> None:
    from .procs import foreground_run, wait_for
    src = tmp_path / "kids.flow"
    src.write_text(SLEEPING_KIDS)
    with foreground_run(CLI + ["run", str(src), "--flow", "main"], env_for(home),
                        cwd=ROOT) as (p, rid):
        wait_for(lambda: json.loads(fm(home, "status", rid, "--json").stdout)["pending"])
        assert json.loads(fm(home, "status", rid, "--json").stdout)["owner"] == p.pid
        assert f"process  {p.pid}" in fm(home, "status", rid).stdout
    # Killed: the run is still `waiting` in the store, but nothing runs it.
    v = json.loads(fm(home, "status", rid, "--json").stdout)
    assert v["state"] == "waiting" and v["owner"] is None
    assert f"process  none: its process has gone; `flowmetal resume {rid}`" in \
        fm(home, "status", rid).stdout
    follow = subprocess.Popen(CLI + ["logs", "-f", rid], env=env_for(home), cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        line = follow.stderr.readline()   # `logs -f` goes on waiting, but says why
        assert line.startswith(f"flowmetal logs: run {rid} is not running: its process "
                               "has gone"), line
    finally:
        follow.kill()
        follow.wait()


# ---------------------------------------------------------------- bad loaded modules

@pytest.mark.parametrize("files, where", [
    ({"lib.star": "def f(:\n    pass\n"}, "lib.star:1:7: invalid syntax"),
    ({}, "main.flow:1:1: cannot read lib.star: No such file or directory"),
    ({"lib.star": b"\xff\xfe"}, "main.flow:1:1: cannot load lib.star: not UTF-8 text"),
    ({"lib.star": 'load("main.flow", "m")\nf = 1\n'},
     "lib.star:1:1: cannot load main.flow: cycle in load graph"),
], ids=["syntax", "missing", "not-utf8", "cycle"])
@pytest.mark.parametrize("flow", [None, "m"], ids=["main-block", "flow"])
def test_a_bad_loaded_module_is_refused_before_a_run_is_made(
        home: Path, tmp_path: Path, files: dict, where: str, flow: str | None) -> None:
    for name, text in files.items():
        (tmp_path / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    main = tmp_path / "main.flow"
    main.write_text('load("lib.star", "f")\n\n'
                    'def _m(fctx):\n    return 1\n\nm = flow(implementation = _m)\n')
    p = fm(home, "run", str(main), *(["--flow", flow] if flow else []))
    assert p.returncode == 2, p.stdout + p.stderr
    assert where in p.stderr, p.stderr
    no_traceback(p)
    assert fm(home, "list", "--json").stdout.strip() == "[]"   # no run was made


@pytest.mark.parametrize("cmd, out", [
    (["list"], "no runs"), (["list", "--json"], "[]"), (["batch", "list"], "no batches"),
    (["prune", "--older-than", "1d"], "removed 0 run(s)"),
    (["status", "r1"], None), (["logs", "r1"], None), (["history", "r1"], None),
    (["inspect", "r1"], None), (["batch", "status", "b1"], None), (["resume", "r1"], None)],
    ids=lambda c: "-".join(c) if isinstance(c, list) else "")
def test_commands_that_read_make_no_home(tmp_path: Path, cmd: list, out: str | None) -> None:
    # A mistyped --home gets an answer, and no new home made where the typo pointed.
    home = tmp_path / "typo" / "home"
    p = fm(home, *cmd)
    no_traceback(p)
    if out is not None:
        assert p.returncode == 0 and p.stdout.strip() == out, p.stderr
    else:
        assert p.returncode == 2
        assert error_line(p).endswith(f"(no store in {home}: nothing has run there)")
    assert not (tmp_path / "typo").exists()


@pytest.mark.parametrize("cmd", [["list"], ["status", "r1"], ["resume", "r1"], ["run", "F"]])
def test_a_store_that_cannot_be_opened_is_one_line(tmp_path: Path, cmd: list) -> None:
    # A damaged store is no usage error: one line naming it, exit 1, for every command
    # (`run` and `list` used to print a usage banner and exit 2).
    home = tmp_path / "home"
    (home / "store").mkdir(parents=True)
    (home / "store" / "data.mdb").write_bytes(b"junk\n")
    flow = tmp_path / "f.flow"
    flow.write_text("print(1)\n")
    p = fm(home, *[str(flow) if c == "F" else c for c in cmd])
    no_traceback(p)
    assert p.returncode == 1, p.stderr
    assert "Usage:" not in p.stderr
    assert error_line(p).startswith("Error: cannot open the store: "), p.stderr
    assert "damaged" in p.stderr


@pytest.mark.parametrize("cmd", [["daemon"], ["submit", "F"], ["send", "r1", "1"], ["run", "F"]])
@pytest.mark.parametrize("where", ["file", "under-file"])
def test_a_home_that_cannot_be_made_is_one_line(tmp_path: Path, cmd: list, where: str) -> None:
    # The daemon printed a Python traceback; submit and send named the exception.
    afile = tmp_path / "afile"
    afile.write_text("")
    home = afile if where == "file" else afile / "sub"
    flow = tmp_path / "f.flow"
    flow.write_text("print(1)\n")
    p = fm(home, *[str(flow) if c == "F" else c for c in cmd], timeout=60)
    no_traceback(p)
    assert p.returncode == 1, p.stderr
    if cmd[0] == "send":   # makes no home: there is no store there to send into
        assert len(p.stderr.splitlines()) == 1 and "cannot open the store" in p.stderr
        return
    assert error_line(p) == (f"Error: cannot use the home directory {home}: "
                             + ("it is not a directory" if where == "file" else "Not a directory"))


@pytest.mark.parametrize("cmd", [["list"], ["status", "r1"], ["batch", "list"], ["run", "F"]])
def test_a_home_under_a_file_is_named_not_an_os_error(tmp_path: Path, cmd: list) -> None:
    # Review: the commands that only read printed the raw OSError ('[Errno 20] ...'),
    # and a newline in the path broke the one line in two.
    afile = tmp_path / "afile"
    afile.write_text("")
    flow = tmp_path / "f.flow"
    flow.write_text("print(1)\n")
    for home in (afile / "sub", afile / "a\nb"):
        p = fm(home, *[str(flow) if c == "F" else c for c in cmd])
        no_traceback(p)
        assert p.returncode == 1, p.stderr
        shown = str(home) if "\n" not in str(home) else repr(str(home))
        assert p.stderr == f"Error: cannot use the home directory {shown}: Not a directory\n"


@pytest.mark.parametrize("cmd", [["list"], ["run", "F"]])
def test_a_home_under_an_unknown_user_is_one_line(tmp_path: Path, cmd: list) -> None:
    # Review: '~nosuchuser/x' raised RuntimeError from expanduser, a traceback.
    flow = tmp_path / "f.flow"
    flow.write_text("print(1)\n")
    p = fm("~no-such-user-fm/x", *[str(flow) if c == "F" else c for c in cmd])
    no_traceback(p)
    assert p.returncode == 1, p.stderr
    assert error_line(p).startswith(
        "Error: cannot use the home directory ~no-such-user-fm/x: "), p.stderr


def test_status_shows_when_a_receive_times_out(home: Path) -> None:
    # A receive's timeout was not shown: status said only "receive".
    from store import Batch, Store
    st = Store.open(home, sync=False)
    due = time.time() + 300
    st.commit(Batch().create_run("r1", file="x.flow", root_flow="r1")
              .create_flow("r1", run_id="r1", name="main", state="running"))
    st.commit(Batch().flow_suspended("r1", 1, b"ck", {"kind": "receive", "timeout": 300,
                                                      "due": due, "dispatch": False}))
    st.close()
    p = fm(home, "status", "r1")
    assert p.returncode == 0, p.stderr
    line = [ln for ln in p.stdout.splitlines() if "#1" in ln][0]
    assert "receive" in line and "(times out in 29" in line, line
    v = json.loads(fm(home, "status", "r1", "--json").stdout)
    assert v["pending"][0]["due"] == pytest.approx(due)


@pytest.mark.parametrize("cmd", [["run", "F"], ["resume", "r1"], ["daemon"]])
def test_workers_are_bounded(tmp_path: Path, cmd: list) -> None:
    # Review: --workers took any number, and the pool starts all of them with the
    # first flow: a typo of 2000 forked 2000 interpreters.
    from flowmetal.cli.common import MAX_WORKERS
    flow = tmp_path / "f.flow"
    flow.write_text("print(1)\n")
    home = tmp_path / "home"
    p = fm(home, *[str(flow) if c == "F" else c for c in cmd],
           "--workers", str(MAX_WORKERS + 1), timeout=60)
    no_traceback(p)
    assert p.returncode == 2, p.stderr
    assert error_line(p) == (f"Error: Invalid value for '--workers': {MAX_WORKERS + 1} "
                             f"is not in the range 0<=x<={MAX_WORKERS}.")
    assert not home.exists()


def test_a_flow_file_is_read_up_to_a_bound(home: Path, tmp_path: Path) -> None:
    # Review: `run /dev/zero` read on until memory ran out; `submit` of a file over
    # 16 MB failed with the protocol's frame error, though `run` took it.
    from flowmetal.cli.common import MAX_SOURCE_BYTES
    big = tmp_path / "big.flow"
    big.write_text("x = 1\n" * (MAX_SOURCE_BYTES // 6 + 1))
    for cmd in (["run", "/dev/zero"], ["run", str(big)], ["submit", str(big)],
                ["eval", str(big)]):
        p = fm(home, *cmd, timeout=60)
        no_traceback(p)
        assert p.returncode == 2, p.stderr
        assert error_line(p) == (f"Error: {cmd[1]}: larger than 2 MiB, the most a flow file "
                                 f"may be")
    crlf = tmp_path / "crlf.star"
    crlf.write_bytes(b"x = 1\r\nif x:\r    print(x + 1)\r\n")
    p = fm(home, "eval", str(crlf))
    assert p.returncode == 0 and p.stdout == "2\n", p.stderr


def test_json_output_is_standard_json_even_with_nan() -> None:
    # Review: `history --json` wrote bare NaN / Infinity (a flow sent nan), which
    # strict JSON parsers refuse.
    from flowmetal.cli.common import json_text

    def strict(text: str):
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c}"))
    v = {"a": [1.5, float("nan"), (float("inf"), {"b": float("-inf")})], "c": "x"}
    assert strict(json_text(v)) == {"a": [1.5, "NaN", ["Infinity", {"b": "-Infinity"}]],
                                    "c": "x"}
    assert json_text({"t": 1.0, "p": Path("/x")}) == '{"t": 1.0, "p": "/x"}'
