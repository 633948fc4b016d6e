"""Syntax of the Flowmetal Starlark dialect: parse source text into a checked tree.

Starlark's grammar is a subset of Python's, so the source is parsed with the
standard library's `ast` module and then checked node by node: everything
outside the dialect (classes, `try`, `import`, `is`, chained comparisons,
f-strings, set literals, `**`, `global`, ...) is a `StarlarkSyntaxError` with
`file:line:col`, the source line and a caret. The checked tree is what the
resolver and compiler in `compile.py` consume.
"""

from __future__ import annotations

import ast
import io
import tokenize
import unicodedata
import warnings
from typing import Callable

from .errors import StarlarkSyntaxError

_ALLOWED_BINOPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod,
                   ast.BitAnd, ast.BitOr, ast.BitXor, ast.LShift, ast.RShift)
_ALLOWED_CMPOPS = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn)
_ALLOWED_UNARY = (ast.Not, ast.USub, ast.UAdd, ast.Invert)

_FORBIDDEN_STMT = {
    ast.ClassDef: "class definitions are not supported",
    ast.Try: "try statements are not supported",
    ast.With: "with statements are not supported",
    ast.Import: "import is not supported; use load()",
    ast.ImportFrom: "import is not supported; use load()",
    ast.Global: "global statements are not supported",
    ast.Nonlocal: "nonlocal statements are not supported",
    ast.Delete: "del statements are not supported",
    ast.Raise: "raise is not supported; use fail()",
    ast.Assert: "assert is not supported",
    ast.AsyncFunctionDef: "async functions are not supported",
    ast.AsyncFor: "async for is not supported",
    ast.AsyncWith: "async with is not supported",
    ast.AnnAssign: "annotated assignments are not supported",
    ast.Match: "match statements are not supported",
}
if hasattr(ast, "TryStar"):
    _FORBIDDEN_STMT[ast.TryStar] = "try statements are not supported"

_FORBIDDEN_EXPR = {
    ast.Set: "set literals are not supported; use set([...])",
    ast.SetComp: "set comprehensions are not supported",
    ast.GeneratorExp: "generator expressions are not supported; use a list comprehension",
    ast.JoinedStr: "f-strings are not supported; use % or .format()",
    ast.FormattedValue: "f-strings are not supported",
    ast.NamedExpr: "assignment expressions (:=) are not supported",
    ast.Await: "await is not supported",
    ast.Yield: "yield is not supported",
    ast.YieldFrom: "yield is not supported",
}


def _char_col(lines: list[str], lineno: int, byte_col: int) -> int:
    """1-based character column for an ast (line, UTF-8 byte offset) pair."""
    if 1 <= lineno <= len(lines):
        raw = lines[lineno - 1].encode("utf-8")[:byte_col]
        return len(raw.decode("utf-8", errors="replace")) + 1
    return byte_col + 1


class Parsed:
    """A checked module: the ast tree plus what error reporting needs."""

    def __init__(self, tree: ast.Module | ast.Expression, filename: str, lines: list[str]):
        self.tree = tree
        self.filename = filename
        self.lines = lines

    def pos(self, node: ast.AST) -> tuple[int, int]:
        """(line, 1-based character column) of a node."""
        line = getattr(node, "lineno", 0)
        return line, _char_col(self.lines, line, getattr(node, "col_offset", 0))

    def error(self, node: ast.AST, msg: str, cls=StarlarkSyntaxError) -> StarlarkSyntaxError:
        line, col = self.pos(node)
        text = self.lines[line - 1] if 1 <= line <= len(self.lines) else ""
        return cls(msg, self.filename, line, col, text)


def parse(source: str, filename: str = "<file>", *, mode: str = "exec") -> Parsed:
    """Parse and check a module (`mode="exec"`) or one expression (`mode="eval"`)."""
    if not isinstance(source, str):
        raise TypeError("Starlark source must be str")
    if source.startswith("\ufeff"):
        # A UTF-8 byte order mark (some editors write one) is no part of the program.
        source = source[1:]
    lines = source.splitlines()
    if "\0" in source:
        line = source[: source.index("\0")].count("\n") + 1
        raise StarlarkSyntaxError("source contains a NUL byte", filename, line, 1)
    _check_indentation(source, lines, filename)
    source = _rewrite_tokens(source, filename, lines)
    try:
        with warnings.catch_warnings():
            # Starlark rejects what Python merely warns about (bad escapes).
            warnings.simplefilter("error")
            tree = ast.parse(source, filename=filename, mode=mode)
    except (SyntaxError, ValueError, OverflowError, RecursionError, MemoryError) as e:
        if isinstance(e, SyntaxError):
            line = e.lineno or 1
            col = e.offset or 1
            msg = e.msg
            if isinstance(e, IndentationError) and "unindent" in msg:
                msg = "indentation error: " + msg
            text = lines[line - 1] if 1 <= line <= len(lines) else (e.text or "")
            raise StarlarkSyntaxError(msg, filename, line, max(col, 1), text) from None
        why = {RecursionError: "program is nested too deeply",
               MemoryError: "program is too large"}.get(type(e), f"cannot parse: {e}")
        raise StarlarkSyntaxError(why, filename, 1, 1) from None
    parsed = Parsed(tree, filename, lines)
    checker = _Checker(parsed)
    if mode == "eval":
        checker.expr(tree.body)
    else:
        checker.module(tree)
    return parsed


