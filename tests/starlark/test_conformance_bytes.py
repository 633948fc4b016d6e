"""Conformance: bytes literals and values (spec: Bytes literals, Bytes, bytes,
bytes·elems, Membership tests)."""

import pytest

EXPRS = [
    # literals
    ('b"abc"', b"abc"),
    ("b'abc'", b"abc"),
    ('b"""abc"""', b"abc"),
    ("b'''a\nb'''", b"a\nb"),
    (r'br"a\nb"', b"a\\nb"),
    (r"rb'a\nb'", b"a\\nb"),
    (r'b"\xff\x00"', b"\xff\x00"),
    (r'b"\377"', b"\xff"),
    (r'b"\000"', b"\x00"),
    (r'b"\101\102"', b"AB"),
    (r'b"\n\t"', b"\n\t"),
    (r'b"\u0414"', "\u0414".encode()),
    (r'b"\U0001F600"', "\U0001F600".encode()),
    ('b"\u0414"', "\u0414".encode()),
    ('b""', b""),
    # length, indexing and slicing
    ('len(b"abc")', 3),
    (r'len(b"\xff")', 1),
    ('len(b"\u0414")', 2),
    ('len(b"\U0001F600")', 4),
    ('b"abc"[0]', 97),
    ('b"abc"[-1]', 99),
    ('type(b"abc"[0])', "int"),
    ('b"abc"[1:]', b"bc"),
    ('b"abc"[:-1]', b"ab"),
    ('b"abcdef"[::2]', b"ace"),
    ('b"abcdef"[::-1]', b"fedcba"),
    ('b"abcdef"[4:1:-2]', b"ec"),
    ('b"abc"[5:]', b""),
    # operators
    ('b"ab" + b"cd"', b"abcd"),
    ('b"ab" * 2', b"abab"),
    ('2 * b"ab"', b"abab"),
    ('b"ab" * 0', b""),
    ('b"nasty" in b"dynasty"', True),
    ('b"x" in b"dynasty"', False),
    ('97 in b"abc"', True),
    ('100 in b"abc"', False),
    ('b"" in b"abc"', True),
    ('b"a" < b"b"', True),
    ('b"ab" < b"abc"', True),
    (r'b"\xff" > b"a"', True),
    ('b"abc" == b"abc"', True),
    ('b"abc" != b"abd"', True),
    ('b"abc" == "abc"', False),
    ('{b"k": 1}[b"k"]', 1),
    ('hash(b"xyz") == hash(b"xyz")', True),
    ('bool(b"")', False),
    ('bool(b"\\x00")', True),
    ('type(b"")', "bytes"),
    # bytes()
    ('bytes("hello \U0001F603")', "hello \U0001F603".encode()),
    ('bytes(b"hello")', b"hello"),
    ("bytes([65, 66, 67])", b"ABC"),
    ("bytes((0, 255))", b"\x00\xff"),
    ("bytes([])", b""),
    ('bytes("")', b""),
    ('bytes("\u0414") == b"\u0414"', True),
    # str / repr
    ('str(b"abc")', "abc"),
    ('str(b"\u0414")', "\u0414"),
    (r'str(b"\xff")', "\ufffd"),
    (r'str(b"a\xffb")', "a\ufffdb"),
    ('repr(b"abc")', 'b"abc"'),
    # elems
    ('type(b"ABC".elems())', "bytes.elems"),
    ('list(b"ABC".elems())', [65, 66, 67]),
    ('str(b"ABC".elems())', 'b"ABC".elems()'),
    (r'list(b"\xff\x00".elems())', [255, 0]),
    ('[x + 1 for x in b"ab".elems()]', [98, 99]),
]


@pytest.mark.parametrize("expr,want", EXPRS, ids=[e for e, _ in EXPRS])
def test_expr(ev, same, expr, want):
    same(ev(expr), want)


@pytest.mark.parametrize("value", [b"", b"abc", b"\x00\xff\x7f\"'\\\n", "\u0414".encode()])
def test_repr_round_trips(sl, value):
    r = sl.eval_expr("repr(x)", predeclared={"x": value})
    assert r.startswith('b"') and r.endswith('"'), r
    assert sl.eval_expr(r) == value


def test_bytes_from_host_and_back(sl):
    assert sl.eval_expr("x + b'!'", predeclared={"x": b"\x00hi"}) == b"\x00hi!"


ERRORS = [
    "bytes(65)",
    "bytes([256])",
    "bytes([-1])",
    "bytes(['a'])",
    "bytes(None)",
    'b"abc" + "abc"',
    '"abc" + b"abc"',
    'b"abc"[3]',
    'b"abc"[-4]',
    'b"abc"["a"]',
    'b"abc"[::0]',
    'list(b"ab")',
    '[x for x in b"ab"]',
    'sorted(b"ba")',
    'tuple(b"ab")',
    'b"a" < "a"',
    '"a" in b"abc"',
    'b"abc".nosuchmethod()',
    'b"ab" * b"ab"',
]


@pytest.mark.parametrize("expr", ERRORS)
def test_error(fails, expr):
    fails(expr, expr=True)


@pytest.mark.parametrize("src", [
    r'x = b"\ud800"',       # surrogate
    r'x = b"\q"',           # unknown escape
    r'x = b"\x4"',          # short hex escape
    'x = b"abc',            # unterminated
])
def test_bad_bytes_literal_is_syntax_error(sl, fails, src):
    fails(src + "\n", sl.StarlarkSyntaxError)


def test_bytes_immutable(fails):
    fails("""
    b = b"abc"
    b[0] = 1
    """)


def test_for_over_bytes_is_error(fails):
    fails("""
    def f():
        for c in b"abc":
            pass
    f()
    """)
