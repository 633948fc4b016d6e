"""Conformance: string literals and escapes, indexing, slicing with strides,
operators, every string method, `%` interpolation and `str.format`
(spec: String literals, Strings, Indexing, Slice expressions, String
interpolation, Built-in methods string·*).

Dialect: strings are sequences of Unicode code points, and are not iterable.
"""

import pytest

EXPRS = [
    # literals and escapes
    ("'abc'", "abc"),
    ('"abc"', "abc"),
    ("'''a\nb'''", "a\nb"),
    ('"""a\'\'b"""', "a''b"),
    ("'Yes, it\\'s a classic.'", "Yes, it's a classic."),
    ('"Have you read \\"X?\\""', 'Have you read "X?"'),
    (r"'\a\b\f\n\r\t\v'", "\x07\x08\x0c\n\r\t\x0b"),
    (r"'\\'", "\\"),
    (r"'\0'", "\x00"),
    (r"'\12'", "\n"),
    (r"'\101-\132'", "A-Z"),
    (r"'\119'", "\t9"),
    (r"'\x00'", "\x00"),
    (r"'\x0A'", "\n"),
    (r"'\x41-\x5A'", "A-Z"),
    (r"'\u0041'", "A"),
    (r"'\u0414'", "\u0414"),
    (r"'\u754c'", "\u754c"),
    (r"'\U0001F600'", "\U0001F600"),
    ("'abc\\\ndef'", "abcdef"),
    (r"r'a\nb'", "a\\nb"),
    ("r'a\\\nb'", "a\\\nb"),
    (r"r'\d+\.\w*'", "\\d+\\.\\w*"),
    ("'a' + 'b'", "ab"),
    ("'\u00e9t\u00e9'", "\u00e9t\u00e9"),
    # length and indexing count code points
    ("len('')", 0),
    ("len('abc')", 3),
    ("len('\u0414')", 1),
    ("len('\u754c')", 1),
    ("len('\U0001F600')", 1),
    ("len('h\u00e9llo \U0001F603')", 7),
    ("'h\u00e9llo'[1]", "\u00e9"),
    ("'\U0001F600x'[1]", "x"),
    ("'hello'[0]", "h"),
    ("'hello'[4]", "o"),
    ("'hello'[-1]", "o"),
    ("'hello'[-5]", "h"),
    ("'abc'[0]", "a"),
    ("'abc'[1]", "b"),
    ("'abc'[-1]", "c"),
    # slicing (spec examples and strides)
    ("'hello'[1:4]", "ell"),
    ("'hello'[1:]", "ello"),
    ("'hello'[:4]", "hell"),
    ("'hello'[-3:-1]", "ll"),
    ("'hello'[-1000:1000]", "hello"),
    ("'abc'[1:]", "bc"),
    ("'abc'[:-1]", "ab"),
    ("'abc'[1:-1]", "b"),
    ("'banana'[1::2]", "aaa"),
    ("'banana'[4::-2]", "nnb"),
    ("'hello'[::-1]", "olleh"),
    ("'hello'[::2]", "hlo"),
    ("'hello'[3:1]", ""),
    ("'hello'[3:1:-1]", "ll"),
    ("'hello'[-1:-6:-1]", "olleh"),
    ("'hello'[:-10:-1]", "olleh"),
    ("'hello'[10:]", ""),
    ("'hello'[10::-1]", "olleh"),
    ("'hello'[-10::-1]", ""),
    ("'hello'[None:None:None]", "hello"),
    ("'hello'[None:2]", "he"),
    ("'hello'[:]", "hello"),
    ("'abcdefgh'[1:7:3]", "be"),
    ("'abcdefgh'[7:1:-3]", "he"),
    ("'\u00e9\u754c\U0001F600'[::-1]", "\U0001F600\u754c\u00e9"),
    # operators
    ("'Hello, ' + 'world'", "Hello, world"),
    ("'mur' * 2", "murmur"),
    ("2 * 'ab'", "abab"),
    ("'ab' * 0", ""),
    ("'ab' * -1", ""),
    ("'nasty' in 'dynasty'", True),
    ("'a' in 'banana'", True),
    ("'f' not in 'way'", True),
    ("'' in 'abc'", True),
    ("'abc' in 'abc'", True),
    ("'abcd' in 'abc'", False),
    ("'abc' < 'abd'", True),
    ("'ab' < 'abc'", True),
    ("'Z' < 'a'", True),
    ("'b' > 'abc'", True),
    ("'abc' == 'abc'", True),
    ("'abc' != 'abd'", True),
    ("'abc' <= 'abc'", True),
    ("'abc' == 1", False),
    ("bool('')", False),
    ("bool('0')", True),
    ("not ''", True),
    ("type('')", "string"),
    # str / repr
    ("str('x')", "x"),
    ("repr('x')", '"x"'),
    ("repr('')", '""'),
    ("str([1, 'x'])", '[1, "x"]'),
    ("repr([1, 'x'])", '[1, "x"]'),
    ("str(('a',))", '("a",)'),
    ("str({'a': 'b'})", '{"a": "b"}'),
    ("str(None)", "None"),
    ("str(True)", "True"),
    ("str(False)", "False"),
    ("str(range(10))", "range(10)"),
    ("str(range(1, 10))", "range(1, 10)"),
    ("str(range(1, 10, 2))", "range(1, 10, 2)"),
    ("str([[], (), {}])", "[[], (), {}]"),
    ("str((1, 2))", "(1, 2)"),
    ("str(['a\\nb'])", '["a\\nb"]'),
    # methods (spec examples first)
    ("'hello, world!'.capitalize()", "Hello, world!"),
    ("'HELLO wORLD'.capitalize()", "Hello world"),
    ("''.capitalize()", ""),
    ("'hello, world!'.count('o')", 2),
    ("'hello, world!'.count('o', 7, 12)", 1),
    ("'aaaa'.count('aa')", 2),
    ("'abc'.count('')", 4),
    ("'banana'.count('a', -2)", 1),
    ("list('Hello, 123'.elems())", ["H", "e", "l", "l", "o", ",", " ", "1", "2", "3"]),
    ("list('h\u00e9\U0001F600'.elems())", ["h", "\u00e9", "\U0001F600"]),
    ("type('abc'.elems())", "string.elems"),
    ("str('ab'.elems())", '"ab".elems()'),
    ("len(list(''.elems()))", 0),
    ("'filename.sky'.endswith('.sky')", True),
    ("'filename.sky'.endswith('.sky', 9, 12)", False),
    ("'filename.sky'.endswith('name', 0, 8)", True),
    ("'foo.cc'.endswith(('.cc', '.h'))", True),
    ("'foo.py'.endswith(('.cc', '.h'))", False),
    ("'abc'.endswith('')", True),
    ("'filename.sky'.startswith('filename')", True),
    ("'filename.star'.startswith('name', 4)", True),
    ("'filename.star'.startswith('name', 4, 7)", False),
    ("'abc'.startswith(('a', 'A'))", True),
    ("'ABC'.startswith(('a', 'A'))", True),
    ("'def'.startswith(('a', 'A'))", False),
    ("'bonbon'.find('on')", 1),
    ("'bonbon'.find('on', 2)", 4),
    ("'bonbon'.find('on', 2, 5)", -1),
    ("'bonbon'.find('x')", -1),
    ("'bonbon'.find('')", 0),
    ("'bonbon'.find('on', -2)", 4),
    ("'bonbon'.rfind('on')", 4),
    ("'bonbon'.rfind('on', None, 5)", 1),
    ("'bonbon'.rfind('on', 2, 5)", -1),
    ("'bonbon'.index('on')", 1),
    ("'bonbon'.index('on', 2)", 4),
    ("'bonbon'.rindex('on')", 4),
    ("'bonbon'.rindex('on', None, 5)", 1),
    ("'a{x}b{y}c{}'.format(1, x=2, y=3)", "a2b3c1"),
    ("'a{}b{}c'.format(1, 2)", "a1b2c"),
    ("'({1}, {0})'.format('zero', 'one')", "(one, zero)"),
    ("'{0}{0}'.format('ab')", "abab"),
    ("'{{}}'.format()", "{}"),
    ("'{{{}}}'.format(1)", "{1}"),
    ("'{}'.format([1, 'a'])", '[1, "a"]'),
    ("'{}'.format('a')", "a"),
    ("'{}'.format(None)", "None"),
    ("'{}'.format(1.0)", "1.0"),
    ("'{0!r} {0!s}'.format('heterological')", '"heterological" heterological'),
    ("'{x!r}'.format(x=1)", "1"),
    ("'no fields'.format(1, 2, x=3)", "no fields"),
    ("'base64'.isalnum()", True),
    ("'Catch-22'.isalnum()", False),
    ("''.isalnum()", False),
    ("'ABC'.isalpha()", True),
    ("'Catch-22'.isalpha()", False),
    ("''.isalpha()", False),
    ("'\u00e9t\u00e9'.isalpha()", True),
    ("'123'.isdigit()", True),
    ("'Catch-22'.isdigit()", False),
    ("''.isdigit()", False),
    ("'hello, world'.islower()", True),
    ("'Catch-22'.islower()", False),
    ("'123'.islower()", False),
    ("'    '.isspace()", True),
    ("'\\r\\t\\n'.isspace()", True),
    ("''.isspace()", False),
    ("' a '.isspace()", False),
    ("'Hello, World!'.istitle()", True),
    ("'Catch-22'.istitle()", True),
    ("'HAL-9000'.istitle()", False),
    ("'123'.istitle()", False),
    ("'HAL-9000'.isupper()", True),
    ("'Catch-22'.isupper()", False),
    ("'123'.isupper()", False),
    ("', '.join(['one', 'two', 'three'])", "one, two, three"),
    ("'a'.join('ctmrn'.elems())", "catamaran"),
    ("','.join([])", ""),
    ("','.join(['x'])", "x"),
    ("'-'.join(('a', 'b'))", "a-b"),
    ("''.join({'a': 1, 'b': 2})", "ab"),
    ("'Hello, World!'.lower()", "hello, world!"),
    ("'Hello, World!'.upper()", "HELLO, WORLD!"),
    ("'\u00e9'.upper()", "\u00c9"),
    ("'hElLo, WoRlD!'.title()", "Hello, World!"),
    ("'\\n hello  '.lstrip()", "hello  "),
    ("'   hello  '.lstrip('h o')", "ello  "),
    ("'  hello\\r '.rstrip()", "  hello"),
    ("'  hello   '.rstrip('h o')", "  hell"),
    ("'\\rhello\\t '.strip()", "hello"),
    ("'  hello   '.strip('h o')", "ell"),
    ("'xxhixx'.strip('x')", "hi"),
    ("''.strip()", ""),
    ("'one/two/three'.partition('/')", ("one", "/", "two/three")),
    ("'abc'.partition('x')", ("abc", "", "")),
    ("'one/two/three'.rpartition('/')", ("one/two", "/", "three")),
    ("'banana'.removeprefix('ban')", "ana"),
    ("'banana'.removeprefix('ana')", "banana"),
    ("'bbaa'.removeprefix('b')", "baa"),
    ("'banana'.removesuffix('ana')", "ban"),
    ("'banana'.removesuffix('ban')", "banana"),
    ("'bbaa'.removesuffix('a')", "bba"),
    ("'banana'.replace('a', 'o')", "bonono"),
    ("'banana'.replace('a', 'o', 2)", "bonona"),
    ("'banana'.replace('a', 'o', 0)", "banana"),
    ("'banana'.replace('a', 'o', -1)", "bonono"),
    ("'banana'.replace('x', 'o')", "banana"),
    ("'banana'.replace('an', '')", "ba"),
    ("'banana'.rsplit('n')", ["ba", "a", "a"]),
    ("'banana'.rsplit('n', 1)", ["bana", "a"]),
    ("'one two  three'.rsplit(None, 1)", ["one two", "three"]),
    ("'  a  b '.rsplit()", ["a", "b"]),
    ("'one two  three'.split()", ["one", "two", "three"]),
    ("'one two  three'.split(' ')", ["one", "two", "", "three"]),
    ("'one two  three'.split(None, 1)", ["one", "two  three"]),
    ("'banana'.split('n')", ["ba", "a", "a"]),
    ("'banana'.split('n', 1)", ["ba", "ana"]),
    ("'banana'.split('n', -1)", ["ba", "a", "a"]),
    ("'food'.split('o')", ["f", "", "d"]),
    ("''.split(',')", [""]),
    ("'   '.split()", []),
    ("''.split()", []),
    ("' \\t a\\nb  '.split()", ["a", "b"]),
    ("'a,b,,c'.split(',')", ["a", "b", "", "c"]),
    ("'A\\nB\\rC\\r\\nD'.splitlines()", ["A", "B", "C", "D"]),
    ("'one\\n\\ntwo'.splitlines()", ["one", "", "two"]),
    ("'one\\n\\ntwo'.splitlines(True)", ["one\n", "\n", "two"]),
    ("'one\\n'.splitlines()", ["one"]),
    ("''.splitlines()", []),
    # bound methods
    ("'banana'.count('a')", 3),
    ("['able', 'baker', 'charlie'].index('baker')", 1),
    # % interpolation
    ("'Hello %s' % 'Bob'", "Hello Bob"),
    ("'Hello %s, your score is %d' % ('Bob', 75)", "Hello Bob, your score is 75"),
    ("'coordinates=%s' % ((40, -74),)", "coordinates=(40, -74)"),
    ("'%s' % [1, 'a']", '[1, "a"]'),
    ("'%r' % 'x'", '"x"'),
    ("'%r' % [1, 'a']", '[1, "a"]'),
    ("'%s' % None", "None"),
    # %c of a surrogate is U+FFFD, as chr() gives: a string is always valid text
    ("'%c' % 0xD800", "\ufffd"),
    ("'%c' % 0x1F600", "\U0001F600"),
    ("'%s' % True", "True"),
    ("'%s and %s' % ('a', 'b')", "a and b"),
    ("'100%%' % ()", "100%"),
    ("'%s%%' % 5", "5%"),
    ("'no conversions' % ()", "no conversions"),
]


