"""Conformance: int and float values, arithmetic, bitwise operators, conversions,
float formatting and `%` interpolation of numbers (spec: Integers,
Floating-point numbers, Arithmetic operations, String interpolation, int, float, abs)."""

import pytest

BIG = 1 << 100

EXPRS = [
    # integer arithmetic (spec examples)
    ("1 + 2", 3),
    ("100 // 5 * 9 + 32", 212),
    ("3 // 2", 1),
    ("111111111 * 111111111", 12345678987654321),
    ("1 + 2 * 3 + 4", 11),
    ("(1 + 2) * (3 + 4)", 21),
    ("7 - 10", -3),
    ("-7", -7),
    ("+7", 7),
    ("- -7", 7),
    # floored division and remainder: the sign of x % y follows the divisor
    ("-3 // 2", -2),
    ("-7 // 2", -4),
    ("7 // -2", -4),
    ("7 % 3", 1),
    ("-7 % 3", 2),
    ("7 % -3", -2),
    ("-7 % -3", -1),
    ("(-7 // 3) * 3 + (-7 % 3)", -7),
    # literals
    ("0", 0),
    ("0x7f", 127),
    ("0XFF", 255),
    ("0o755", 493),
    ("0O17", 15),
    # big integers are exact
    ("1 << 100", BIG),
    ("(1 << 100) + 1", BIG + 1),
    ("(1 << 100) // 3", BIG // 3),
    ("(1 << 100) % 7", BIG % 7),
    ("-(1 << 100) // 3", -BIG // 3),
    ("(1 << 100) * (1 << 100)", BIG * BIG),
    ("-(1 << 70) >> 3", -(1 << 67)),
    ("(1 << 64) - 1 == 18446744073709551615", True),
    ("str(1 << 100)", "1267650600228229401496703205376"),
    ("str(-(1 << 100))", "-1267650600228229401496703205376"),
    ("len(str(1 << 20000))", 6021),
    ("(1 << 100) > (1 << 99)", True),
    # bitwise (spec examples, written in decimal/hex)
    ("0x12345678 & 0xFF", 0x78),
    ("0x12345678 | 0xFF", 0x123456FF),
    ("93 ^ 429", 496),
    ("93 >> 2", 23),
    ("93 << 2", 372),
    ("-1 >> 100", -1),
    ("-8 >> 1", -4),
    ("~1", -2),
    ("~-1", 0),
    ("~0", -1),
    ("-6 & 0xF", 10),
    ("1 | 2 ^ 3 & 4", 3),
    ("8 >> 1 + 1", 2),
    ("1 + 2 << 1", 6),
    # floats
    ("1 / 2", 0.5),
    ("3 / 2", 1.5),
    ("4 / 2", 2.0),
    ("3.0 / 2", 1.5),
    ("3 / 2.0", 1.5),
    ("float(3) / 2", 1.5),
    ("3.0 // 2.0", 1.0),
    ("3.0 // 2", 1.0),
    ("7 // 2.0", 3.0),
    ("-3.5 // 1", -4.0),
    ("7.5 % 2", 1.5),
    ("-7.5 % 2", 0.5),
    ("7.5 % -2", -0.5),
    ("3.141 + 1", 4.141),
    ("2 * 0.5", 1.0),
    ("1 - 0.5", 0.5),
    ("1.5 + 1.5", 3.0),
    ("0.", 0.0),
    (".5", 0.5),
    ("1e10", 1e10),
    ("1e+10", 1e10),
    ("1e-10", 1e-10),
    ("1.1e10", 1.1e10),
    ("1.23e45 * 1.23e45", 1.23e45 * 1.23e45),
    ("-0.0 == 0.0", True),
    ("type(1.0)", "float"),
    ("type(1)", "int"),
    ("type(1 / 1)", "float"),
    ("type(2 * 1.0)", "float"),
    ("type(7 // 2)", "int"),
    ("type(7 // 2.0)", "float"),
    # mixed int/float comparison is exact
    ("1.0 == 1", True),
    ("1 == 1.0", True),
    ("1 < 1.5", True),
    ("2 > 1.5", True),
    ("((1 << 53) + 1 + 0.0) == (1 << 53) + 1", False),
    ("((1 << 53) + 1 + 0.0) - ((1 << 53) + 1)", 0.0),
    ("(1 << 53) + 1 > float(1 << 53)", True),
    ("float(1 << 53) < (1 << 53) + 1", True),
    ("(1 << 1100) > 1e300", True),
    ("-(1 << 1100) < -1e300", True),
    # NaN and infinities (spec: all NaNs are equal and greater than +Inf)
    ("float('inf') > 1e308", True),
    ("float('-inf') < -1e308", True),
    ("float('Infinity') == float('inf')", True),
    ("float('INF') == float('+inf')", True),
    ("float('-Infinity') == -float('inf')", True),
    ("sorted([2.0, float('nan'), 1.0])[1]", 2.0),
    ("sorted([float('nan'), 1.0, float('-inf')])[1]", 1.0),
    ("bool(float('nan'))", True),
    ("bool(0.0)", False),
    ("bool(-0.0)", False),
    # int()
    ("int(3.7)", 3),
    ("int(-3.7)", -3),
    ("int(1e20)", 100000000000000000000),
    ("int(True)", 1),
    ("int(False)", 0),
    ("int(7)", 7),
    ("int('21')", 21),
    ("int('-42')", -42),
    ("int('+7')", 7),
    ("int('1234', 16)", 4660),
    ("int('0x1234', 16)", 4660),
    ("int('0x1234', 0)", 4660),
    ("int('0b0', 16)", 176),
    ("int('0b111', 0)", 7),
    ("int('0o17', 0)", 15),
    ("int('17', 8)", 15),
    ("int('z', 36)", 35),
    ("int('Z', 36)", 35),
    ("int('101', 2)", 5),
    ("int('-ff', 16)", -255),
    ("int('123456789012345678901234567890')", 123456789012345678901234567890),
    # float()
    ("float()", 0.0),
    ("float(3)", 3.0),
    ("float(-3)", -3.0),
    ("float(True)", 1.0),
    ("float(False)", 0.0),
    ("float(2.5)", 2.5),
    ("float('1.5')", 1.5),
    ("float('-1.5')", -1.5),
    ("float('1e3')", 1000.0),
    ("float('.5')", 0.5),
    ("float(1 << 60)", float(1 << 60)),
    # abs
    ("abs(-5)", 5),
    ("abs(5)", 5),
    ("abs(0)", 0),
    ("abs(-2.5)", 2.5),
    ("abs(-(1 << 100))", BIG),
    # str / repr of numbers
    ("str(1.0)", "1.0"),
    ("repr(1.0)", "1.0"),
    ("str(0.0)", "0.0"),
    ("str(-0.0)", "-0.0"),
    ("str(0.5)", "0.5"),
    ("str(-2.5)", "-2.5"),
    ("str(100.0)", "100.0"),
    ("str(3 / 2)", "1.5"),
    ("str(4 / 2)", "2.0"),
    ("str(0.1)", "0.1"),
    ("str(1 / 3)", "0.3333333333333333"),
    ("str(1e100)", "1e+100"),
    ("str(1.23e45 * 1.23e45)", "1.5129e+90"),
    ("str(1e-100)", "1e-100"),
    ("str([1.0, 2])", "[1.0, 2]"),
    ("str(42)", "42"),
    ("str(-42)", "-42"),
    ("repr(42)", "42"),
    # % interpolation of numbers (spec: String interpolation)
    ("'%d' % 42", "42"),
    ("'%d' % -42", "-42"),
    ("'%d' % 3.7", "3"),
    ("'%d' % (1 << 100)", "1267650600228229401496703205376"),
    ("'%o' % 8", "10"),
    ("'%x' % 255", "ff"),
    ("'%X' % 255", "FF"),
    ("'%x' % -255", "-ff"),
    ("'0x%x' % (0x1234 & 0xf00f)", "0x1004"),
    ("'%e' % 1230000000000", "1.230000e+12"),
    ("'%E' % 1.23e12", "1.230000E+12"),
    ("'%f' % 1.23e12", "1230000000000.000000"),
    ("'%F' % 1.5", "1.500000"),
    ("'%f' % 2", "2.000000"),
    ("'%g' % 1.1", "1.1"),
    ("'%g' % 1e45", "1e+45"),
    ("'%g' % 1.2e12", "1.2e+12"),
    ("'%G' % 1.2e12", "1.2E+12"),
    ("'%s' % 1.0", "1.0"),
    ("'%s' % 7", "7"),
    ("'%r' % 7", "7"),
    ("'%d%%' % 50", "50%"),
]


@pytest.mark.parametrize("expr,want", EXPRS, ids=[e for e, _ in EXPRS])
def test_expr(ev, same, expr, want):
    same(ev(expr), want)


ERRORS = [
    "1 // 0",
    "1 % 0",
    "1 / 0",
    "1.0 / 0.0",
    "1.0 / 0",
    "1 / 0.0",
    "1.0 // 0",
    "1.0 % 0.0",
    "(1 << 100) // 0",
    "True + 1",
    "1 + True",
    "True * 2",
    "2 - False",
    "-True",
    "1 + '1'",
    "'1' + 1",
    "1 + None",
    "None + None",
    "'a' - 'b'",
    "[] - []",
    "1.5 & 1",
    "1 | 1.0",
    "~1.0",
    "-'a'",
    "1 << -1",
    "1 >> -1",
    "1 < 'a'",
    "'a' > 1",
    "None < None",
    "None < 1",
    "1 < [1]",
    "(1 << 1100) + 0.5",
    "float(1 << 1100)",
    "int('0x1234')",
    "int('abc')",
    "int('')",
    "int('1.5')",
    "int('12', 1)",
    "int('12', 37)",
    "int('9', 8)",
    "int(float('inf'))",
    "int(float('nan'))",
    "int(None)",
    "int([1])",
    "float('x')",
    "float('')",
    "float('1e999')",
    "float(None)",
    "float([])",
    "abs('x')",
    "abs(None)",
    "'%d' % 'x'",
    "'%d' % True",
    "'%d %d' % (1,)",
    "'%d' % (1, 2)",
    "'%z' % 1",
    "'%' % ()",
    "'coordinates=%s' % (40, -74)",
]


@pytest.mark.parametrize("expr", ERRORS)
def test_error(fails, expr):
    fails(expr, expr=True)


def test_float_literal_too_large_is_static_error(sl, fails, capsys):
    # "It is a static error if a floating-point literal denotes a value whose
    # magnitude is too large to be represented as a finite float."
    err = fails('print("ran")\nx = 1e999\n')
    assert not isinstance(err, sl.EvalError)
    assert capsys.readouterr().out == ""


def test_int_float_hash_consistency(ev):
    # equal values have equal hashes: usable interchangeably as dict keys
    assert ev("{1.0: 'a'}[1]") == "a"
    assert ev("{2: 'b'}[2.0]") == "b"


def test_augmented_numeric_ops(out):
    prog = """
    def f():
        x = 10
        x += 5
        x -= 3
        x *= 2
        print(x)
        x //= 5
        print(x)
        x %= 3
        print(x)
        x |= 12
        x &= 10
        x ^= 3
        print(x)
        x <<= 4
        x >>= 2
        print(x)
        x /= 4
        print(x)
    f()
    """
    assert out(prog) == "24\n4\n1\n11\n44\n11.0\n"
