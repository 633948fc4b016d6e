"""Resources, secrets, quotas and HTTP end to end, with real processes and SIGKILL."""

from __future__ import annotations

import json
import os
import secrets as _random
from pathlib import Path

from actors.user_resources import _find_by_token

from .conftest import FILES, Background, fm, free_port, run_ids


def _manifest(home: Path) -> dict:
    [m] = list((home / "resources").glob("*.json"))
    return json.loads(m.read_text())


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_resources_survive_kill9_and_are_released(home: Path) -> None:
    port = free_port()
    p = Background(home, "run", str(FILES / "resources.flow"), "--flow", "held",
                   "--arg", f"port={port}", "--arg", "pause=2",
                   "--arg", f"server={FILES / 'server.py'}")
    line = p.wait_line(lambda s: s.startswith("work "))
    work = Path(line.split(" ", 1)[1])
    man = _manifest(home)
    srv = man["resources"]["srv"]["state"]
    assert work.is_dir() and _alive(srv["pid"])
    p.kill9()   # the runner dies holding both
    [rid] = run_ids(home)
    r = fm(home, "resume", rid)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[-1] == 'Ok(["hello", 200])'
    # Closed at the end: no directory, no process, no manifest.
    assert not work.exists()
    assert not _alive(srv["pid"]) and _find_by_token(srv["token"]) == []
    assert list((home / "resources").glob("*.json")) == []


def test_resource_open_failure_ends_the_flow_naming_it(home: Path) -> None:
    r = fm(home, "run", str(FILES / "resources.flow"), "--flow", "bad")
    assert r.returncode == 1
    assert r.stdout.strip().endswith('Err("resource db: cannot open process: command not '
                                     'found: /nonexistent/db-server")')
    assert list((home / "resources").glob("*.json")) == []
    # Its history shows what the action ended with (it showed a Python object's repr).
    [rid] = run_ids(home)
    h = fm(home, "history", rid)
    assert "<resources not opened: resource db: cannot open" in h.stdout, h.stdout


def test_secrets_never_reach_the_home(home: Path, echo_server: str) -> None:
    token = "tok-" + _random.token_hex(16)
    (home / "secrets").write_text(f"API_TOKEN={token}\n")
    (home / "secrets").chmod(0o600)
    r = fm(home, "run", str(FILES / "secrets.flow"), "--flow", "use",
           "--arg", f"url={echo_server}/x")
    assert r.returncode == 0, r.stdout + r.stderr
    assert token not in r.stdout + r.stderr
    assert r.stdout.splitlines()[0] == "token is <secret>"
    result = r.stdout.splitlines()[-1]
    # exec saw it (its echo came back redacted); the server got it (echoed, redacted);
    # the child inherited it (it counted the bytes).
    assert result.startswith('Ok(["<secret>", 200, ')
    assert '\\"auth\\": \\"<secret>\\"' in result
    assert result.endswith(f', {len(token)}, "<secret>"])')
    # The same through the environment, with no secrets file.
    os.remove(home / "secrets")
    r = fm(home, "run", str(FILES / "secrets.flow"), "--flow", "use",
           "--arg", f"url={echo_server}/y", env={"FLOWMETAL_SECRET_API_TOKEN": token})
    assert r.returncode == 0 and f", {len(token)}, " in r.stdout
    leaks = []
    for path in home.rglob("*"):
        if path.is_file() and token.encode() in path.read_bytes():
            leaks.append(path)
    assert leaks == []


def test_commands_do_not_inherit_the_processs_secrets(home: Path, tmp_path: Path) -> None:
    # A secret reaches a command only by name in `env` (and is redacted there); the
    # runner's own FLOWMETAL_SECRET_* variables are not passed on to every command,
    # where `env` would print them into the run's stored output.
    token = "tok-" + _random.token_hex(16)
    flow = tmp_path / "env.flow"
    flow.write_text('def _m(fctx):\n'
                    '    return fctx.actions.exec(["env"]).stdout\n\n'
                    'm = flow(implementation = _m, secrets = ["API_TOKEN"])\n')
    r = fm(home, "run", str(flow), "--flow", "m", env={"FLOWMETAL_SECRET_API_TOKEN": token})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "FLOWMETAL_ACTION_ID" in r.stdout          # it did print its environment
    assert token not in r.stdout and "FLOWMETAL_SECRET_" not in r.stdout