_SIMPLE_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11,
                   "\\": 92, "'": 39, '"': 34}


def _decode_escapes(body: str, is_bytes: bool) -> bytes | str:
    """Decode a (non-raw) Starlark string or bytes literal body.

    Strings allow only ASCII in \\x and octal escapes and no surrogates in
    \\u; bytes literals may hold any character (stored as UTF-8) and any byte.
    Raises ValueError with the message of the offending escape."""
    out = bytearray() if is_bytes else []
    i, n = 0, len(body)

    def put_char(c: str):
        if is_bytes:
            out.extend(c.encode("utf-8"))
        else:
            out.append(c)

    while i < n:
        c = body[i]
        if c != "\\":
            put_char(c)
            i += 1
            continue
        if i + 1 >= n:
            raise ValueError("unterminated escape sequence")
        e = body[i + 1]
        if e in _SIMPLE_ESCAPES:
            put_char(chr(_SIMPLE_ESCAPES[e]))
            i += 2
        elif e == "\n":
            i += 2
        elif e in "01234567":
            j = i + 1
            while j < n and j < i + 4 and body[j] in "01234567":
                j += 1
            v = int(body[i + 1:j], 8)
            if v > 255 or (not is_bytes and v > 127):
                raise ValueError(f"non-ASCII octal escape \\{body[i + 1:j]} (use \\u)")
            out.append(v) if is_bytes else out.append(chr(v))
            i = j
        elif e == "x":
            digits = body[i + 2:i + 4]
            if len(digits) != 2 or any(ch not in "0123456789abcdefABCDEF" for ch in digits):
                raise ValueError("invalid \\x escape: want two hex digits")
            v = int(digits, 16)
            if not is_bytes and v > 127:
                raise ValueError(f"non-ASCII hex escape \\x{digits} (use \\u)")
            out.append(v) if is_bytes else out.append(chr(v))
            i += 4
        elif e in "uU":
            width = 4 if e == "u" else 8
            digits = body[i + 2:i + 2 + width]
            if len(digits) != width or any(ch not in "0123456789abcdefABCDEF" for ch in digits):
                raise ValueError(f"invalid \\{e} escape: want {width} hex digits")
            v = int(digits, 16)
            if v > 0x10FFFF or 0xD800 <= v <= 0xDFFF:
                raise ValueError(f"invalid Unicode code point \\{e}{digits}")
            put_char(chr(v))
            i += 2 + width
        else:
            raise ValueError(f"invalid escape sequence \\{e}")
    return bytes(out) if is_bytes else "".join(out)


def _rewrite_tokens(source: str, filename: str, lines: list[str]) -> str:
    """Check literals Python reads differently from Starlark, rewriting them.

    Number spellings Python accepts and Starlark does not (1_000, 1j) are
    errors; string and bytes literals are decoded with Starlark's escape
    rules and, where they differ from Python's, replaced by an equivalent
    Python literal so that `ast` reads the Starlark value."""
    if "\\" not in source and "_" not in source and "j" not in source and "J" not in source \
            and source.isascii():
        return source
    edits = []

    def fail(tok, msg):
        line, col = tok.start
        text = lines[line - 1] if line <= len(lines) else ""
        raise StarlarkSyntaxError(msg, filename, line, col + 1, text)

    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return source  # ast.parse reports it with a better message
    for tok in tokens:
        if tok.type == tokenize.NUMBER:
            if "_" in tok.string or tok.string[-1] in "jJ":
                fail(tok, f"invalid number literal {tok.string}")
        elif tok.type == tokenize.STRING:
            text = tok.string
            q = min(i for i in (text.find("'"), text.find('"')) if i >= 0)
            prefix, literal = text[:q].lower(), text[q:]
            if "f" in prefix or "u" in prefix:
                continue  # the checker rejects these with its own message
            quote = literal[:3] if literal[:3] in ('"""', "\'\'\'") else literal[0]
            body = literal[len(quote):-len(quote)]
            is_bytes = "b" in prefix
            if "r" in prefix:
                if is_bytes and not body.isascii():
                    edits.append((tok.start, tok.end, repr(body.encode("utf-8"))))
                continue
            if "\\" not in body and (not is_bytes or body.isascii()):
                continue
            try:
                value = _decode_escapes(body, is_bytes)
            except ValueError as e:
                fail(tok, str(e))
            edits.append((tok.start, tok.end, repr(value)))
    if not edits:
        return source
    out_lines = source.splitlines(keepends=True)
    for (sl, sc), (el, ec), new in reversed(edits):
        first, last = out_lines[sl - 1], out_lines[el - 1]
        merged = first[:sc] + new + last[ec:]
        out_lines[sl - 1:el] = [merged] + [""] * (el - sl)
    return "".join(out_lines)


