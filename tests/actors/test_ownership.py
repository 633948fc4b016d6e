"""One process per run: claims on runs (`actors.ownership`), with real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from actors.ownership import RunBusy, RunOwnership

from ..procs import foreground_run, numbers_in, wait_for

HERE = Path(__file__).parent
SLOW = HERE / "slow_steps.flow"
FLOWMETAL = [sys.executable, "-c", "from flowmetal.cli import main; main()"]

HOLDER = """
import sys, time
from actors.ownership import RunOwnership
RunOwnership(sys.argv[1]).claim("r1")
print("claimed", flush=True)
time.sleep(120)
"""


def test_a_claim_excludes_other_claimers_until_released(tmp_path: Path) -> None:
    a, b = RunOwnership(tmp_path), RunOwnership(tmp_path)
    assert a.claim("r1") is True
    assert a.claim("r1") is False   # again by its holder: nothing happens
    with pytest.raises(RunBusy, match=f"run r1 is being run by process {os.getpid()}"):
        b.claim("r1")
    b.claim("r2")
    assert a.holds("r1") and not b.holds("r1")
    a.release("r1")
    assert not (tmp_path / "owners" / "r1").exists()
    b.claim("r1")
    b.release_all()
    assert list((tmp_path / "owners").iterdir()) == []


def test_a_claim_ends_with_its_process_however_it_dies(tmp_path: Path) -> None:
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "claimed"
        with pytest.raises(RunBusy) as e:
            RunOwnership(tmp_path).claim("r1")
        assert e.value.pid == p.pid
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        mine = RunOwnership(tmp_path)
        mine.claim("r1")   # the file is still there, its lock is not
        assert mine.holds("r1")
    finally:
        p.kill()
        p.wait(10)


def _env(home: Path) -> dict:
    env = dict(os.environ)
    env["FLOWMETAL_HOME"] = str(home)
    env["FLOWMETAL_SYNC"] = "0"
    return env


def _run_argv(out: Path, n: int, gate: Path | None = None) -> list[str]:
    return FLOWMETAL + ["run", str(SLOW), "--flow", "steps", "--arg", f"n={n}",
                        "--arg", f"path={out}", "--arg", f"gate={gate or ''}"]


def test_resume_refuses_a_run_another_process_is_running_then_takes_it_over(
        tmp_path: Path) -> None:
    # Its second step waits for `gate`, made only after the refusal: however slow the
    # machine, the run is still running (and owned) when the resume is refused.
    home, out, gate = tmp_path / "home", tmp_path / "out.txt", tmp_path / "gate"
    with foreground_run(_run_argv(out, 20, gate), _env(home)) as (p, rid):
        wait_for(lambda: len(numbers_in(out)) >= 2)
        r = subprocess.run(FLOWMETAL + ["resume", rid], env=_env(home), capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 1, r.stderr
        assert f"run {rid} is being run by process {p.pid}" in r.stderr
    gate.touch()
    r = subprocess.run(FLOWMETAL + ["resume", rid], env=_env(home), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("Ok(20)")
    steps = numbers_in(out)
    # Every step once, but for the one in flight at the kill; never the whole run twice.
    assert sorted(set(steps)) == list(range(20))
    assert len(steps) <= 21, steps


def test_a_run_id_this_runtime_runs_cannot_be_created_again(tmp_path: Path) -> None:
    from actors import RunError, Runtime, result_of
    from store import Store
    out = tmp_path / "out.txt"
    st = Store.open(tmp_path / "home", sync=False)
    try:
        with Runtime(st) as rt:
            rid = rt.create_run(str(SLOW), SLOW.read_text(), flow="steps",
                                args={"n": "3", "path": str(out)})
            with pytest.raises(RunError, match="exists already"):
                rt.create_run(str(SLOW), SLOW.read_text(), flow="nope", run_id=rid)
            assert rt.owners.holds(rid)   # the refused one did not release the live one
            assert repr(result_of(rt.wait_run(rid, 60))) == "Ok(3)"
        assert out.read_text().split() == ["0", "1", "2"]
    finally:
        st.close()


def test_a_claim_that_cannot_be_written_is_one_line_and_holds_no_lock(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Review: a full disk (or a file named `owners`) reached the user as a traceback,
    # and the claim file stayed locked by the failed claimer.
    import errno
    from actors import ownership
    from actors.ownership import ClaimFailed
    mine = RunOwnership(tmp_path)

    def full(fd, data, offset):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(ownership.os, "pwrite", full)
    with pytest.raises(ClaimFailed) as e:
        mine.claim("r1")
    assert str(e.value) == f"cannot claim run r1: {tmp_path / 'owners' / 'r1'}: " \
                           f"No space left on device"
    monkeypatch.undo()
    assert RunOwnership(tmp_path).claim("r1")   # nothing holds it
    other = tmp_path / "other"
    other.mkdir()
    (other / "owners").write_text("")
    with pytest.raises(ClaimFailed) as e:
        RunOwnership(other).claim("r2")
    assert str(e.value) == f"cannot claim run r2: {other / 'owners'} is not a directory"


def test_run_in_a_home_whose_owners_is_a_file_is_one_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "owners").write_text("")
    flow = tmp_path / "f.flow"
    flow.write_text("print(1)\n")
    p = subprocess.run(FLOWMETAL + ["run", str(flow), "--home", str(home)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1, p.stderr
    import re
    assert re.fullmatch(rf"Error: cannot claim run r[0-9a-f]+: {re.escape(str(home))}/owners "
                        rf"is not a directory\n", p.stderr), p.stderr
