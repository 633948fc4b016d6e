"""`flowmetal eval` through the real console script: output and exit codes."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = os.path.join(os.path.dirname(ROOT), "shared", "seed", "flowmetal-intro.txt")


def flowmetal(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "flowmetal", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def test_eval_prints_and_exits_zero(tmp_path):
    f = tmp_path / "ok.star"
    f.write_text('def sq(x):\n    return x * x\n\nprint("sum", sq(2) + sq(3) + 1)\n'
                 'print([sq(i) for i in range(4)])\n')
    r = flowmetal("eval", str(f))
    assert r.returncode == 0, r.stderr
    assert r.stdout == "sum 14\n[0, 1, 4, 9]\n"


def test_eval_runtime_error_exits_one_with_starlark_traceback(tmp_path):
    f = tmp_path / "bad.star"
    f.write_text('def f(d):\n    return d["missing"]\n\nprint("before")\nf({})\n')
    r = flowmetal("eval", str(f))
    assert r.returncode == 1
    assert r.stdout == "before\n"
    assert "bad.star:5:1 in <toplevel>" in r.stderr
    assert "bad.star:2:5 in f" in r.stderr
    assert "Traceback (most recent call last):\n  File" not in r.stderr  # no Python traceback


def test_eval_syntax_error_exits_two_with_position_and_caret(tmp_path):
    f = tmp_path / "syn.star"
    f.write_text("x = 1\ny = (2 +\n")
    r = flowmetal("eval", str(f))
    assert r.returncode == 2
    first = r.stderr.splitlines()[0]
    assert first.startswith(str(f) + ":2:")
    assert "^" in r.stderr


def test_eval_misuse_exits_two_with_one_line(tmp_path):
    r = flowmetal("eval", str(tmp_path / "nope.star"))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    r = flowmetal("eval")
    assert r.returncode == 2


def test_eval_relative_load(tmp_path):
    (tmp_path / "lib.star").write_text("def double(x):\n    return 2 * x\n")
    (tmp_path / "main.star").write_text('load("lib.star", "double")\nprint(double(21))\n')
    r = flowmetal("eval", str(tmp_path / "main.star"))
    assert r.returncode == 0, r.stderr
    assert r.stdout == "42\n"


@pytest.mark.skipif(not os.path.exists(SEED), reason="shared/seed is laid beside the checkout")
def test_seed_example_is_rejected_at_the_misindented_return(tmp_path):
    text = open(SEED, encoding="utf-8").read()
    code = text[text.index("\n#") + 1:]  # from its first `#` comment line to the end
    f = tmp_path / "intro.flow"
    f.write_text(code)
    bad_line = next(i for i, l in enumerate(code.splitlines(), 1) if l.strip() == "return _inner")
    r = flowmetal("eval", str(f))
    assert r.returncode == 2
    first = r.stderr.splitlines()[0]
    assert first.startswith(f"{f}:{bad_line}:"), r.stderr
    assert "indent" in first
    assert "return _inner" in r.stderr


def test_eval_a_loaded_module_that_does_not_compile_is_a_syntax_error(tmp_path):
    # It was a runtime error (exit 1) without the loaded file's position.
    (tmp_path / "syn.star").write_text("x = (1,\n")
    main = tmp_path / "main.star"
    main.write_text('print("never")\nload("./syn.star", "x")\n')
    r = flowmetal("eval", str(main), cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(f"{tmp_path / 'syn.star'}:1:5: '(' was never closed"), r.stderr
    assert r.stdout == ""   # refused before anything ran