@pytest.mark.parametrize("expr,want", EXPRS, ids=[e for e, _ in EXPRS])
def test_expr(ev, same, expr, want):
    same(ev(expr), want)


@pytest.mark.parametrize("s", [
    "a\"b", "it's", "tab\there", "new\nline", "back\\slash", "\u0414\U0001F600",
    "\x00", "\x7f", "\x01\x1f", "\r\n", "'\"'", "",
])
def test_repr_is_double_quoted_literal_that_round_trips(sl, s):
    r = sl.eval_expr("repr(s)", predeclared={"s": s})
    assert r.startswith('"') and r.endswith('"'), r
    assert "\n" not in r and "\r" not in r and "\x00" not in r
    assert sl.eval_expr(r) == s
    assert sl.eval_expr("str([s])", predeclared={"s": s}) == "[" + r + "]"


ERRORS = [
    # strings are not iterable
    "[c for c in 'abc']",
    "list('abc')",
    "tuple('ab')",
    "set('ab')",
    "sorted('abc')",
    "reversed('abc')",
    "enumerate('ab')",
    "zip('ab')",
    "any('ab')",
    "all('ab')",
    "max('abc')",
    "','.join('abc')",
    "dict('ab')",
    "[].extend('ab')",
    # indexing and slicing
    "'hello'[5]",
    "'hello'[-6]",
    "''[0]",
    "'abc'['a']",
    "'abc'[1.0]",
    "'abc'[None]",
    "'abc'[::0]",
    "'abc'[1:'a']",
    "'abc'[1.0:]",
    # operators
    "'a' + 1",
    "'a' * 'b'",
    "'a' * 1.5",
    "'ab' * True",
    "True * 'ab'",
    "1 in 'abc'",
    "'a' < 1",
    "-'a'",
    # methods
    "'banana'.reverse()",
    "'abc'.nosuchmethod",
    "'bonbon'.index('on', 2, 5)",
    "'bonbon'.rindex('on', 2, 5)",
    "'bonbon'.index('x')",
    "'a'.partition('')",
    "'a'.rpartition('')",
    "'a'.partition(1)",
    "'a'.split('')",
    "'a'.rsplit('')",
    "','.join([1, 2])",
    "','.join(['a', None])",
    "'a'.removeprefix(1)",
    "'a'.removesuffix(None)",
    "'a'.replace('a', 1)",
    "'a'.startswith(1)",
    "'a'.endswith(['a'])",
    "'a'.count(1)",
    "'a'.find(None)",
    "'a'.upper(1)",
    # str.format
    "'{} {0}'.format(1, 2)",
    "'{0} {}'.format(1, 2)",
    "'{'.format()",
    "'{1}'.format(0)",
    "'{}'.format()",
    "'{x}'.format()",
    "'{x}'.format(1)",
    "'{0!z}'.format(1)",
    "'{0[0]}'.format([1])",
    "'{0.real}'.format(1)",
    # % interpolation
    "'%s %s' % ('a',)",
    "'%s' % ('a', 'b')",
    "'%s' % ()",
    "'%q' % 1",
    "'abc %' % 1",
    "'no conversions' % 1",
]


