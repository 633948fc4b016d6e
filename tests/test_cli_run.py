"""`flowmetal run`, `resume` and `list` end to end, as a user runs them (subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import re
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
FLOWS = ROOT / "tests" / "actors" / "flows"
CLI = [sys.executable, "-c", "from flowmetal.cli import main; main()"]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def fm(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, FLOWMETAL_HOME=str(home), FLOWMETAL_SYNC="0")
    return subprocess.run(CLI + list(args), env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def run_id_of(p: subprocess.CompletedProcess) -> str:
    for line in p.stderr.splitlines():
        if line.startswith("run "):
            return line.split()[1]
    raise AssertionError(p.stderr)


def test_etl_virtual_time(home: Path) -> None:
    t0 = time.monotonic()
    p = fm(home, "run", str(EXAMPLES / "etl.flow"), "--virtual-time")
    assert p.returncode == 1, p.stderr
    assert p.stdout.splitlines()[-1] == 'Err("Oh no!")'
    assert "Traceback" not in p.stderr
    # A bound for a hang only: a loaded machine may take seconds to start Python. That
    # the sleeps took no real time is checked below, on the run's own timestamps.
    assert time.monotonic() - t0 < 30
    # The clock moved on by the 10 s slept, less the real time between each sleep's
    # start and its timer's firing (well under a second, unless the machine stalls).
    advanced = re.search(r"virtual time advanced ([0-9.]+) s", p.stderr)
    assert advanced and 5 < float(advanced.group(1)) < 10.5, p.stderr
    # Exactly three attempts of `check`, with sleeps of 0, 2 and 8 s between them.
    from store import Store
    st = Store.open(home, sync=False)
    try:
        rid = run_id_of(p)
        flows = st.run_flows(rid)
        checks = [f for f in flows if f.name == "check"]
        assert len(checks) == 3 and all(f.state == "err" for f in checks)
        sleeps = [j for f in flows for j in st.journal(f.id)
                  if j.request and j.request.get("kind") == "sleep"]
        assert [j.request["seconds"] for j in sleeps] == [0.0, 2.0, 8.0]
        # `started` and `finished` are the real times of the commits of each sleep and
        # of its end: sleeping really would put 10 s between them, start-up none.
        slept = sum(j.finished - j.started for j in sleeps)
        assert slept < 5, f"the sleeps took {slept:.1f} s of real time"
    finally:
        st.close()


def test_etl_real_time_takes_ten_seconds(home: Path) -> None:
    t0 = time.monotonic()
    p = fm(home, "run", str(EXAMPLES / "etl.flow"))
    took = time.monotonic() - t0
    assert p.returncode == 1
    assert p.stdout.splitlines()[-1] == 'Err("Oh no!")'
    assert 9.5 < took < 20


def test_fanout_main_block(home: Path) -> None:
    p = fm(home, "run", str(EXAMPLES / "fanout.flow"))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert sorted(lines[:10]) == sorted(f"done {i}" for i in range(10))
    assert lines[10:] == ["total = 45", "Ok(45)"]
    assert run_id_of(p).startswith("r")


def test_fanout_named_flow_with_arg(home: Path) -> None:
    p = fm(home, "run", str(EXAMPLES / "fanout.flow"), "--flow", "main", "--arg", "n=25")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[-2:] == ["total = 300", "Ok(300)"]


def test_fanout_in_worker_processes(home: Path) -> None:
    p = fm(home, "run", str(EXAMPLES / "fanout.flow"), "--workers", "2")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[-2:] == ["total = 45", "Ok(45)"]


@pytest.mark.parametrize("args, message", [
    (["--flow", "main", "--arg", "n=ten"], "not a valid int"),
    (["--flow", "main", "--arg", "m=3"], "no argument 'm'"),
    (["--flow", "main", "--arg", "n"], "expected name=value"),
    (["--flow", "nope"], "no flow named 'nope'"),
    (["--arg", "n=3"], "--arg needs --flow"),
    (["--flow", "main", "--arg", "n=3", "--arg", "n=4"], "--arg 'n' given twice"),
])
def test_bad_arguments_are_usage_errors(home: Path, args: list, message: str) -> None:
    p = fm(home, "run", str(EXAMPLES / "fanout.flow"), *args)
    assert p.returncode == 2
    assert message in p.stderr
    assert "Traceback (most recent call last)" not in p.stderr


def test_syntax_error(home: Path) -> None:
    p = fm(home, "run", str(FLOWS / "syntax.flow"))
    assert p.returncode == 2
    assert "syntax.flow:2:12" in p.stderr and "^" in p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize("name, message", [
    ("bad_wait.flow", "wait: want a handle or a list of handles, got int"),
    ("missing_binary.flow", "exec: command not found: definitely-not-a-command-xyz"),
    ("runaway.flow", "step budget exhausted"),
])
def test_bad_programs_end_with_err(home: Path, name: str, message: str) -> None:
    p = fm(home, "run", str(FLOWS / name), "--max-steps", "200000")
    assert p.returncode == 1, p.stderr
    assert message in p.stdout
    assert "Traceback (most recent call last):\n  File" not in p.stdout + p.stderr


def test_prelude_semantics(home: Path) -> None:
    p = fm(home, "run", str(FLOWS / "child_args.flow"))
    assert p.returncode == 1, p.stderr
    assert p.stdout.splitlines() == [
        "Ok(5)", "Ok(6)",
        'Err("flow add: missing argument a")',
        'Err("flow add: takes 2 argument(s), got 3 positional")',
        'Err("flow add: argument a must be int, got string")',
        'Err("flow add: unknown argument c")',
        "42",
        "[1, 2] e True False",
        "Ok(2) [Ok(2)]",
        "written",
        'Err("flow add: argument a must be int, got string")',
    ]


def test_list(home: Path) -> None:
    ok = fm(home, "run", str(EXAMPLES / "fanout.flow"))
    err = fm(home, "run", str(EXAMPLES / "etl.flow"), "--virtual-time")
    p = fm(home, "list", "--json")
    assert p.returncode == 0
    rows = {r["id"]: r for r in json.loads(p.stdout)}
    assert rows[run_id_of(ok)]["state"] == "ok"
    assert rows[run_id_of(ok)]["result"] == "Ok(45)"
    assert rows[run_id_of(err)]["state"] == "err"
    assert rows[run_id_of(err)]["result"] == 'Err("Oh no!")'
    table = fm(home, "list")
    assert run_id_of(ok) in table.stdout and "Ok(45)" in table.stdout


def test_resume_of_a_finished_run_repeats_its_output(home: Path) -> None:
    p = fm(home, "run", str(EXAMPLES / "fanout.flow"), "--flow", "main", "--arg", "n=3")
    r = fm(home, "resume", run_id_of(p))
    assert r.returncode == 0
    assert r.stdout == p.stdout
    assert fm(home, "resume", "r-no-such-run").returncode == 2


DEEP = """
def f(fctx, n):
    if n == 0:
        fctx.actions.exec(["sh", "-c", "echo ran >> " + fctx.args.log])
        return 0
    return 1 + f(fctx, n - 1)