def test_a_secret_missing_at_resume_leaves_the_run_resumable(home: Path,
                                                             tmp_path: Path) -> None:
    # The run started with its secret; it is resumed by a process without it. The
    # exec cannot be done, which is not the flow's doing: the run ends `crashed`,
    # not Err, and a resume with the secret back completes it.
    flow = tmp_path / "later.flow"
    flow.write_text('def _m(fctx):\n'
                    '    print("started")\n'
                    '    fctx.actions.sleep(60)\n'
                    '    r = fctx.actions.exec(["sh", "-c", "echo ${#TOK}"],\n'
                    '                          env = {"TOK": fctx.secrets.TOK})\n'
                    '    return r.stdout.strip()\n\n'
                    'm = flow(implementation = _m, secrets = ["TOK"])\n')
    p = Background(home, "run", str(flow), "--flow", "m", env={"FLOWMETAL_SECRET_TOK": "abcd"})
    p.wait_line(lambda line: line == "started")
    p.kill9()
    [rid] = run_ids(home)
    r = fm(home, "resume", rid, "--virtual-time")
    assert r.returncode == 1
    assert "missing secret TOK: set FLOWMETAL_SECRET_TOK" in r.stdout
    assert "Error" not in r.stdout            # no exception class name
    assert json.loads(fm(home, "list", "--json").stdout)[0]["state"] == "crashed"
    r = fm(home, "resume", rid, env={"FLOWMETAL_SECRET_TOK": "abcd"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[-1] == 'Ok("4")'


def test_missing_secret_fails_before_the_flow_starts(home: Path) -> None:
    r = fm(home, "run", str(FILES / "secrets.flow"), "--flow", "missing")
    assert r.returncode == 1
    assert "must not run" not in r.stdout
    assert "missing secret NOT_DEFINED_ANYWHERE" in r.stdout
    assert "FLOWMETAL_SECRET_NOT_DEFINED_ANYWHERE" in r.stdout


def test_quotas(home: Path) -> None:
    (home / "quotas.toml").write_text(
        "[default]\nconcurrent_flows = 3\nsteps_per_flow = 200000\n"
        "output_bytes_per_run = 2000\n")
    flows = str(FILES / "quotas.flow")
    r = fm(home, "run", flows, "--flow", "fan", "--arg", "n=4")
    assert r.returncode == 0, r.stdout + r.stderr
    # The root and two children fit; the other two end Err before they run.
    out = r.stdout
    assert out.count("quota exceeded: concurrent flows (limit 3 for user ") == 2
    assert out.count("Ok(") == 3
    r = fm(home, "run", flows, "--flow", "chatty")
    assert r.returncode == 1
    assert "quota exceeded: output bytes per run (limit 2000" in r.stdout
    assert len(r.stdout.encode()) < 2300
    r = fm(home, "run", flows, "--flow", "spin")
    assert r.returncode == 1 and "quota exceeded: steps per flow (limit 200000" in r.stdout
    r = fm(home, "run", flows, "--flow", "recurse")
    assert r.returncode == 1 and "quota exceeded: steps per flow (limit 200000" in r.stdout
    # Nothing else is affected: a flow within the limits runs, and sees its quota.
    r = fm(home, "run", flows, "--flow", "who")
    assert r.returncode == 0 and r.stdout.strip().endswith(", 3])")
    import pwd
    assert pwd.getpwuid(os.getuid()).pw_name in r.stdout


def test_an_inline_call_that_suspends_counts_its_output_once(home: Path,
                                                              tmp_path: Path) -> None:
    # Called inline, the child prints, then acts: that first run is dropped and the
    # child runs again in an actor of its own, printing again. Only the second
    # printing is the run's output, and only it counts against the quota.
    (home / "quotas.toml").write_text("[default]\noutput_bytes_per_run = 10000\n")
    flow = tmp_path / "printer.flow"
    flow.write_text('def _m(fctx):\n'
                    '    for i in range(60):\n'
                    '        print("x" * 99)\n'
                    '    fctx.actions.sleep(0)\n'
                    '    return "printed"\n\n'
                    'm = flow(implementation = _m)\n\n'
                    'if __name__ == "__flow__":\n'
                    '    m()\n')
    r = fm(home, "run", str(flow))
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[-1] == 'Ok("printed")' and lines.count("x" * 99) == 60