@pytest.mark.parametrize("expr", ERRORS)
def test_error(fails, expr):
    fails(expr, expr=True)


@pytest.mark.parametrize("src", [
    r"x = '\q'",                # unknown escape
    r"x = '\xf0'",              # hex escape > 127 in a string
    r"x = '\400'",              # octal escape > 127 in a string
    r"x = '\ud83d'",            # surrogate
    r"x = '\U00110000'",        # beyond U+10FFFF
    r"x = '\u12'",              # too few hex digits
    r"x = '\x4'",               # too few hex digits
    "x = 'abc",                 # unterminated
    'x = "abc\ndef"',           # newline in ordinary string
    "x = '''abc",               # unterminated triple-quoted
])
def test_bad_literal_is_syntax_error(sl, fails, capsys, src):
    fails('print("ran")\n' + src + "\n", sl.StarlarkSyntaxError)
    assert capsys.readouterr().out == ""


def test_string_immutable(fails):
    fails("""
    s = "abc"
    s[0] = "x"
    """)


def test_for_over_string_is_error(fails):
    fails("""
    def f():
        for c in "abc":
            pass
    f()
    """)


def test_multiline_string_line_endings(sl):
    g = sl.exec_file("x = '''a\r\nb'''\n")
    assert g["x"] == "a\nb"