main = flow(implementation = lambda fctx: f(fctx, fctx.args.n),
            args = {"n": args.int(), "log": args.string()})
"""


@pytest.mark.parametrize("workers", ["0", "2"])
def test_an_action_too_deep_to_resume_is_refused_before_it_runs(home: Path, tmp_path: Path,
                                                                 workers: str) -> None:
    # Review: the command ran, then the flow failed when re-entering its stack.
    src = tmp_path / "deep.flow"
    src.write_text(DEEP)
    log = tmp_path / "ran.log"
    p = fm(home, "run", str(src), "--flow", "main", "--arg", "n=3000", "--arg", f"log={log}",
           "--workers", workers)
    assert p.returncode == 1, p.stderr
    assert "cannot suspend 3003 Starlark frames deep (at most 2400)" in p.stdout
    assert not log.exists()
    p = fm(home, "run", str(src), "--flow", "main", "--arg", "n=2000", "--arg", f"log={log}",
           "--workers", workers)
    assert p.returncode == 0 and p.stdout.splitlines()[-1] == "Ok(2000)", p.stderr
    assert log.read_text() == "ran\n"


def test_a_default_of_the_wrong_type_is_refused_where_it_is_declared(home: Path,
                                                                      tmp_path: Path) -> None:
    # Review: args.int(default = "x") was accepted, and the flow got a string exactly
    # when the argument was not given. None stays "optional"; an int default of a
    # float argument is a float, as a passed int is.
    bad = tmp_path / "bad.flow"
    bad.write_text('def _m(fctx):\n    return fctx.args.n\n'
                   'main = flow(implementation = _m, args = {"n": args.int(default = "x")})\n')
    p = fm(home, "run", str(bad), "--flow", "main")
    assert p.returncode == 1, p.stderr
    assert "bad.flow:3:47 in <toplevel>" in p.stderr
    assert p.stderr.splitlines()[-1] == "Error: args.int: default must be int, got string"
    good = tmp_path / "good.flow"
    good.write_text('def _m(fctx):\n    return [fctx.args.f, fctx.args.o]\n'
                    'main = flow(implementation = _m, args = {"f": args.float(default = 2), '
                    '"o": args.list(default = None)})\n')
    p = fm(home, "run", str(good), "--flow", "main")
    assert p.returncode == 0 and p.stdout.splitlines()[-1] == "Ok([2.0, None])", p.stderr


def test_run_and_resume_freeze_their_start_up_objects(home: Path) -> None:
    # What the process loaded at start-up leaves the garbage collector's walk
    # (actors.memory.freeze_startup_objects): seen here through gc.freeze itself.
    hook = ("import gc, sys; real = gc.freeze; "
            "gc.freeze = lambda: (sys.stderr.write('FROZEN\\n'), real())[1]; "
            "from flowmetal.cli import main; main()")
    env = dict(os.environ, FLOWMETAL_HOME=str(home), FLOWMETAL_SYNC="0")
    p = subprocess.run([sys.executable, "-c", hook, "run", str(EXAMPLES / "fanout.flow")],
                       env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert p.stderr.count("FROZEN") == 1, p.stderr
    rid = run_id_of(p)
    p = subprocess.run([sys.executable, "-c", hook, "resume", rid], env=env,
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert p.returncode == 0 and p.stderr.count("FROZEN") == 1, p.stderr
