"""Unit tests of `flowmetal.secrets`: the opaque value, the file, the environment."""

from __future__ import annotations

import pickle

import pytest

from flowmetal.secrets import (SECRET_TEXT, Redactor, Secret, SecretError, SecretSource,
                               check_names, from_plain, reveal, secrets_struct, to_plain)
from flowmetal.starlark.values import to_repr, to_str

PLAIN = "s3cr3t-value-42"


def write_secrets(home, text, mode=0o600):
    p = home / "secrets"
    p.write_text(text)
    p.chmod(mode)
    return p


def test_secret_is_opaque_everywhere():
    s = Secret("API_TOKEN")
    assert repr(s) == str(s) == f"{s}" == "%s" % s == SECRET_TEXT
    assert to_repr(s) == to_str(s) == SECRET_TEXT
    data = pickle.dumps(s)
    assert PLAIN.encode() not in data
    assert pickle.loads(data) == s
    assert to_repr(secrets_struct(["API_TOKEN"])) == f"struct(API_TOKEN = {SECRET_TEXT})"


def test_bad_names_are_refused():
    with pytest.raises(SecretError, match="invalid secret name"):
        Secret("1BAD")
    with pytest.raises(SecretError, match="list of names"):
        check_names("API_TOKEN")
    assert check_names(["A", "B", "A"]) == ("A", "B")


def test_file_and_env(tmp_path):
    write_secrets(tmp_path, "# comment\n\nAPI_TOKEN=" + PLAIN + "\nexport QUOTED='a b'\n")
    src = SecretSource(tmp_path, environ={})
    assert src.get("API_TOKEN") == PLAIN
    assert src.get("QUOTED") == "a b"
    env_src = SecretSource(tmp_path, environ={"FLOWMETAL_SECRET_API_TOKEN": "from-env"})
    assert env_src.get("API_TOKEN") == "from-env"


def test_missing_secret_names_it(tmp_path):
    src = SecretSource(tmp_path, environ={})
    with pytest.raises(SecretError) as e:
        src.require(["NOPE"])
    assert "missing secret NOPE" in str(e.value)
    assert "FLOWMETAL_SECRET_NOPE" in str(e.value)


def test_readable_file_is_refused(tmp_path):
    write_secrets(tmp_path, f"API_TOKEN={PLAIN}\n", mode=0o644)
    with pytest.raises(SecretError, match="chmod 600") as e:
        SecretSource(tmp_path, environ={}).get("API_TOKEN")
    assert PLAIN not in str(e.value)


def test_malformed_line_is_not_echoed(tmp_path):
    write_secrets(tmp_path, PLAIN + "\n")
    with pytest.raises(SecretError, match=r"secrets:1: expected NAME=value") as e:
        SecretSource(tmp_path, environ={}).get("X")
    assert PLAIN not in str(e.value)


def test_plain_form_and_reveal(tmp_path):
    write_secrets(tmp_path, f"API_TOKEN={PLAIN}\n")
    env = {"A": "1", "T": Secret("API_TOKEN")}
    plain = to_plain(env)
    assert plain == {"A": "1", "T": {"$secret": "API_TOKEN"}}
    assert from_plain(plain) == env
    used: list[str] = []
    assert reveal(plain, SecretSource(tmp_path, environ={}), used) == {"A": "1", "T": PLAIN}
    assert used == [PLAIN]


def test_redactor():
    r = Redactor([PLAIN, "ab"])   # too short to redact: left alone
    assert r.text(f"token={PLAIN}; ab") == f"token={SECRET_TEXT}; ab"
    assert r.data(PLAIN.encode()) == SECRET_TEXT.encode()
    assert r.any({"k": [PLAIN, (PLAIN,)]}) == {"k": [SECRET_TEXT, (SECRET_TEXT,)]}


def test_environ_without_secrets(monkeypatch):
    from flowmetal.secrets import environ_without_secrets
    monkeypatch.setenv("FLOWMETAL_SECRET_X", "v1")
    monkeypatch.setenv("PLAIN_X", "v2")
    env = environ_without_secrets()
    assert "FLOWMETAL_SECRET_X" not in env and env["PLAIN_X"] == "v2"
