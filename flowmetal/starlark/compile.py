"""Resolve and compile a checked Starlark module to Python source.

Every Starlark function becomes a plain Python function (calls are Python
calls, loops are Python loops) so the common path runs at native speed. To
make a running program suspendable without slowing that path, expressions are
put in A-normal form around every call that may suspend: each such call sits
alone on its own generated line and assigns a named temporary. When a host
builtin raises `Suspend`, the exception unwinds the Python stack and the
traceback it carries is the checkpoint: for each compiled frame, its line says
which call site it stopped at and `frame.f_locals` holds its state.

Each function is compiled a second time in a *resume form*: the same body with
guards that skip straight to a given call site (`_ϟR`), substitute the resumed
value there, and then carry on normally. Only frames that were on the stack at
suspension ever run in that form.

Both forms of every function of a module are emitted into one Python source
whose line map (`LineInfo` per generated line) ties Python lines back to
Starlark positions, call sites and functions.
"""

from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass, field

from .errors import ResolveError
from .syntax import Parsed, _is_load

P = "_ϟ"  # prefix of every generated name; Starlark identifiers are ASCII, so no clash

UNIVERSE_NAMES = frozenset("""abs all any bool bytes chr dict dir enumerate fail float getattr
hasattr hash int len list max min ord print range repr reversed set sorted str tuple type zip""".split())

# Universe builtins known never to suspend (callbacks they make refuse to).
_SAFE_CALLS = UNIVERSE_NAMES

_BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "truediv",
           ast.FloorDiv: "floordiv", ast.Mod: "mod", ast.BitAnd: "bit_and",
           ast.BitOr: "bit_or", ast.BitXor: "bit_xor", ast.LShift: "lshift",
           ast.RShift: "rshift"}
_PYOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//",
          ast.Mod: "%", ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^"}
# Augmented assignments that update a list, set or dict in place.
_AUGOPS = {ast.Add: "iadd", ast.BitOr: "ior", ast.BitAnd: "iand", ast.Sub: "isub",
           ast.BitXor: "ixor"}
_CMPOPS = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">",
           ast.GtE: ">=", ast.In: "in", ast.NotIn: "not in"}


def pyname(name: str) -> str:
    """The Python identifier for a Starlark identifier (dunder names are renamed)."""
    if name.startswith("__") and name.endswith("__"):
        return P + "d" + name
    if "ϟ" in name:  # a Unicode Starlark identifier that could meet our names
        return P + "u" + name
    return name


def starname(py: str) -> str:
    """Inverse of `pyname` for display."""
    if py.startswith(P + "d__") or py.startswith(P + "u"):
        return py[len(P) + 1:]
    return py


@dataclass
class LineInfo:
    """What one generated Python line stands for."""

    line: int = 0          # Starlark line (0: no position)
    col: int = 0
    callsite: int = 0      # call-site id within its function, or 0
    func: int = -1         # function index whose body holds this line
    defines: int = -1      # function index defined by a `def` on this line
    form: str = ""         # "normal" or "resume" for def lines
    locks: tuple = ()      # sequence variables of the for loops open on this line


@dataclass
class Scope:
    """A Starlark function (index 0 is the module's top level)."""

    index: int
    name: str
    node: ast.AST
    parent: "Scope | None"
    params: list[str] = field(default_factory=list)     # Starlark names in order
    bound: dict[str, str] = field(default_factory=dict)  # Starlark name -> pyname
    cells: set[str] = field(default_factory=set)        # pynames captured by inner functions
    extra_locals: list[str] = field(default_factory=list)  # temps, loop and comprehension vars
    nums: set[str] = field(default_factory=set)          # locals that only ever hold int/float
    floats: set[str] = field(default_factory=set)        # ... of those, the ones always float
    range_locals: set[str] = field(default_factory=set)  # ... bound only by range() loops
    num_exprs: dict[int, bool] = field(default_factory=dict)  # is_num of BinOps, given nums
    float_exprs: dict[int, bool] = field(default_factory=dict)  # is_float, given floats
    _ir: list | None = None                              # lowered body, once computed
    ncallsites: int = 0
    ntemps: int = 0

    @property
    def is_module(self) -> bool:
        return self.parent is None

    def temp(self, kind: str = "t") -> str:
        self.ntemps += 1
        name = f"{P}{kind}{self.ntemps}"
        self.extra_locals.append(name)
        return name

    def new_callsite(self) -> int:
        self.ncallsites += 1
        return self.ncallsites


# Operators of a left-associated chain (`a + b + c + ...`) whose running value the
# generated code keeps in one expression: it nests a call (or brackets) per operator,
# and CPython refuses about 200 nested brackets. A longer chain goes through a
# temporary every so many operators (`Compiler.lower_chain`).
_CHAIN = 16   # (an int `*` behind its guard nests 4 brackets: 64 of the 200)


def _remembered(known: dict | None, e, compute) -> bool:
    """`compute()` for operator `e`, remembered in `known` (None: not remembered). The
    numeric inference asks about each left part of a chain of n operators: n times
    the whole chain, unless remembered once the scope's number sets are final."""
    r = None if known is None else known.get(id(e))
    if r is None:
        r = compute()
        if known is not None:
            known[id(e)] = r
    return r


def _is_temp(text: str) -> bool:
    """Is this generated text a temporary (`Scope.temp`), evaluated already? (Not just
    any generated name: `_ϟtruediv(a, b)` is a call.)"""
    return text.startswith(P + "t") and text[len(P) + 1:].isdigit()


_RANGE_ITEM = ast.Constant(0)  # marks "bound by a range() loop" in numeric inference


def _largest_consistent(candidates: set[str], assigns: dict, holds) -> set[str]:
    """The largest subset of `candidates` whose every assigned expression
    satisfies `holds(expr, subset)`: start optimistic, drop until stable."""
    known = set(candidates)
    changed = True
    while changed:
        changed = False
        for py in list(known):
            if not all(holds(v, known) for v in assigns[py]):
                known.discard(py)
                changed = True
    return known


class _Comp:
    """A comprehension's own scope: its loop variables."""

    def __init__(self, owner: Scope, lowered: bool, names: dict[str, str]):
        self.owner = owner
        self.lowered = lowered
        self.names = names
        self.range_vars: set[str] = set()  # bound only by `for v in range(...)`: ints


# ---------------------------------------------------------------- IR

@dataclass
class S:
    """A simple Python statement with no call site."""
    text: str
    pos: tuple[int, int]


@dataclass
class C:
    """A call site: `target = call` (target may be None)."""
    target: str | None
    call: str
    pos: tuple[int, int]
    cs: int


@dataclass
class If:
    cond: str
    pos: tuple[int, int]
    then: list
    orelse: list


@dataclass
class While:
    cond: str | None
    pos: tuple[int, int]
    body: list


@dataclass
class For:
    seq: str
    it: str
    simple_target: str | None   # a store expression when the target is one name
    assign: list                # IR assigning the loop variable(s) from `_ϟv`
    pos: tuple[int, int]
    body: list
    lockable: bool = True       # False when the sequence is surely immutable (range())


@dataclass
class Def:
    scope: Scope
    header: str
    pos: tuple[int, int]


def _has_loops(ir) -> bool:
    """Does this IR (not counting nested functions) hold a loop?"""
    for n in ir:
        if isinstance(n, (While, For)):
            return True
        if isinstance(n, If) and (_has_loops(n.then) or _has_loops(n.orelse)):
            return True
    return False


def _block_bindings(stmt: ast.AST):
    """(node, name) for each name `stmt` binds in its own block: assignment
    targets and defs, not the locals of the functions, lambdas and comprehensions
    it holds (nested blocks)."""
    todo = [stmt]
    while todo:
        n = todo.pop()
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            yield n, n.id
        elif isinstance(n, ast.FunctionDef):
            yield n, n.name
            continue
        elif isinstance(n, (ast.Lambda, ast.ListComp, ast.DictComp)):
            continue
        todo.extend(ast.iter_child_nodes(n))


def _calls_something(node: ast.AST) -> bool:
    """Whether a function's own body (not the functions it defines) has a call."""
    todo = [node.body] if isinstance(node, ast.Lambda) else list(node.body)
    while todo:
        n = todo.pop()
        if isinstance(n, ast.Call):
            return True
        for c in ast.iter_child_nodes(n):
            if isinstance(c, (ast.FunctionDef, ast.Lambda)):
                todo.extend(c.args.defaults)      # evaluated here, not in it
                todo.extend(d for d in c.args.kw_defaults if d is not None)
            else:
                todo.append(c)
    return False