def _check_indentation(source: str, lines: list[str], filename: str) -> None:
    """Reject a tab in the indentation of a logical line.

    Only the lines that start a statement are indented; a tab at the start of
    a line inside a (triple-quoted) string, inside brackets or after a
    backslash continuation is ordinary text or whitespace, so the lines are
    read through the tokenizer to tell them apart."""
    if "\t" not in source:
        return
    at_start = True
    skip = (tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT,
            tokenize.ENCODING, tokenize.ENDMARKER)
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.NEWLINE:
                at_start = True
            elif at_start and tok.type not in skip:
                at_start = False
                line, col = tok.start
                # The token's own line: `lines` (str.splitlines) also breaks at form
                # feeds and U+2028, which tokenize does not, so its numbering drifts.
                indent = tok.line[:col]
                if "\t" in indent:
                    raise StarlarkSyntaxError("tab in indentation (use spaces)", filename, line,
                                              indent.index("\t") + 1, tok.line.rstrip("\n"))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return  # ast.parse reports it with a better message


MAX_NESTED_FUNCTIONS = 64   # defs and lambdas, one inside another


class _Checker:
    """Walks a Python ast and rejects what the Starlark dialect does not have."""

    def __init__(self, parsed: Parsed):
        self.p = parsed
        self.func_depth = 0
        self.loop_depth = 0

    def fail(self, node, msg):
        raise self.p.error(node, msg)

    # statements

    def module(self, tree: ast.Module) -> None:
        for stmt in tree.body:
            self.stmt(stmt, top=True)

    def block(self, stmts):
        for stmt in stmts:
            self.stmt(stmt, top=False)

    def stmt(self, s, top):
        t = type(s)
        if t in _FORBIDDEN_STMT:
            self.fail(s, _FORBIDDEN_STMT[t])
        if t is ast.Expr:
            if _is_load(s.value):
                if not top:
                    self.fail(s, "load statement within a function or block")
                self.load(s.value)
                return
            self.expr(s.value)
        elif t is ast.Assign:
            for target in s.targets:
                self.target(target)
            self.expr(s.value)
        elif t is ast.AugAssign:
            if not isinstance(s.op, _ALLOWED_BINOPS):
                self.fail(s, "unsupported augmented assignment operator")
            if isinstance(s.target, (ast.Tuple, ast.List)):
                self.fail(s.target, "augmented assignment to a tuple or list")
            self.target(s.target)
            self.expr(s.value)
        elif t is ast.If:
            self.expr(s.test)
            self.block(s.body)
            self.block(s.orelse)
        elif t is ast.For:
            if s.orelse:
                self.fail(s, "for loops have no else clause")
            self.loop_target(s.target)
            self.expr(s.iter)
            self.loop_depth += 1
            self.block(s.body)
            self.loop_depth -= 1
        elif t is ast.While:
            if s.orelse:
                self.fail(s, "while loops have no else clause")
            self.expr(s.test)
            self.loop_depth += 1
            self.block(s.body)
            self.loop_depth -= 1
        elif t in (ast.Break, ast.Continue):
            if self.loop_depth == 0:
                self.fail(s, f"{'break' if t is ast.Break else 'continue'} not in a loop")
        elif t is ast.Pass:
            pass
        elif t is ast.Return:
            if self.func_depth == 0:
                self.fail(s, "return statement not within a function")
            if s.value is not None:
                self.expr(s.value)
        elif t is ast.FunctionDef:
            if s.decorator_list:
                self.fail(s.decorator_list[0], "decorators are not supported")
            if getattr(s, "type_params", None):
                self.fail(s, "type parameters are not supported")
            self.arguments(s.args, s)
            if s.returns is not None:
                self.annotation(s.returns)
            self.function(s, lambda: self.block(s.body))
        else:
            self.fail(s, f"unsupported statement ({t.__name__})")

    def function(self, node: ast.AST, check_body: Callable[[], None]) -> None:
        """Check a function's body (a def's block, a lambda's expression), one
        function deeper and outside any loop."""
        if self.func_depth >= MAX_NESTED_FUNCTIONS:
            # Each level is a level of indentation in the compiled Python (CPython
            # stops at 100), and its cost grows steeply: refuse early and cheaply.
            self.fail(node, f"functions nested too deeply (at most {MAX_NESTED_FUNCTIONS})")
        saved = self.loop_depth
        self.loop_depth = 0
        self.func_depth += 1
        check_body()
        self.func_depth -= 1
        self.loop_depth = saved

    def load(self, call: ast.Call):
        if not call.args or not _is_str(call.args[0]):
            self.fail(call, "load() needs a module name string as its first argument")
        if len(call.args) < 2 and not call.keywords:
            self.fail(call, "load() needs at least one name to import")
        for arg in call.args[1:]:
            if not _is_str(arg):
                self.fail(arg, "load() names must be string literals")
            if not arg.value.isidentifier():
                self.fail(arg, f"load(): invalid name {arg.value!r}")
        for kw in call.keywords:
            if kw.arg is None or not _is_str(kw.value):
                self.fail(kw.value, "load() aliases must be name = \"string\"")

    def call_arguments(self, call: ast.Call):
        """Starlark's argument order: positional, named, then *args, then **kwargs."""
        items = [(a, "star" if isinstance(a, ast.Starred) else "pos") for a in call.args]
        items += [(k, "kwargs" if k.arg is None else "named") for k in call.keywords]
        items.sort(key=lambda it: (it[0].lineno, it[0].col_offset))
        rank = {"pos": 0, "named": 1, "star": 2, "kwargs": 3}
        last = 0
        seen = set()
        for node, kind in items:
            r = rank[kind]
            if r < last or (r == last and r >= 2):
                self.fail(node, f"argument out of order: {'*args' if kind == 'star' else '**kwargs' if kind == 'kwargs' else kind + ' argument'} here")
            last = r
            if kind == "named":
                if node.arg in seen:
                    self.fail(node, f"keyword argument {node.arg} repeated")
                seen.add(node.arg)

    def arguments(self, args: ast.arguments, node):
        if args.posonlyargs:
            self.fail(node, "positional-only parameters are not supported")
        seen = set()
        for a in args.args + args.kwonlyargs + [x for x in (args.vararg, args.kwarg) if x]:
            if a.arg in seen:
                self.fail(a, f"duplicate parameter: {a.arg}")
            seen.add(a.arg)
            if a.annotation is not None:
                self.annotation(a.annotation)
        for d in args.defaults + [d for d in args.kw_defaults if d is not None]:
            self.expr(d)

    def annotation(self, node):
        # Annotations are accepted (the seed uses them) and only resolved, never run.
        for sub in ast.walk(node):
            if not isinstance(sub, (ast.Name, ast.Attribute, ast.Subscript, ast.Tuple,
                                    ast.Constant, ast.Load, ast.BinOp, ast.BitOr, ast.List)):
                self.fail(sub, "unsupported type annotation")

    def loop_target(self, t):
        """Loop variables: an unparenthesized tuple may not end with a comma."""
        if isinstance(t, ast.Tuple) and t.elts:
            line = self.p.lines[t.lineno - 1].encode("utf-8") if t.lineno <= len(self.p.lines) else b""
            parenthesized = line[t.col_offset:t.col_offset + 1] in (b"(", b"[")
            last = t.elts[-1]
            if not parenthesized and last.end_lineno <= len(self.p.lines):
                tail = self.p.lines[last.end_lineno - 1].encode("utf-8")[last.end_col_offset:]
                if tail.lstrip().startswith(b","):
                    self.fail(last, "trailing comma in loop variables")
        self.target(t)

    def target(self, t):
        if isinstance(t, ast.Name):
            self.name(t)
        elif isinstance(t, (ast.Tuple, ast.List)):
            for e in t.elts:
                if isinstance(e, ast.Starred):
                    self.fail(e, "starred assignment targets are not supported")
                self.target(e)
        elif isinstance(t, ast.Subscript):
            self.expr(t.value)
            self.subscript_index(t.slice)
        elif isinstance(t, ast.Attribute):
            self.attr_name(t)
            self.expr(t.value)
        else:
            self.fail(t, "invalid assignment target")

    def name(self, n: ast.Name):
        if n.id == "load":
            self.fail(n, "load is a keyword")
        if not n.id.isascii() and unicodedata.normalize("NFKC", n.id) != n.id:
            # Python folds such spellings together (NFKC); Starlark would not.
            self.fail(n, f"identifier {n.id!r} is not in Unicode normal form NFKC")

    def attr_name(self, a: ast.Attribute):
        if a.attr.startswith("__") and a.attr.endswith("__"):
            self.fail(a, f"no such attribute: {a.attr}")

    def subscript_index(self, s):
        if isinstance(s, ast.Slice):
            for part in (s.lower, s.upper, s.step):
                if part is not None:
                    self.expr(part)
        elif isinstance(s, ast.Tuple):
            for e in s.elts:
                if isinstance(e, ast.Slice):
                    self.fail(e, "multi-dimensional slices are not supported")
                self.expr(e)
        else:
            self.expr(s)

    # expressions

    def expr(self, e):
        t = type(e)
        if t in _FORBIDDEN_EXPR:
            self.fail(e, _FORBIDDEN_EXPR[t])
        if t is ast.Constant:
            v = e.value
            if v is ... or isinstance(v, complex):
                self.fail(e, "unsupported literal")
            if isinstance(v, float) and v in (float("inf"), float("-inf")):
                self.fail(e, "floating-point literal out of range")
            if getattr(e, "kind", None) == "u":
                self.fail(e, "u-prefixed strings are not supported")
        elif t is ast.Name:
            self.name(e)
        elif t is ast.BoolOp:
            for v in e.values:
                self.expr(v)
        elif t is ast.BinOp:
            if isinstance(e.op, ast.Pow):
                self.fail(e, "the ** operator is not supported")
            if not isinstance(e.op, _ALLOWED_BINOPS):
                self.fail(e, "unsupported binary operator")
            self.expr(e.left)
            self.expr(e.right)
        elif t is ast.UnaryOp:
            if not isinstance(e.op, _ALLOWED_UNARY):
                self.fail(e, "unsupported unary operator")
            self.expr(e.operand)
        elif t is ast.Compare:
            if len(e.ops) != 1:
                self.fail(e, "chained comparisons are not supported; use 'and'")
            if not isinstance(e.ops[0], _ALLOWED_CMPOPS):
                self.fail(e, "'is' is not supported; use ==")
            self.expr(e.left)
            self.expr(e.comparators[0])
        elif t is ast.IfExp:
            self.expr(e.test)
            self.expr(e.body)
            self.expr(e.orelse)
        elif t is ast.Lambda:
            self.arguments(e.args, e)
            self.function(e, lambda: self.expr(e.body))
        elif t is ast.Call:
            if _is_load(e):
                self.fail(e, "load() is a statement and may appear only at top level")
            self.expr(e.func)
            self.call_arguments(e)
            for a in e.args:
                self.expr(a.value if isinstance(a, ast.Starred) else a)
            for kw in e.keywords:
                self.expr(kw.value)
        elif t is ast.Attribute:
            self.attr_name(e)
            self.expr(e.value)
        elif t is ast.Subscript:
            self.expr(e.value)
            self.subscript_index(e.slice)
        elif t in (ast.List, ast.Tuple):
            for x in e.elts:
                if isinstance(x, ast.Starred):
                    self.fail(x, "unpacking (*) in literals is not supported")
                self.expr(x)
        elif t is ast.Dict:
            for k, v in zip(e.keys, e.values):
                if k is None:
                    self.fail(v, "unpacking (**) in dict literals is not supported")
                self.expr(k)
                self.expr(v)
        elif t in (ast.ListComp, ast.DictComp):
            for gen in e.generators:
                if gen.is_async:
                    self.fail(e, "async comprehensions are not supported")
                self.loop_target(gen.target)
                self.expr(gen.iter)
                for cond in gen.ifs:
                    self.expr(cond)
            if t is ast.ListComp:
                self.expr(e.elt)
            else:
                self.expr(e.key)
                self.expr(e.value)
        elif t is ast.Starred:
            self.fail(e, "unexpected *")
        elif t is ast.Slice:
            self.fail(e, "unexpected slice")
        else:
            self.fail(e, f"unsupported expression ({t.__name__})")


def _is_str(node) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def load_statements(parsed: Parsed) -> list[tuple[str, ast.AST]]:
    """The module names a checked module loads, in order, each with its load() call
    (for `Parsed.error`). Loads are top-level statements only."""
    tree = parsed.tree
    body = tree.body if isinstance(tree, ast.Module) else []
    return [(s.value.args[0].value, s.value) for s in body
            if isinstance(s, ast.Expr) and _is_load(s.value)]


def _is_load(node) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == "load")