def test_elems_iteration(out):
    assert out("""
    def f():
        for c in "ab\u00e9".elems():
            print(c)
    f()
    """) == "a\nb\n\u00e9\n"


def test_format_is_hermetic(ev):
    # Only {name} / {index} fields: no attribute or item access into Python objects.
    assert ev("'{a}-{b}'.format(a=[1], b={'k': (1, 'v')})") == '[1]-{"k": (1, "v")}'


def test_chr_ord_if_provided(sl):
    try:
        got = sl.eval_expr("[ord('A'), ord('\u0414'), chr(65), chr(0x1F600)]")
    except sl.ResolveError:
        pytest.skip("chr/ord are not predeclared in this dialect")
    assert got == [65, 0x414, "A", "\U0001F600"]


def test_lone_surrogate_from_host(sl):
    """A host string holding an invalid code point: bytes() substitutes U+FFFD (spec: bytes);
    other operations give a value or a StarlarkError, never a Python UnicodeError."""
    pre = {"s": "a\ud800b"}
    assert sl.eval_expr("bytes(s)", predeclared=pre) == b"a\xef\xbf\xbdb"
    for expr in ["len(s)", "s.upper()", "repr(s)", "str([s])", "s + 'c'", "s[1]", "hash(s)", "s.split('\\ud800')",
                 "'%s' % s", "'{}'.format(s)", "s == s", "{s: 1}"]:
        try:
            sl.eval_expr(expr, predeclared=pre)
        except sl.StarlarkError:
            pass


def test_source_with_lone_surrogate(sl):
    try:
        sl.exec_file("x = 'a\ud800'\n")
    except sl.StarlarkError:
        pass