def _refunding(ir, pos) -> list:
    """`ir` with the frame's unused steps given back to the budget before each
    `return` and at the end: loops draw steps in chunks (see `context.draw_steps`),
    and a frame that kept its chunk's rest would charge a function with a two-step
    loop, called a million times, 256 million steps."""
    refund = f"{P}refund({P}k)"

    def walk(nodes):
        out = []
        for n in nodes:
            if isinstance(n, S) and (n.text == "return" or n.text.startswith("return ")):
                out.append(S(refund, n.pos))
            elif isinstance(n, If):
                n = If(n.cond, n.pos, walk(n.then), walk(n.orelse))
            elif isinstance(n, While):
                n = While(n.cond, n.pos, walk(n.body))
            elif isinstance(n, For):
                n = For(n.seq, n.it, n.simple_target, n.assign, n.pos, walk(n.body), n.lockable)
            out.append(n)
        return out
    return walk(ir) + [S(refund, pos)]


def _callsites(ir) -> tuple[int, ...]:
    out: list[int] = []

    def walk(nodes):
        for n in nodes:
            if isinstance(n, C):
                out.append(n.cs)
            elif isinstance(n, If):
                walk(n.then)
                walk(n.orelse)
            elif isinstance(n, (While, For)):
                walk(n.body)
    walk(ir if isinstance(ir, list) else [ir])
    return tuple(out)


# ---------------------------------------------------------------- compiled module

@dataclass
class Compiled:
    """The output of compiling one module: Python source, its line map and functions."""

    key: str
    filename: str
    source: str
    pysource: str
    lines: list[LineInfo]
    scopes: list[Scope]
    exported: list[str]       # Starlark global names (excluding load bindings)
    method_names: set[str]
    shadowed: frozenset[str]  # universe names shadowed by predeclared names
    eval_mode: bool
    code: object = None       # the Python code object of pysource
    # (sha256 hex, UTF-8 bytes) of source, or None if it is not valid UTF-8; False
    # until `thread.source_ref` works it out.
    source_ref: object = False


def module_key(source: str, filename: str, shadowed, eval_mode: bool) -> str:
    h = hashlib.sha256()
    h.update(b"flowmetal-starlark-1\0")
    h.update(filename.encode("utf-8", "surrogatepass") + b"\0")
    h.update(",".join(sorted(shadowed)).encode() + b"\0")
    h.update(b"eval\0" if eval_mode else b"exec\0")
    h.update(source.encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def compile_module(parsed: Parsed, source: str, predeclared_names, *, eval_mode: bool = False) -> Compiled:
    """Resolve names and generate the Python source of a module (or expression)."""
    predeclared_names = frozenset(predeclared_names)
    shadowed = frozenset(predeclared_names & UNIVERSE_NAMES)
    comp = _Compiler(parsed, predeclared_names, eval_mode)
    comp.run()
    key = module_key(source, parsed.filename, shadowed, eval_mode)
    return Compiled(key=key, filename=parsed.filename, source=source,
                    pysource="\n".join(comp.out) + "\n", lines=comp.info,
                    scopes=comp.scopes, exported=comp.exported,
                    method_names=comp.method_names, shadowed=shadowed,
                    eval_mode=eval_mode)


class _Compiler:
    def __init__(self, parsed: Parsed, predeclared: frozenset[str], eval_mode: bool):
        self.p = parsed
        self.predeclared = predeclared
        self.eval_mode = eval_mode
        self.scopes: list[Scope] = []
        self.res: dict[int, tuple] = {}           # id(Name node) -> resolution
        self.func_scope: dict[int, Scope] = {}    # id(def/lambda node) -> Scope
        self.needs_cache: dict[int, bool] = {}
        self.chain_lengths: dict[int, int] = {}
        self.method_names: set[str] = set()
        self.out: list[str] = []
        self.info: list[LineInfo] = []
        self.exported: list[str] = []
        self.load_names: set[str] = set()
        self.all_bound = self._all_bound_names()
        self.ncomps = 0
        self.cur_scope: Scope | None = None
        self.nwalrus = 0
        self.in_comp_iter = 0   # > 0 while translating a comprehension's iterable
        # While emitting: per function being emitted, the locked loop sequences
        # open at the current line (the Thread unlocks them if an error or a
        # suspension unwinds the frame there).
        self.open_locks: list[tuple] = []
        self.loop_seqs: list[str] = []   # sequences of the for loops enclosing the code being lowered

    # ------------------------------------------------------------ resolution

    def _all_bound_names(self) -> set[str]:
        names = set()
        tree = self.p.tree
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, (ast.FunctionDef,)):
                names.add(node.name)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif _is_load(node):
                for a in node.args[1:]:
                    names.add(a.value)
                for kw in node.keywords:
                    names.add(kw.arg)
        return names

    def is_safe_call(self, call: ast.Call) -> bool:
        f = call.func
        return (isinstance(f, ast.Name) and f.id in _SAFE_CALLS
                and f.id not in self.all_bound and f.id not in self.predeclared)

    def needs_stmt(self, node) -> bool:
        """Does evaluating this expression need statements (a call that may
        suspend, or a lambda, which compiles to a `def`)?"""
        key = id(node)
        r = self.needs_cache.get(key)
        if r is None:
            r = self._needs(node)
            self.needs_cache[key] = r
        return r

    def _needs(self, node) -> bool:
        if isinstance(node, ast.Lambda):
            return True
        if type(node) is ast.BinOp and self.chain_length(node) > _CHAIN:
            return True   # see `lower_chain`
        if isinstance(node, ast.Call) and not self.is_safe_call(node):
            return True
        for child in ast.iter_child_nodes(node):
            if self.needs_stmt(child):
                return True
        return False

    def chain_length(self, e) -> int:
        """How many binary operators nest along the left of `e` (remembered: asked of
        every operator of a chain)."""
        spine = []
        n = 0
        while type(e) is ast.BinOp:
            known = self.chain_lengths.get(id(e))
            if known is not None:
                n = known
                break
            spine.append(e)
            e = e.left
        for b in reversed(spine):
            n += 1
            self.chain_lengths[id(b)] = n
        return n

    def error(self, node, msg):
        return self.p.error(node, msg, ResolveError)

    def new_scope(self, name, node, parent) -> Scope:
        s = Scope(index=len(self.scopes), name=name, node=node, parent=parent)
        self.scopes.append(s)
        if node is not None and not isinstance(node, ast.Module):
            self.func_scope[id(node)] = s
        return s

    def declare_block(self, scope: Scope, stmts):
        """Bind every name assigned in `stmts` (not in nested functions) in `scope`."""
        def bind(name):
            if name not in scope.bound:
                scope.bound[name] = pyname(name)

        def targets(t):
            if isinstance(t, ast.Name):
                bind(t.id)
            elif isinstance(t, (ast.Tuple, ast.List)):
                for e in t.elts:
                    targets(e)

        def walk(stmts):
            for s in stmts:
                if isinstance(s, ast.Assign):
                    for t in s.targets:
                        targets(t)
                elif isinstance(s, ast.AugAssign):
                    targets(s.target)
                elif isinstance(s, ast.For):
                    targets(s.target)
                    walk(s.body)
                elif isinstance(s, ast.While):
                    walk(s.body)
                elif isinstance(s, ast.If):
                    walk(s.body)
                    walk(s.orelse)
                elif isinstance(s, ast.FunctionDef):
                    bind(s.name)
                elif isinstance(s, ast.Expr) and _is_load(s.value):
                    for node, name in [(a, a.value) for a in s.value.args[1:]] + \
                                      [(kw.value, kw.arg) for kw in s.value.keywords]:
                        if name in scope.bound:
                            raise self.error(node, f"cannot reassign {name}: already bound")
                        bind(name)
                        self.load_names.add(name)
        walk(stmts)
        if scope.is_module and self.load_names:
            # Only the module's own block may not rebind a load()ed name: function
            # bodies, lambdas and comprehensions are nested blocks with locals of
            # their own (spec: "Name binding and variables").
            for s in stmts:
                for n, name in _block_bindings(s):
                    if name in self.load_names:
                        raise self.error(n, f"cannot reassign {name}: it is bound by load()")

    def resolve_name(self, node: ast.Name, env: list, cur: Scope):
        name = node.id
        for frame in reversed(env):
            if isinstance(frame, _Comp):
                if name in frame.names:
                    py = frame.names[name]
                    if frame.lowered:
                        if frame.owner is not cur:
                            frame.owner.cells.add(py)
                        self.res[id(node)] = ("local", frame.owner, py)
                    else:
                        self.res[id(node)] = ("comp", frame, py)
                    return
            else:
                scope = frame
                if name in scope.bound:
                    py = scope.bound[name]
                    if scope.is_module:
                        self.res[id(node)] = ("global", None, py)
                    else:
                        if scope is not cur:
                            scope.cells.add(py)
                        self.res[id(node)] = ("local", scope, py)
                    return
        if name in self.predeclared or name in UNIVERSE_NAMES:
            self.res[id(node)] = ("builtin", None, pyname(name))
            return
        raise self.error(node, f"undefined: {name}")

    def resolve_expr(self, e, env, cur):
        if e is None:
            return
        if isinstance(e, ast.Name):
            self.resolve_name(e, env, cur)
        elif isinstance(e, ast.Lambda):
            self.resolve_function(e, "lambda", env, cur)
        elif isinstance(e, (ast.ListComp, ast.DictComp)):
            lowered = self.needs_stmt(e)
            self.ncomps += 1
            names: dict[str, str] = {}
            comp = _Comp(cur, lowered, names)
            bound_by: dict[str, list[bool]] = {}
            for gen in e.generators:
                for t in ast.walk(gen.target):
                    if isinstance(t, ast.Name):
                        bound_by.setdefault(t.id, []).append(
                            t is gen.target and self.is_range_call(gen.iter))
            comp.range_vars = {n for n, kinds in bound_by.items() if all(kinds)}
            # All loop variables belong to the comprehension's scope from its start.
            for gen in e.generators:
                for t in ast.walk(gen.target):
                    if isinstance(t, ast.Name) and t.id not in names:
                        py = f"{P}c{self.ncomps}_{t.id}" if lowered else pyname(t.id)
                        names[t.id] = py
                        if lowered:
                            cur.extra_locals.append(py)
            first = True
            for gen in e.generators:
                # The first iterable is evaluated in the enclosing scope.
                self.resolve_expr(gen.iter, env if first else env + [comp], cur)
                first = False
                self.resolve_target(gen.target, env + [comp], cur)
                for cond in gen.ifs:
                    self.resolve_expr(cond, env + [comp], cur)
            if isinstance(e, ast.ListComp):
                self.resolve_expr(e.elt, env + [comp], cur)
            else:
                self.resolve_expr(e.key, env + [comp], cur)
                self.resolve_expr(e.value, env + [comp], cur)
        else:
            for child in ast.iter_child_nodes(e):
                if isinstance(child, ast.expr):
                    self.resolve_expr(child, env, cur)
                elif isinstance(child, ast.keyword):
                    self.resolve_expr(child.value, env, cur)
                elif isinstance(child, (ast.Slice,)):
                    self.resolve_expr(child, env, cur)

    def resolve_target(self, t, env, cur):
        if isinstance(t, ast.Name):
            self.resolve_name(t, env, cur)
        elif isinstance(t, (ast.Tuple, ast.List)):
            for e in t.elts:
                self.resolve_target(e, env, cur)
        else:
            self.resolve_expr(t, env, cur)

    def resolve_function(self, node, name, env, cur) -> Scope:
        args = node.args
        for d in args.defaults + [d for d in args.kw_defaults if d is not None]:
            self.resolve_expr(d, env, cur)
        for a in args.args + args.kwonlyargs + [x for x in (args.vararg, args.kwarg) if x]:
            if a.annotation is not None:
                self.resolve_annotation(a.annotation, env, cur)
        if isinstance(node, ast.FunctionDef) and node.returns is not None:
            self.resolve_annotation(node.returns, env, cur)
        scope = self.new_scope(name, node, cur)
        for a in args.args + args.kwonlyargs + [x for x in (args.vararg, args.kwarg) if x]:
            scope.params.append(a.arg)
            scope.bound[a.arg] = pyname(a.arg)
        if isinstance(node, ast.Lambda):
            self.resolve_expr(node.body, env + [scope], scope)
        else:
            self.declare_block(scope, node.body)
            self.resolve_block(node.body, env + [scope], scope)
        return scope

    def resolve_annotation(self, ann, env, cur):
        for n in ast.walk(ann):
            if isinstance(n, ast.Name):
                self.resolve_name(n, env, cur)

    def resolve_block(self, stmts, env, cur):
        for s in stmts:
            if isinstance(s, ast.FunctionDef):
                self.resolve_name(ast.Name(id=s.name, lineno=s.lineno, col_offset=s.col_offset), env, cur)
                self.resolve_function(s, s.name, env, cur)
            elif isinstance(s, ast.Assign):
                self.resolve_expr(s.value, env, cur)
                for t in s.targets:
                    self.resolve_target(t, env, cur)
            elif isinstance(s, ast.AugAssign):
                self.resolve_expr(s.value, env, cur)
                self.resolve_target(s.target, env, cur)
            elif isinstance(s, ast.For):
                self.resolve_expr(s.iter, env, cur)
                self.resolve_target(s.target, env, cur)
                self.resolve_block(s.body, env, cur)
            elif isinstance(s, ast.While):
                self.resolve_expr(s.test, env, cur)
                self.resolve_block(s.body, env, cur)
            elif isinstance(s, ast.If):
                self.resolve_expr(s.test, env, cur)
                self.resolve_block(s.body, env, cur)
                self.resolve_block(s.orelse, env, cur)
            elif isinstance(s, ast.Return):
                self.resolve_expr(s.value, env, cur)
            elif isinstance(s, ast.Expr):
                if not _is_load(s.value):
                    self.resolve_expr(s.value, env, cur)

    # ------------------------------------------------------------ driver

    def run(self):
        tree = self.p.tree
        module = self.new_scope("<toplevel>", tree, None)
        if self.eval_mode:
            self.resolve_expr(tree.body, [module], module)
            body_ir = []
            text = self.lower(tree.body, body_ir, module)
            body_ir.append(S(f"return {text}", self.p.pos(tree.body)))
        else:
            self.declare_block(module, tree.body)
            self.exported = [n for n in module.bound if n not in self.load_names]
            ordered = self.hoist(tree.body)
            self.resolve_block(ordered, [module], module)
            body_ir = self.lower_block(ordered, module)
        module_ir = body_ir
        self.emit_module(module, module_ir)

    def hoist(self, body):
        """Order top-level statements: loads, then defs (hoisted), then the rest.

        Hoisting lets a module use a function above its `def`, as flows do
        (`analyze = flow(implementation = _analyze_impl)` before
        `def _analyze_impl`, see examples/etl.flow). It must not change what a
        program that is valid in source order means, so a def stays where it
        is when moving it could be seen:

        - its name is also bound by another statement (`f = 3` before
          `def f`: in source order `f` ends up the function), or by an
          earlier def that stays;
        - its default values call something (a call may print, fail or read
          globals not yet bound), or read a global bound by an ordinary
          statement or by a def that stays (`def a(x = b)` after a `def b`
          that stays)."""
        def is_load(s):
            return isinstance(s, ast.Expr) and _is_load(s.value)

        loads = [s for s in body if is_load(s)]
        defs = [s for s in body if isinstance(s, ast.FunctionDef)]
        plain_bound = set()

        for s in body:
            if not isinstance(s, ast.FunctionDef) and not is_load(s):
                # (a def nested in a top-level if/for binds its name here too)
                plain_bound.update(name for _, name in _block_bindings(s))
        unsafe = set(plain_bound)   # globals a hoisted default must not read
        hoisted = []
        for d in defs:
            dflts = d.args.defaults + [x for x in d.args.kw_defaults if x]
            nodes = [n for dflt in dflts for n in ast.walk(dflt)]
            reads = {n.id for n in nodes if isinstance(n, ast.Name)}
            if d.name in unsafe or reads & unsafe or any(isinstance(n, ast.Call) for n in nodes):
                unsafe.add(d.name)
            else:
                hoisted.append(d)
        hoisted_ids = {id(d) for d in hoisted} | {id(s) for s in loads}
        rest = [s for s in body if id(s) not in hoisted_ids]
        return loads + hoisted + rest

    # ------------------------------------------------------------ numeric inference
    #
    # Arithmetic goes through the value library (bool is not a number, sizes
    # are capped), which costs a Python call per operation. A local variable
    # that is only ever assigned numbers (literals, arithmetic on numbers,
    # range() loop variables, len()/int()/float()) can use Python's own
    # operators: on int and float they mean exactly what Starlark's do.

    _NUM_OPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod,
                ast.BitAnd, ast.BitOr, ast.BitXor)
    _NUM_CALLS = frozenset({"len", "int", "float", "ord", "hash"})

    def infer_numbers(self, scope: Scope) -> set[str]:
        if scope.is_module or isinstance(scope.node, ast.Lambda):
            return set()
        params = {pyname(p) for p in scope.params}
        assigns: dict[str, list] = {}
        excluded: set[str] = set()

        def local(node) -> str | None:
            r = self.res.get(id(node))
            if r and r[0] == "local" and r[1] is scope and r[2] not in scope.cells and r[2] not in params:
                return r[2]
            return None

        def target(t, value):
            if isinstance(t, ast.Name):
                py = local(t)
                if py is not None:
                    assigns.setdefault(py, []).append(value)
            elif isinstance(t, (ast.Tuple, ast.List)):
                if isinstance(value, (ast.Tuple, ast.List)) and len(value.elts) == len(t.elts):
                    for a, b in zip(t.elts, value.elts):
                        target(a, b)
                else:
                    for n in ast.walk(t):
                        if isinstance(n, ast.Name) and local(n):
                            excluded.add(local(n))

        def walk(stmts):
            for st in stmts:
                if isinstance(st, ast.Assign):
                    for t in st.targets:
                        target(t, st.value)
                elif isinstance(st, ast.AugAssign):
                    if isinstance(st.target, ast.Name) and local(st.target):
                        target(st.target, ast.BinOp(left=st.target, op=st.op, right=st.value))
                elif isinstance(st, ast.For):
                    it = st.iter
                    if (isinstance(st.target, ast.Name) and isinstance(it, ast.Call)
                            and isinstance(it.func, ast.Name) and it.func.id == "range"
                            and self.is_safe_call(it) and local(st.target)):
                        assigns.setdefault(local(st.target), []).append(_RANGE_ITEM)
                    else:
                        target(st.target, None)
                    walk(st.body)
                elif isinstance(st, (ast.While,)):
                    walk(st.body)
                elif isinstance(st, ast.If):
                    walk(st.body)
                    walk(st.orelse)
                elif isinstance(st, ast.FunctionDef):
                    excluded.add(pyname(st.name))
        walk(scope.node.body)
        nums = _largest_consistent(
            {py for py, vals in assigns.items() if py not in excluded and None not in vals},
            assigns, lambda v, known: self.is_num(v, known, scope))
        scope.range_locals = {py for py in nums if all(v is _RANGE_ITEM for v in assigns[py])}
        # Among them, the ones that are always floats (their products cannot grow).
        scope.floats = _largest_consistent(nums, assigns, lambda v, known: self.is_float(v, known, scope))
        return nums

    def is_float(self, e, floats, scope) -> bool:
        t = type(e)
        if t is ast.Constant:
            return type(e.value) is float
        if t is ast.Name:
            r = self.res.get(id(e))
            return bool(r) and r[0] == "local" and r[1] is scope and r[2] in floats
        if t is ast.BinOp:
            if isinstance(e.op, ast.Div):
                return True
            if not isinstance(e.op, (ast.Add, ast.Sub, ast.Mult, ast.FloorDiv, ast.Mod)):
                return False
            return _remembered(scope.float_exprs if floats is scope.floats else None, e, lambda: (
                self.is_float(e.left, floats, scope) or self.is_float(e.right, floats, scope)))
        if t is ast.UnaryOp:
            return isinstance(e.op, (ast.USub, ast.UAdd)) and self.is_float(e.operand, floats, scope)
        if t is ast.Call:
            return isinstance(e.func, ast.Name) and e.func.id == "float" and self.is_safe_call(e)
        if t is ast.IfExp:
            return self.is_float(e.body, floats, scope) and self.is_float(e.orelse, floats, scope)
        return False

    def is_range_call(self, e) -> bool:
        return (isinstance(e, ast.Call) and isinstance(e.func, ast.Name) and e.func.id == "range"
                and self.is_safe_call(e))

    def is_bounded(self, e, scope) -> bool:
        """An int that cannot have grown by repeated multiplication: a constant,
        or a variable bound only by `for v in range(...)` (a product of two such
        has at most twice their bits, so it needs no size guard)."""
        if isinstance(e, ast.Constant):
            return type(e.value) in (int, float)
        if isinstance(e, ast.Name):
            r = self.res.get(id(e))
            if not r:
                return False
            if r[0] == "comp":
                return r[1] is not None and e.id in r[1].range_vars
            return r[0] == "local" and r[1] is scope and r[2] in scope.range_locals
        return False

    def is_num(self, e, nums, scope) -> bool:
        t = type(e)
        if t is ast.Constant:
            return type(e.value) in (int, float)
        if t is ast.Name:
            r = self.res.get(id(e))
            if r and r[0] == "comp":
                return r[1] is not None and e.id in r[1].range_vars
            return bool(r) and r[0] == "local" and r[1] is scope and r[2] in nums
        if t is ast.BinOp:
            if not isinstance(e.op, self._NUM_OPS):
                return False
            return _remembered(scope.num_exprs if nums is scope.nums else None, e, lambda: (
                self.is_num(e.left, nums, scope) and self.is_num(e.right, nums, scope)))
        if t is ast.UnaryOp:
            return isinstance(e.op, (ast.USub, ast.UAdd)) and self.is_num(e.operand, nums, scope)
        if t is ast.Call:
            return (isinstance(e.func, ast.Name) and e.func.id in self._NUM_CALLS
                    and self.is_safe_call(e))
        if t is ast.IfExp:
            return self.is_num(e.body, nums, scope) and self.is_num(e.orelse, nums, scope)
        return False

    _GUARDABLE = (ast.Add, ast.Sub, ast.Mult, ast.FloorDiv, ast.Mod)

    def is_pure(self, e) -> bool:
        """Cheap to evaluate twice and free of effects (a name, constant, cell
        or subscript of such): usable in a type-guarded fast path."""
        if isinstance(e, (ast.Name, ast.Constant)):
            return True
        if isinstance(e, ast.Subscript) and not isinstance(e.slice, ast.Slice):
            return self.is_pure(e.value) and self.is_pure(e.slice)
        return False

    def binop_text(self, e, left: str, right: str, lnode, rnode) -> str:
        """`left op right`: native for numbers known statically, native behind
        an `int` type guard for simple operands, else the value library."""
        op = type(e.op)
        # `%` goes to fastpath.mod, which formats simple "%d"/"%s" strings natively.
        generic = f"{P}{'fmod' if op is ast.Mod else _BINOPS[op]}({left}, {right})"
        if isinstance(lnode, ast.Constant) and type(lnode.value) is str:
            return generic
        if self.num_binop(e):
            scope = self.cur_scope
            if op is ast.Mult and self.in_comp_iter:
                return generic   # no `:=` here: the library caps the size alike
            if op is ast.Mult and not (self.is_float(lnode, scope.floats, scope)
                                       or self.is_float(rnode, scope.floats, scope)
                                       or (self.is_bounded(lnode, scope) and self.is_bounded(rnode, scope))):
                # Products of big ints grow fast: those go to the library's size
                # cap. The operands are named once (`:=`) and tested together.
                a, b = self.walrus(), self.walrus()
                return (f"(({a} * {b}) if ((-{P}BIG < ({a} := {left}) < {P}BIG) & "
                        f"(-{P}BIG < ({b} := {right}) < {P}BIG)) else {P}mul({a}, {b}))")
            return f"({left} {_PYOPS[op]} {right})"
        if op in self._GUARDABLE:
            guards = []
            for node, text in ((lnode, left), (rnode, right)):
                if isinstance(node, ast.Constant) and type(node.value) is int:
                    continue
                if node is not None and not self.is_pure(node) and not _is_temp(text):
                    return generic
                guards.append(f"{P}type({text}) is {P}int")
                if op is ast.Mult:
                    guards.append(f"-{P}BIG < {text} < {P}BIG")
            if op is ast.Mod and not guards:
                return generic
            if op is ast.Mod:
                guards.append(f"{right}")  # x % 0 goes to the library for its message
            cond = " and ".join(guards) if guards else "True"
            return f"(({left} {_PYOPS[op]} {right}) if {cond} else {generic})"
        return generic

    def walrus(self) -> str:
        self.nwalrus += 1
        return f"{P}w{self.nwalrus}"

    def num_binop(self, e) -> bool:
        scope = self.cur_scope
        return (scope is not None and isinstance(e.op, self._NUM_OPS)
                and self.is_num(e.left, scope.nums, scope) and self.is_num(e.right, scope.nums, scope))

    # ------------------------------------------------------------ expressions

    def pos(self, node):
        return self.p.pos(node)

    def name_load(self, node: ast.Name) -> str:
        kind, owner, py = self.res[id(node)]
        if kind == "local" and py in owner.cells:
            return f"{P}cell_{py}.v"
        return py

    name_store = name_load

    def translate(self, e) -> str:
        """Python text for an expression that needs no statements."""
        t = type(e)
        if t is ast.Constant:
            return repr(e.value)
        if t is ast.Name:
            return self.name_load(e)
        if t is ast.BinOp:
            return self.binop_text(e, self.translate(e.left), self.translate(e.right), e.left, e.right)
        if t is ast.UnaryOp:
            return self.unary(e, self.translate(e.operand))
        if t is ast.BoolOp:
            op = " and " if isinstance(e.op, ast.And) else " or "
            return "(" + op.join(self.translate(v) for v in e.values) + ")"
        if t is ast.Compare:
            return f"({self.translate(e.left)} {_CMPOPS[type(e.ops[0])]} {self.translate(e.comparators[0])})"
        if t is ast.IfExp:
            return f"({self.translate(e.body)} if {self.translate(e.test)} else {self.translate(e.orelse)})"
        if t is ast.Call:
            return self.call_text(e, self.translate(e.func) if not isinstance(e.func, ast.Attribute) else None,
                                  self.translate(e.func.value) if isinstance(e.func, ast.Attribute) else None,
                                  [self.translate(a.value if isinstance(a, ast.Starred) else a) for a in e.args],
                                  [self.translate(k.value) for k in e.keywords])
        if t is ast.Attribute:
            return f"{P}getattr({self.translate(e.value)}, {e.attr!r})"
        if t is ast.Subscript:
            return self.subscript_text(e, self.translate(e.value), self.slice_parts(e.slice, self.translate))
        if t is ast.List:
            return "[" + ", ".join(self.translate(x) for x in e.elts) + "]"
        if t is ast.Tuple:
            return "(" + "".join(self.translate(x) + ", " for x in e.elts) + ")"
        if t is ast.Dict:
            return self.dict_text(e, [self.translate(x) for pair in zip(e.keys, e.values) for x in pair])
        if t in (ast.ListComp, ast.DictComp):
            return self.native_comp(e)
        raise self.p.error(e, f"unsupported expression ({t.__name__})")

    def unary(self, e, operand: str) -> str:
        op = type(e.op)
        if op is ast.Not:
            return f"(not {operand})"
        if isinstance(e.operand, ast.Constant) and type(e.operand.value) in (int, float):
            v = e.operand.value
            if op is ast.USub:
                return repr(-v)
            if op is ast.UAdd:
                return repr(+v)
        name = {ast.USub: "neg", ast.UAdd: "pos", ast.Invert: "invert"}[op]
        if op is ast.USub and self.is_pure(e.operand):
            return f"((-{operand}) if {P}type({operand}) is {P}int else {P}neg({operand}))"
        return f"{P}{name}({operand})"

    def call_text(self, e: ast.Call, func: str | None, recv: str | None, args: list[str], kws: list[str]) -> str:
        parts = []
        for a, text in zip(e.args, args):
            parts.append(f"*{P}starargs({text})" if isinstance(a, ast.Starred) else text)
        for k, text in zip(e.keywords, kws):
            parts.append(f"**{P}kwargs({text})" if k.arg is None else f"{k.arg}={text}")
        if recv is not None:
            name = e.func.attr
            simple = not e.keywords and not any(isinstance(a, ast.Starred) for a in e.args)
            key = f"{name}/{len(e.args)}" if simple else name
            self.method_names.add(key)
            pyfn = f"{P}m_{name}_{len(e.args)}" if simple else f"{P}m_{name}"
            return f"{pyfn}({', '.join([recv] + parts)})"
        return f"{func}({', '.join(parts)})"

    def slice_parts(self, s, fn):
        if isinstance(s, ast.Slice):
            return ("slice", [fn(x) if x is not None else "" for x in (s.lower, s.upper, s.step)])
        return ("index", fn(s))

    def subscript_text(self, e, value: str, parts) -> str:
        kind, p = parts
        if kind == "slice":
            lo, hi, st = p
            return f"{value}[{lo}:{hi}" + (f":{st}]" if st else "]")
        return f"{value}[{p}]"

    def dict_text(self, e: ast.Dict, texts: list[str]) -> str:
        pairs = list(zip(texts[0::2], texts[1::2]))
        consts = [k.value for k in e.keys if isinstance(k, ast.Constant)]
        if len(consts) == len(e.keys) and len(set(map(repr, consts))) == len(consts) \
                and not any(isinstance(c, bool) for c in consts):
            return "{" + ", ".join(f"{k}: {v}" for k, v in pairs) + "}"
        return f"{P}dict_literal((" + "".join(f"({k}, {v}), " for k, v in pairs) + "))"

    def comp_target_text(self, t) -> str:
        if isinstance(t, ast.Name):
            return self.name_store(t)
        return "(" + "".join(self.comp_target_text(x) + ", " for x in t.elts) + ")"

    def native_comp(self, e) -> str:
        clauses = []
        for gen in e.generators:
            # Python refuses `:=` in a comprehension's iterable (see `binop_text`).
            self.in_comp_iter += 1
            try:
                it = self.translate(gen.iter)
            finally:
                self.in_comp_iter -= 1
            clause = f"for {self.comp_target_text(gen.target)} in {P}compiter({it})"
            for cond in gen.ifs:
                clause += f" if {self.translate(cond)}"
            clauses.append(clause)
        if isinstance(e, ast.ListComp):
            return f"[{self.translate(e.elt)} {' '.join(clauses)}]"
        return f"{{{self.translate(e.key)}: {self.translate(e.value)} {' '.join(clauses)}}}"

    # lowering to A-normal form

    def lower(self, e, out: list, scope: Scope) -> str:
        """Python text for `e`, appending to `out` the statements it needs first."""
        if not self.needs_stmt(e):
            return self.translate(e)
        t = type(e)
        pos = self.pos(e)
        if t is ast.Call:
            tmp = scope.temp()
            self.lower_call(e, out, scope, tmp)
            return tmp
        if t is ast.BinOp:
            if self.chain_length(e) > _CHAIN:
                return self.lower_chain(e, out, scope)
            left, right = self.lower_seq([e.left, e.right], out, scope)
            return self.binop_text(e, left, right, e.left, e.right)
        if t is ast.UnaryOp:
            return self.unary(e, self.lower(e.operand, out, scope))
        if t is ast.Compare:
            left, right = self.lower_seq([e.left, e.comparators[0]], out, scope)
            return f"({left} {_CMPOPS[type(e.ops[0])]} {right})"
        if t is ast.BoolOp:
            tmp = scope.temp()
            first = self.lower(e.values[0], out, scope)
            out.append(S(f"{tmp} = {first}", pos))
            cur = out
            is_and = isinstance(e.op, ast.And)
            for v in e.values[1:]:
                inner: list = []
                text = self.lower(v, inner, scope)
                inner.append(S(f"{tmp} = {text}", pos))
                cur.append(If(tmp if is_and else f"not {tmp}", pos, inner, []))
                cur = inner
            return tmp
        if t is ast.IfExp:
            tmp = scope.temp()
            cond = self.lower(e.test, out, scope)
            then: list = []
            then.append(S(f"{tmp} = {self.lower(e.body, then, scope)}", pos))
            orelse: list = []
            orelse.append(S(f"{tmp} = {self.lower(e.orelse, orelse, scope)}", pos))
            out.append(If(cond, pos, then, orelse))
            return tmp
        if t is ast.Attribute:
            return f"{P}getattr({self.lower(e.value, out, scope)}, {e.attr!r})"
        if t is ast.Subscript:
            if isinstance(e.slice, ast.Slice):
                parts = [x for x in (e.slice.lower, e.slice.upper, e.slice.step)]
                texts = self.lower_seq([e.value] + [x for x in parts if x is not None], out, scope)
                value, rest = texts[0], iter(texts[1:])
                st = [next(rest) if x is not None else "" for x in parts]
                return self.subscript_text(e, value, ("slice", st))
            value, index = self.lower_seq([e.value, e.slice], out, scope)
            return self.subscript_text(e, value, ("index", index))
        if t is ast.List:
            return "[" + ", ".join(self.lower_seq(e.elts, out, scope)) + "]"
        if t is ast.Tuple:
            return "(" + "".join(x + ", " for x in self.lower_seq(e.elts, out, scope)) + ")"
        if t is ast.Dict:
            flat = [x for pair in zip(e.keys, e.values) for x in pair]
            return self.dict_text(e, self.lower_seq(flat, out, scope))
        if t is ast.Lambda:
            child = self.func_scope[id(e)]
            header = self.def_header(e, child, out, scope, f"{P}lambda")
            out.append(Def(child, header, pos))
            tmp = scope.temp()
            out.append(S(f"{tmp} = {P}lambda", pos))
            return tmp
        if t in (ast.ListComp, ast.DictComp):
            return self.lower_comp(e, out, scope)
        raise self.p.error(e, f"unsupported expression ({t.__name__})")

    def lower_chain(self, e: ast.BinOp, out, scope) -> str:
        """A long left-associated chain of binary operators, operator by operator (not
        recursively: a chain may be thousands long), its running value saved in a
        temporary every `_CHAIN` operators and before an operand that needs
        statements (which keeps evaluation order, as `lower_seq` does)."""
        spine = []
        while type(e) is ast.BinOp:
            spine.append(e)
            e = e.left
        text = self.lower(e, out, scope)
        for i, b in enumerate(reversed(spine)):
            if (i % _CHAIN == _CHAIN - 1 or self.needs_stmt(b.right)) \
                    and not isinstance(b.left, (ast.Constant, ast.Name)) \
                    and not _is_temp(text):
                tmp = scope.temp()
                out.append(S(f"{tmp} = {text}", self.pos(b)))
                text = tmp
            text = self.binop_text(b, text, self.lower(b.right, out, scope), b.left, b.right)
        return text

    def lower_seq(self, nodes, out, scope) -> list[str]:
        """Lower operands left to right; an operand followed by one that needs
        statements is first saved in a temporary, keeping evaluation order."""
        texts = []
        for i, n in enumerate(nodes):
            text = self.lower(n, out, scope)
            if (not isinstance(n, (ast.Constant, ast.Name)) and not _is_temp(text)
                    and any(self.needs_stmt(m) for m in nodes[i + 1:])):
                tmp = scope.temp()
                out.append(S(f"{tmp} = {text}", self.pos(n)))
                text = tmp
            texts.append(text)
        return texts

    def lower_call(self, e: ast.Call, out, scope, target: str | None):
        if self.is_safe_call(e):
            args = self.lower_seq([a.value if isinstance(a, ast.Starred) else a for a in e.args]
                                  + [k.value for k in e.keywords], out, scope)
            text = self.call_text(e, self.translate(e.func), None, args[:len(e.args)], args[len(e.args):])
            out.append(S(f"{target} = {text}" if target else text, self.pos(e)))
            return
        is_method = isinstance(e.func, ast.Attribute)
        head = e.func.value if is_method else e.func
        # Arguments are evaluated in source order (Python would take *args
        # before keywords), then put back in Python's order for the call.
        items = [(a, a.value if isinstance(a, ast.Starred) else a) for a in e.args] + \
                [(k, k.value) for k in e.keywords]
        order = sorted(range(len(items)), key=lambda i: (items[i][1].lineno, items[i][1].col_offset))
        lowered = self.lower_seq([head] + [items[i][1] for i in order], out, scope)
        texts = [lowered[0]] + [""] * len(items)
        for slot, i in enumerate(order):
            texts[1 + i] = lowered[1 + slot]
        n = len(e.args)
        args, kws = texts[1:1 + n], texts[1 + n:]
        text = self.call_text(e, None if is_method else texts[0], texts[0] if is_method else None, args, kws)
        out.append(C(target, text, self.pos(e), scope.new_callsite()))

    def lower_comp(self, e, out, scope) -> str:
        pos = self.pos(e)
        acc = scope.temp()
        out.append(S(f"{acc} = []" if isinstance(e, ast.ListComp) else f"{acc} = {{}}", pos))
        cur = out
        for gen in e.generators:
            seq_text = self.lower(gen.iter, cur, scope)
            loop = self.make_for(gen.target, seq_text, pos, cur, scope, gen.iter)
            cur = loop.body
            for cond in gen.ifs:
                c = self.lower(cond, cur, scope)
                inner: list = []
                cur.append(If(c, self.pos(cond), inner, []))
                cur = inner
        if isinstance(e, ast.ListComp):
            cur.append(S(f"{acc}.append({self.lower(e.elt, cur, scope)})", pos))
        else:
            k, v = self.lower_seq([e.key, e.value], cur, scope)
            cur.append(S(f"{acc}[{k}] = {v}", pos))
        return acc

    def yields_tuples(self, it, n: int) -> bool:
        """Does iterating `it` surely give n-tuples (so Python may unpack them)?"""
        if not isinstance(it, ast.Call) or it.keywords:
            return False
        f = it.func
        if isinstance(f, ast.Name) and self.is_safe_call(it):
            return (f.id == "enumerate" and n == 2) or (f.id == "zip" and len(it.args) == n)
        return isinstance(f, ast.Attribute) and f.attr == "items" and not it.args and n == 2

    def make_for(self, target, seq_text, pos, out, scope, iter_node=None) -> For:
        seq = scope.temp("s")
        it = scope.temp("i")
        out.append(S(f"{seq} = {seq_text}", pos))
        out.append(S(f"{it} = {P}iterate({seq})", pos))
        if isinstance(target, ast.Name):
            simple = self.name_store(target)
            assign = [S(f"{simple} = {P}v", pos)]
        elif (isinstance(target, (ast.Tuple, ast.List)) and target.elts
              and all(isinstance(x, ast.Name) for x in target.elts)
              and iter_node is not None and self.yields_tuples(iter_node, len(target.elts))):
            simple = "(" + "".join(self.name_store(x) + ", " for x in target.elts) + ")"
            assign = [S(f"{simple} = {P}v", pos)]
        else:
            simple = None
            assign = []
            self.assign_target(target, f"{P}v", assign, scope, pos)
        lockable = not (iter_node is not None and isinstance(iter_node, ast.Call)
                        and isinstance(iter_node.func, ast.Name) and iter_node.func.id == "range"
                        and self.is_safe_call(iter_node))
        loop = For(seq, it, simple, assign, pos, [], lockable)
        out.append(loop)
        return loop

    # ------------------------------------------------------------ statements

    def assign_target(self, t, value: str, out, scope, pos):
        if isinstance(t, ast.Name):
            out.append(S(f"{self.name_store(t)} = {value}", pos))
        elif isinstance(t, (ast.Tuple, ast.List)):
            tmp = scope.temp()
            out.append(S(f"{tmp} = {P}unpack({value}, {len(t.elts)})", pos))
            for i, elt in enumerate(t.elts):
                self.assign_target(elt, f"{tmp}[{i}]", out, scope, pos)
        elif isinstance(t, ast.Subscript):
            if isinstance(t.slice, ast.Slice):
                raise self.p.error(t, "cannot assign to a slice")
            obj, idx = self.lower_seq([t.value, t.slice], out, scope)
            out.append(S(f"{P}fsetindex({obj}, {idx}, {value})", pos))
        elif isinstance(t, ast.Attribute):
            obj = self.lower(t.value, out, scope)
            out.append(S(f"{P}setattr({obj}, {t.attr!r}, {value})", pos))
        else:
            raise self.p.error(t, "invalid assignment target")

    def lower_block(self, stmts, scope: Scope) -> list:
        out: list = []
        for s in stmts:
            self.lower_stmt(s, out, scope)
        return out

    def lower_stmt(self, s, out, scope: Scope):
        pos = self.pos(s)
        t = type(s)
        if t is ast.Expr:
            if _is_load(s.value):
                self.lower_load(s.value, out, scope, pos)
            elif isinstance(s.value, ast.Call):
                self.lower_call(s.value, out, scope, None)
            else:
                text = self.lower(s.value, out, scope)
                if not isinstance(s.value, ast.Constant):
                    out.append(S(text, pos))
        elif t is ast.Assign:
            if (len(s.targets) == 1 and isinstance(s.targets[0], ast.Name)
                    and isinstance(s.value, ast.Call) and self.needs_stmt(s.value)):
                self.lower_call(s.value, out, scope, self.name_store(s.targets[0]))
                return
            tgt = s.targets[0]
            if (len(s.targets) == 1 and isinstance(tgt, (ast.Tuple, ast.List))
                    and isinstance(s.value, (ast.Tuple, ast.List))
                    and len(tgt.elts) == len(s.value.elts) and tgt.elts
                    and all(isinstance(x, ast.Name) for x in tgt.elts)):
                # `a, b = b, a + b`: lengths match statically, no unpack check needed.
                texts = self.lower_seq(s.value.elts, out, scope)
                names = ", ".join(self.name_store(x) for x in tgt.elts)
                out.append(S(f"{names}, = ({''.join(t + ', ' for t in texts)})", pos))
                return
            value = self.lower(s.value, out, scope)
            simple_targets = all(isinstance(x, ast.Name) for x in s.targets)
            if len(s.targets) > 1 or (not simple_targets and not _is_temp(value)
                                      and not isinstance(s.value, (ast.Constant, ast.Name))):
                tmp = scope.temp()
                out.append(S(f"{tmp} = {value}", pos))
                value = tmp
            for target in s.targets:
                self.assign_target(target, value, out, scope, pos)
        elif t is ast.AugAssign:
            op = _AUGOPS.get(type(s.op)) or _BINOPS[type(s.op)]
            tgt = s.target
            if isinstance(tgt, ast.Name):
                rhs = self.lower(s.value, out, scope)
                if self.num_binop(ast.BinOp(left=tgt, op=s.op, right=s.value)):
                    out.append(S(f"{self.name_store(tgt)} {_PYOPS[type(s.op)]}= {rhs}", pos))
                elif op == "iadd":
                    # ints first, natively; lists (in place), strings etc. in the library
                    cur, w = self.name_load(tgt), self.walrus()
                    out.append(S(f"{self.name_store(tgt)} = ({cur} + {w}) if "
                                 f"({P}type({cur}) is {P}int) & ({P}type({w} := {rhs}) is {P}int) "
                                 f"else {P}iadd({cur}, {w})", pos))
                else:
                    out.append(S(f"{self.name_store(tgt)} = {P}{op}({self.name_load(tgt)}, {rhs})", pos))
            elif isinstance(tgt, ast.Subscript):
                obj = scope.temp()
                idx = scope.temp()
                out.append(S(f"{obj} = {self.lower(tgt.value, out, scope)}", pos))
                out.append(S(f"{idx} = {self.lower(tgt.slice, out, scope)}", pos))
                cur = scope.temp()
                out.append(S(f"{cur} = {obj}[{idx}]", pos))
                rhs = self.lower(s.value, out, scope)
                out.append(S(f"{P}setindex({obj}, {idx}, {P}{op}({cur}, {rhs}))", pos))
            else:
                obj = scope.temp()
                out.append(S(f"{obj} = {self.lower(tgt.value, out, scope)}", pos))
                cur = scope.temp()
                out.append(S(f"{cur} = {P}getattr({obj}, {tgt.attr!r})", pos))
                rhs = self.lower(s.value, out, scope)
                out.append(S(f"{P}setattr({obj}, {tgt.attr!r}, {P}{op}({cur}, {rhs}))", pos))
        elif t is ast.If:
            cond = self.lower(s.test, out, scope)
            out.append(If(cond, pos, self.lower_block(s.body, scope), self.lower_block(s.orelse, scope)))
        elif t is ast.While:
            if self.needs_stmt(s.test):
                body: list = []
                cond = self.lower(s.test, body, scope)
                body.append(If(f"not {cond}", pos, [S("break", pos)], []))
                body.extend(self.lower_block(s.body, scope))
                out.append(While(None, pos, body))
            else:
                out.append(While(self.translate(s.test), pos, self.lower_block(s.body, scope)))
        elif t is ast.For:
            seq_text = self.lower(s.iter, out, scope)
            loop = self.make_for(s.target, seq_text, pos, out, scope, s.iter)
            if loop.lockable:
                self.loop_seqs.append(loop.seq)
            try:
                loop.body.extend(self.lower_block(s.body, scope))
            finally:
                if loop.lockable:
                    self.loop_seqs.pop()
        elif t is ast.Return:
            value = "None" if s.value is None else self.lower(s.value, out, scope)
            if self.loop_seqs:
                if not (value == "None" or _is_temp(value) or isinstance(s.value, (ast.Constant, ast.Name))):
                    tmp = scope.temp()
                    out.append(S(f"{tmp} = {value}", pos))
                    value = tmp
                for seq in reversed(self.loop_seqs):
                    out.append(S(f"{P}unlock({seq})", pos))
            out.append(S(f"return {value}", pos))
        elif t is ast.Pass:
            out.append(S("pass", pos))
        elif t is ast.Break:
            out.append(S("break", pos))
        elif t is ast.Continue:
            out.append(S("continue", pos))
        elif t is ast.FunctionDef:
            child = self.func_scope[id(s)]
            py = pyname(s.name)
            header = self.def_header(s, child, out, scope, py)
            out.append(Def(child, header, pos))
            store = self.name_store(ast_name(s, self, scope))
            if store != py:
                out.append(S(f"{store} = {py}", pos))
        else:
            raise self.p.error(s, f"unsupported statement ({t.__name__})")

    def lower_load(self, call: ast.Call, out, scope, pos):
        mod = call.args[0].value
        tmp = scope.temp()
        out.append(S(f"{tmp} = {P}load({P}module, {mod!r})", pos))
        pairs = [(a.value, a.value) for a in call.args[1:]] + [(kw.arg, kw.value.value) for kw in call.keywords]
        for local, remote in pairs:
            out.append(S(f"{pyname(local)} = {P}loaded({tmp}, {mod!r}, {remote!r})", pos))

    def def_header(self, node, child: Scope, out, scope, py: str) -> str:
        args = node.args
        defaults = args.defaults + [d for d in args.kw_defaults if d is not None]
        texts = iter(self.lower_seq(defaults, out, scope)) if defaults else iter(())
        params = []
        npos = len(args.args)
        first_default = npos - len(args.defaults)
        for i, a in enumerate(args.args):
            params.append(pyname(a.arg) + (f"={next(texts)}" if i >= first_default else ""))
        if args.vararg:
            params.append("*" + pyname(args.vararg.arg))
        elif args.kwonlyargs:
            params.append("*")
        for a, d in zip(args.kwonlyargs, args.kw_defaults):
            params.append(pyname(a.arg) + (f"={next(texts)}" if d is not None else ""))
        if args.kwarg:
            params.append("**" + pyname(args.kwarg.arg))
        return f"def {py}({', '.join(params)}):"

    # ------------------------------------------------------------ emission

    def emit(self, indent: int, text: str, pos=(0, 0), cs: int = 0, func: int = -1,
             defines: int = -1, form: str = ""):
        self.out.append("    " * indent + text)
        locks = self.open_locks[-1] if self.open_locks and defines < 0 else ()
        self.info.append(LineInfo(pos[0], pos[1], cs, func, defines, form, locks))

    def push_lock(self, seq: str) -> None:
        self.open_locks[-1] = self.open_locks[-1] + (seq,)

    def pop_lock(self) -> None:
        self.open_locks[-1] = self.open_locks[-1][:-1]

    def tick(self, indent, pos, func):
        self.emit(indent, f"{P}k -= 1", pos, func=func)
        self.emit(indent, f"if {P}k < 0: {P}k = {P}draw()", pos, func=func)

    def emit_ir(self, ir, indent, scope: Scope, resume: bool):
        f = scope.index
        if not ir:
            self.emit(indent, "pass", func=f)
            return
        if resume:
            self.emit_ir_resume(ir, indent, scope)
            return
        for n in ir:
            if isinstance(n, S):
                self.emit(indent, n.text, n.pos, func=f)
            elif isinstance(n, C):
                self.emit(indent, f"{n.target} = {n.call}" if n.target else n.call, n.pos, n.cs, func=f)
            elif isinstance(n, If):
                # An `else` holding only an `if` is an `elif`: a chain of them stays
                # at one level (CPython refuses ~100 levels of indentation).
                kw = "if"
                while True:
                    self.emit(indent, f"{kw} {n.cond}:", n.pos, func=f)
                    self.emit_ir(n.then, indent + 1, scope, False)
                    if len(n.orelse) == 1 and isinstance(n.orelse[0], If):
                        n, kw = n.orelse[0], "elif"
                        continue
                    break
                if n.orelse:
                    self.emit(indent, "else:", n.pos, func=f)
                    self.emit_ir(n.orelse, indent + 1, scope, False)
            elif isinstance(n, While):
                self.emit(indent, f"while {n.cond or 'True'}:", n.pos, func=f)
                self.tick(indent + 1, n.pos, f)
                self.emit_ir(n.body, indent + 1, scope, False)
            elif isinstance(n, For):
                # The iterated value is locked against mutation for the loop;
                # `return` unlocks on its way out (see lower_stmt), and the
                # Thread releases what an error or a suspension left locked.
                if n.lockable:
                    self.emit(indent, f"{P}lock({n.seq})", n.pos, func=f)
                    self.push_lock(n.seq)
                if n.simple_target:
                    self.emit(indent, f"for {n.simple_target} in {n.it}:", n.pos, func=f)
                    self.tick(indent + 1, n.pos, f)
                else:
                    self.emit(indent, f"for {P}v in {n.it}:", n.pos, func=f)
                    self.tick(indent + 1, n.pos, f)
                    self.emit_ir(n.assign, indent + 1, scope, False)
                self.emit_ir(n.body, indent + 1, scope, False)
                if n.lockable:
                    self.pop_lock()
                    self.emit(indent, f"{P}unlock({n.seq})", n.pos, func=f)
            elif isinstance(n, Def):
                self.emit_function(n.scope, indent, n.header, n.pos)
            else:
                raise AssertionError(n)

    def emit_ir_resume(self, ir, indent, scope: Scope):
        f = scope.index
        plain: list = []

        def flush():
            if plain:
                self.emit(indent, f"if not {P}R:", func=f)
                self.emit_ir(list(plain), indent + 1, scope, False)
                plain.clear()

        for n in ir:
            cs = _callsites(n)
            if not cs:
                plain.append(n)
                continue
            flush()
            if isinstance(n, C):
                assign = f"{n.target} = " if n.target else ""
                self.emit(indent, f"if not {P}R: {assign}{n.call}", n.pos, n.cs, func=f)
                self.emit(indent, f"elif {P}R == {n.cs}: {assign}{P}resume({P}V); {P}R = 0",
                          n.pos, n.cs, func=f)
            elif isinstance(n, If):
                # As in `emit_ir`, a chain stays at one level: an `else` holding only
                # an `if` with call sites is that `if` (one without any is plain
                # code, run only when not resuming: it stays under the `else`).
                kw = "if"
                while True:
                    then_cs = _callsites(n.then)
                    self.emit(indent, f"{kw} (({P}R in {then_cs!r}) if {P}R else ({n.cond})):",
                              n.pos, func=f)
                    self.emit_ir(n.then, indent + 1, scope, True)
                    if len(n.orelse) == 1 and isinstance(n.orelse[0], If) \
                            and _callsites(n.orelse[0]):
                        n, kw = n.orelse[0], "elif"
                        continue
                    break
                self.emit(indent, "else:", n.pos, func=f)
                self.emit_ir(n.orelse, indent + 1, scope, True)
            elif isinstance(n, While):
                self.emit(indent, f"while (({P}R in {cs!r}) if {P}R else ({n.cond or 'True'})):",
                          n.pos, func=f)
                self.emit(indent + 1, f"if not {P}R:", n.pos, func=f)
                self.tick(indent + 2, n.pos, f)
                self.emit_ir(n.body, indent + 1, scope, True)
            elif isinstance(n, For):
                self.emit(indent, f"if not {P}R or {P}R in {cs!r}:", n.pos, func=f)
                if n.lockable:
                    self.emit(indent + 1, f"{P}lock({n.seq})", n.pos, func=f)
                    self.push_lock(n.seq)
                self.emit(indent + 1, "while True:", n.pos, func=f)
                self.emit(indent + 2, f"if not {P}R:", n.pos, func=f)
                self.emit(indent + 3, f"{P}v = {P}next({n.it}, {P}STOP)", n.pos, func=f)
                self.emit(indent + 3, f"if {P}v is {P}STOP: break", n.pos, func=f)
                self.emit_ir(n.assign, indent + 3, scope, False)
                self.tick(indent + 3, n.pos, f)
                self.emit_ir(n.body, indent + 2, scope, True)
                if n.lockable:
                    self.pop_lock()
                    self.emit(indent + 1, f"{P}unlock({n.seq})", n.pos, func=f)
            else:
                raise AssertionError(n)
        flush()

    def function_ir(self, scope: Scope) -> list:
        if scope._ir is None:
            saved = self.cur_scope, self.loop_seqs
            self.cur_scope, self.loop_seqs = scope, []
            scope.nums = self.infer_numbers(scope)
            # (What was remembered is of the final sets only: see `is_num`, `is_float`.)
            scope.num_exprs.clear()
            scope.float_exprs.clear()
            try:
                self._function_ir(scope)
            finally:
                self.cur_scope, self.loop_seqs = saved
        return scope._ir

    def _function_ir(self, scope: Scope) -> None:
        node = scope.node
        if isinstance(node, ast.Lambda):
            body: list = []
            body.append(S(f"return {self.lower(node.body, body, scope)}", self.pos(node.body)))
        else:
            body = self.lower_block(node.body, scope)
        scope._ir = body

    def cell_prologue(self, scope: Scope, indent: int):
        f = scope.index
        params = {pyname(p) for p in scope.params}
        for py in sorted(scope.cells):
            if py in params:
                self.emit(indent, f"{P}cell_{py} = {P}cellof({py})", func=f)
            else:
                self.emit(indent, f"{P}cell_{py} = {P}Cell()", func=f)

    def emit_body(self, scope: Scope, indent: int, resume: bool):
        self.open_locks.append(())
        try:
            self._emit_body(scope, indent, resume)
        finally:
            self.open_locks.pop()

    def _emit_body(self, scope: Scope, indent: int, resume: bool):
        # No try/except here: Python exceptions become StarlarkErrors where
        # they leave Starlark (the Thread driver, `Function`), with the whole
        # traceback; blocks are scarce (CPython allows 20 nested ones).
        f = scope.index
        ir = self.function_ir(scope)
        if _has_loops(ir):
            self.emit(indent, f"{P}k = 0", func=f)
            ir = _refunding(ir, self.pos(scope.node) if not scope.is_module else (1, 1))
        self.emit_ir(ir, indent, scope, resume)

    def emit_function(self, scope: Scope, indent: int, header: str, pos):
        self.function_ir(scope)  # lowering allocates temps before the header is final
        self.emit(indent, header, pos, func=scope.parent.index if scope.parent else -1,
                  defines=scope.index, form="normal")
        # A call of a function that calls takes a step, so that recursion is bounded
        # by the budget as loops are; steps come from calls the module drew in
        # advance (see `context.draw_calls`), not from a context lookup per call. A
        # function that calls nothing is left free: the frame or loop that calls it
        # paid, and each pays for a bounded number of such calls (a builtin calling
        # back, `sorted(key=)`, at most one per element). Not in the resume form.
        if _calls_something(scope.node):
            f = scope.index
            self.emit(indent + 1, f"{P}c[0] -= 1", pos, func=f)
            self.emit(indent + 1, f"if {P}c[0] < 0: {P}c[0] = {P}drawc()", pos, func=f)
        self.cell_prologue(scope, indent + 1)
        self.emit_body(scope, indent + 1, False)

    def local_names(self, scope: Scope) -> list[str]:
        names = [pyname(p) for p in scope.params]
        names += [py for py in scope.bound.values() if py not in names]
        names += [n for n in scope.extra_locals if n not in names]
        names += [f"{P}cell_{py}" for py in sorted(scope.cells)]
        return names

    def enclosing_cells(self, scope: Scope) -> list[str]:
        names = []
        s = scope.parent
        while s is not None:
            names += [f"{P}cell_{py}" for py in sorted(s.cells)]
            s = s.parent
        return names

    def emit_resume_function(self, scope: Scope):
        f = scope.index
        outer = self.enclosing_cells(scope)
        indent = 0
        if outer:
            self.emit(0, f"def {P}w{f}():", func=-1)
            self.emit(1, " = ".join(outer) + " = None", func=-1)
            indent = 1
        self.emit(indent, f"def {P}r{f}({P}R, {P}L, {P}V):", self.pos(scope.node) if not scope.is_module else (1, 1),
                  func=-1, defines=f, form="resume")
        if scope.is_module:
            globals_ = sorted(set(scope.bound.values()))
            if globals_:
                self.emit(indent + 1, "global " + ", ".join(globals_), func=f)
        for n in self.local_names(scope) if not scope.is_module else self.module_locals(scope):
            self.emit(indent + 1, f"if {n!r} in {P}L: {n} = {P}L[{n!r}]", func=f)
        self.emit_body(scope, indent + 1, True)
        if outer:
            self.emit(1, f"return {P}r{f}", func=-1)

    def module_locals(self, scope: Scope) -> list[str]:
        return list(dict.fromkeys(scope.extra_locals)) + [f"{P}cell_{py}" for py in sorted(scope.cells)]

    def emit_module(self, module: Scope, body_ir: list):
        module._ir = body_ir
        self.emit(0, f"def {P}main():", (1, 1), func=-1, defines=0, form="normal")
        globals_ = sorted(set(module.bound.values()))
        if globals_:
            self.emit(1, "global " + ", ".join(globals_), func=0)
        self.cell_prologue(module, 1)
        self.emit_body(module, 1, False)
        for scope in self.scopes:
            self.emit_resume_function(scope)


def ast_name(s: ast.FunctionDef, comp: _Compiler, scope: Scope) -> ast.Name:
    """A Name node standing for the binding a `def` statement makes."""
    node = ast.Name(id=s.name, ctx=ast.Store(), lineno=s.lineno, col_offset=s.col_offset)
    if s.name in scope.bound:
        py = scope.bound[s.name]
        comp.res[id(node)] = ("global", None, py) if scope.is_module else ("local", scope, py)
    return node
