"""The safe expression interpreter and the op-call parser.

Expressions use Python's syntax but only a small set of its forms, interpreted here node by node
over the syntax tree: never `eval`, `exec`, attribute access or calls beyond a fixed list. Every
operation is bounded so that `10**10**10` or `'a' * 10**9` fail at once with a clear message.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lazyspec.errors import Diagnostic, Location, SpecError, shown

MAX_EXPR_CHARS = 2_000
MAX_EXPR_NODES = 500
MAX_INT_BITS = 256  # far past any real size; keeps big-int arithmetic instant
MAX_SEQ_LEN = 10_000  # strings and lists built by `*` or `+`

CONSTANT_NAMES: dict[str, Any] = {
    "true": True, "false": False, "null": None, "True": True, "False": False, "None": None,
}


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "min": min, "max": max, "abs": abs, "int": int, "float": float, "round": round,
    "ceil": math.ceil, "floor": math.floor, "len": len,
}

_BINOPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_CMPOPS: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}


@dataclass(frozen=True)
class Span:
    """Where an expression's text sits in the file, to turn AST offsets into file positions."""

    text: str
    loc: Location  # position of text[0] when exact, else of the YAML value holding it
    exact: bool  # single-line text whose characters map 1:1 onto the file

    def at(self, node: ast.AST | None) -> Location:
        if node is None or not self.exact or getattr(node, "lineno", 1) != 1:
            return self.loc
        col_bytes = getattr(node, "col_offset", 0)
        col = len(self.text.encode("utf-8")[:col_bytes].decode("utf-8", "ignore"))
        return Location(self.loc.path, self.loc.line, self.loc.col + col)


@dataclass(frozen=True)
class Expr:
    """A parsed expression and where it came from."""

    node: ast.expr
    span: Span

    @property
    def loc(self) -> Location:
        return self.span.at(self.node)

    @property
    def text(self) -> str:
        return ast.get_source_segment(self.span.text, self.node) or self.span.text


@dataclass(frozen=True)
class Arg:
    """One op argument: an Expr (call syntax) or a YAML value that may hold Exprs (long form)."""

    value: Any
    loc: Location


@dataclass(frozen=True)
class OpCall:
    """`Name`, `Name(args...)` or `pkg.mod.Name(args...)` as written in a spec."""

    name: str
    args: tuple[Arg, ...]
    kwargs: tuple[tuple[str, Arg], ...]
    loc: Location
    called: bool  # written with parentheses


def _error(code: str, message: str, loc: Location, hint: str | None = None) -> SpecError:
    return SpecError([Diagnostic(code, message, loc, hint=hint)])


def _parse(span: Span, what: str = "expression", code: str = "LS123") -> ast.expr:
    text = span.text
    if len(text) > MAX_EXPR_CHARS:
        raise _error("LS126", f"expression longer than {MAX_EXPR_CHARS} characters", span.loc)
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        col = (e.offset or 1) - 1 + (len(text) - len(text.lstrip()))
        at = Location(span.loc.path, span.loc.line, span.loc.col + col) if span.exact else span.loc
        raise _error(code, f"invalid {what} '{text}': {e.msg}", at) from None
    except (MemoryError, RecursionError, ValueError) as e:
        raise _error("LS126", f"expression too complex: {type(e).__name__}", span.loc) from None
    if sum(1 for _ in ast.walk(tree)) > MAX_EXPR_NODES:
        raise _error("LS126", f"expression has more than {MAX_EXPR_NODES} parts", span.loc)
    body = tree.body
    if text != text.strip():  # offsets are relative to the stripped text; shift back
        shift = len(text) - len(text.lstrip())
        for n in ast.walk(body):
            for attr in ("col_offset", "end_col_offset"):
                if getattr(n, attr, None) is not None:
                    setattr(n, attr, getattr(n, attr) + shift)
    return body


def parse_expr(span: Span) -> Expr:
    """Parse an expression; its allowed forms are checked now, names at evaluation."""
    expr = Expr(_parse(span), span)
    _check_forms(expr)
    return expr


_ALLOWED = (
    ast.Constant, ast.Name, ast.List, ast.Tuple, ast.BinOp, ast.UnaryOp, ast.BoolOp,
    ast.Compare, ast.IfExp, ast.Subscript, ast.Slice, ast.Call, ast.Load,
    ast.operator, ast.unaryop, ast.boolop, ast.cmpop,
)


def _check_forms(expr: Expr) -> None:
    for n in ast.walk(expr.node):
        if isinstance(n, ast.BinOp) and type(n.op) not in _BINOPS:
            raise _error("LS123", f"operator '{_op_text(n.op)}' is not allowed in expressions",
                         expr.span.at(n), hint="allowed: + - * / // % **")
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.Invert):
            raise _error("LS123", "operator '~' is not allowed in expressions", expr.span.at(n))
        if isinstance(n, ast.Compare) and any(type(o) not in _CMPOPS for o in n.ops):
            raise _error("LS123", "'is' comparisons are not allowed; use == or !=",
                         expr.span.at(n))
        if isinstance(n, ast.Attribute):
            raise _error("LS123", f"attribute access '.{n.attr}' is not allowed in expressions",
                         expr.span.at(n), hint="expressions read params, not attributes")
        if isinstance(n, ast.Call):
            fname = n.func.id if isinstance(n.func, ast.Name) else None
            if fname not in FUNCTIONS:
                called = fname or ast.get_source_segment(expr.span.text, n.func) or "?"
                raise _error("LS123", f"call of '{called}' is not allowed in expressions",
                             expr.span.at(n), hint="allowed functions: " + " ".join(FUNCTIONS))
            if n.keywords or any(isinstance(a, ast.Starred) for a in n.args):
                raise _error("LS123", f"'{fname}' takes positional arguments only",
                             expr.span.at(n))
        if isinstance(n, ast.Constant) and not isinstance(n.value, (int, float, str, bool))\
                and n.value is not None:
            raise _error("LS123", f"literal {shown(n.value)} is not allowed", expr.span.at(n))
        if not isinstance(n, _ALLOWED):
            raise _error("LS123", f"{type(n).__name__} is not allowed in expressions",
                         expr.span.at(n), hint="expressions use numbers, strings, lists, params, "
                         "arithmetic, comparisons, and/or/not, `a if c else b`, indexing and "
                         "min max abs int float round ceil floor len")


def _op_text(op: ast.AST) -> str:
    names: dict[type[ast.AST], str] = {ast.LShift: "<<", ast.RShift: ">>", ast.BitOr: "|",
                                       ast.BitAnd: "&", ast.BitXor: "^", ast.MatMult: "@"}
    return names.get(type(op), type(op).__name__)


def parse_call(span: Span) -> OpCall:
    """Parse an op string like `LazyConv2d(64, 3, stride=2)`."""
    node = _parse(span, "op call", "LS122")
    called = isinstance(node, ast.Call)
    target = node.func if isinstance(node, ast.Call) else node
    name = _dotted_name(target)
    if name is None:
        raise _error("LS122", f"'{span.text}' is not an op: write Name or Name(arguments)",
                     span.at(node), hint="for example LazyLinear(256) or ReLU")
    args: list[Expr] = []
    kwargs: list[tuple[str, Expr]] = []
    if isinstance(node, ast.Call):
        for a in node.args:
            if isinstance(a, ast.Starred):
                raise _error("LS122", "'*' unpacking is not allowed in op arguments",
                             span.at(a), hint="write the arguments out")
            args.append(Expr(a, span))
        for k in node.keywords:
            if k.arg is None:
                raise _error("LS122", "'**' unpacking is not allowed in op arguments",
                             span.at(k.value))
            kwargs.append((k.arg, Expr(k.value, span)))
    problems: list[Diagnostic] = []
    for e in [*args, *(e for _, e in kwargs)]:
        try:
            _check_forms(e)
        except SpecError as err:
            problems.extend(err.diagnostics)
    if problems:
        raise SpecError(problems)
    return OpCall(name, tuple(Arg(e, e.loc) for e in args),
                  tuple((k, Arg(e, e.loc)) for k, e in kwargs), span.at(node), called)


def _dotted_name(node: ast.expr) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


# --- evaluation -------------------------------------------------------------------------------


class _Evaluator:
    def __init__(self, span: Span, env: Mapping[str, Any]):
        self.span, self.env = span, env

    def fail(self, node: ast.AST, code: str, message: str, hint: str | None = None) -> SpecError:
        return _error(code, message, self.span.at(node), hint)

    def eval(self, n: ast.expr) -> Any:
        """One method per allowed form (the table below); anything else is refused."""
        handler = _FORMS.get(type(n))
        if handler is None:
            raise self.fail(n, "LS123", f"{type(n).__name__} is not allowed in expressions")
        return handler(self, n)

    def constant(self, n: ast.Constant) -> Any:
        if isinstance(n.value, int) and n.value.bit_length() > MAX_INT_BITS:
            raise self.fail(n, "LS126", f"number too large (limit: {MAX_INT_BITS}-bit numbers)")
        return n.value

    def name(self, n: ast.Name) -> Any:
        if n.id in CONSTANT_NAMES:
            return CONSTANT_NAMES[n.id]
        if n.id in self.env:
            return self.env[n.id]
        from lazyspec.errors import did_you_mean

        raise self.fail(n, "LS124", f"undefined name '{n.id}'",
                        did_you_mean(n.id, self.env) or "define it under `params:`, or quote "
                        "the value if you meant a string")

    def sequence(self, n: ast.List | ast.Tuple) -> Any:
        items = [self.eval(e) for e in n.elts]
        if _size(items) > MAX_SEQ_LEN:  # `[x, x]` doubles x: nesting must not multiply
            raise self.fail(n, "LS126", f"list longer than {MAX_SEQ_LEN:,} items, nested "
                            "lists counted in full (limit)")
        return items if isinstance(n, ast.List) else tuple(items)

    def unary(self, n: ast.UnaryOp) -> Any:
        operand = self.eval(n.operand)
        if isinstance(n.op, ast.Not):
            return not operand
        sign = operator.neg if isinstance(n.op, ast.USub) else operator.pos
        return self.apply(n, sign, operand)

    def binary(self, n: ast.BinOp) -> Any:
        a, b = self.eval(n.left), self.eval(n.right)
        self.check_size(n, n.op, a, b)
        return self.apply(n, _BINOPS[type(n.op)], a, b)

    def boolean(self, n: ast.BoolOp) -> Any:
        is_and = isinstance(n.op, ast.And)
        v: Any = None
        for e in n.values:
            v = self.eval(e)
            if bool(v) != is_and:
                return v
        return v

    def compare(self, n: ast.Compare) -> Any:
        left = self.eval(n.left)
        for op, comp in zip(n.ops, n.comparators, strict=True):
            right = self.eval(comp)
            if not self.apply(n, _CMPOPS[type(op)], left, right):
                return False
            left = right
        return True

    def choice(self, n: ast.IfExp) -> Any:
        return self.eval(n.body) if self.eval(n.test) else self.eval(n.orelse)

    def subscript(self, n: ast.Subscript) -> Any:
        seq = self.eval(n.value)
        if isinstance(n.slice, ast.Slice):
            parts = [None if p is None else self.eval(p)
                     for p in (n.slice.lower, n.slice.upper, n.slice.step)]
            return self.apply(n, lambda s, p: s[slice(*p)], seq, parts)
        return self.apply(n, operator.getitem, seq, self.eval(n.slice))

    def call(self, n: ast.Call) -> Any:
        assert isinstance(n.func, ast.Name)
        fname = n.func.id
        args = [self.eval(a) for a in n.args]
        self.check_call(n, fname, args)
        return self.apply(n, lambda *a: FUNCTIONS[fname](*a), *args)

    def check_size(self, n: ast.AST, op: ast.operator, a: Any, b: Any) -> None:
        """Refuse before computing anything that would be huge."""
        if isinstance(op, ast.Mod) and isinstance(a, str):
            raise self.fail(n, "LS123", "string formatting with % is not allowed in expressions",
                            hint="% is the remainder of two numbers here")
        if (isinstance(op, ast.Pow) and _is_num(a) and _is_num(b) and abs(a) > 1 and b > 0
                and b * math.log2(abs(a)) > MAX_INT_BITS):
            raise self.fail(n, "LS126", f"result of {shown(a)} ** {shown(b)} is too large "
                            f"(limit: {MAX_INT_BITS}-bit numbers)")
        if isinstance(op, ast.Mult):
            if isinstance(a, int) and isinstance(b, int) and not isinstance(a, bool) and \
                    a.bit_length() + b.bit_length() > MAX_INT_BITS:
                raise self.fail(n, "LS126",
                                f"product too large (limit: {MAX_INT_BITS}-bit numbers)")
            seq, count = (a, b) if isinstance(a, (str, list, tuple)) else (b, a)
            if isinstance(seq, (str, list, tuple)) and isinstance(count, int) and \
                    _size(seq) * max(count, 0) > MAX_SEQ_LEN:
                raise self.fail(n, "LS126", f"repeated sequence longer than {MAX_SEQ_LEN:,} "
                                "items (limit)")
        if isinstance(op, ast.Add) and isinstance(a, (str, list, tuple)) and \
                isinstance(b, (str, list, tuple)) and _size(a) + _size(b) > MAX_SEQ_LEN:
            raise self.fail(n, "LS126", f"sequence longer than {MAX_SEQ_LEN:,} items (limit)")

    def check_call(self, n: ast.AST, fname: str, args: list[Any]) -> None:
        """Refuse the calls whose cost grows with a number: `round(5, -10**20)` computes
        10**(10**20), `int('9' * 9000)` converts in quadratic time."""
        if fname == "round" and len(args) == 2 and isinstance(args[1], int) \
                and abs(args[1]) > MAX_INT_BITS:
            raise self.fail(n, "LS126", f"round to {shown(args[1])} digits is beyond the limit "
                            f"of {MAX_INT_BITS} digits")
        if fname in ("int", "float") and args and isinstance(args[0], str) \
                and len(args[0]) > MAX_INT_BITS:
            raise self.fail(n, "LS126", f"{fname}() of a string longer than {MAX_INT_BITS} "
                            "characters (limit)")

    def apply(self, n: ast.AST, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            out = fn(*args)
        except (TypeError, ValueError, ZeroDivisionError, OverflowError, IndexError,
                KeyError) as e:
            text = ast.get_source_segment(self.span.text, n) or self.span.text
            raise self.fail(n, "LS125", f"cannot evaluate '{text}': {e}") from None
        if isinstance(out, int) and not isinstance(out, bool) and out.bit_length() > MAX_INT_BITS:
            raise self.fail(n, "LS126", f"number too large (limit: {MAX_INT_BITS}-bit numbers)")
        return out


# Each allowed expression form and the method that evaluates it.
_FORMS: dict[type[ast.AST], Callable[[_Evaluator, Any], Any]] = {
    ast.Constant: _Evaluator.constant, ast.Name: _Evaluator.name, ast.List: _Evaluator.sequence,
    ast.Tuple: _Evaluator.sequence, ast.UnaryOp: _Evaluator.unary, ast.BinOp: _Evaluator.binary,
    ast.BoolOp: _Evaluator.boolean, ast.Compare: _Evaluator.compare, ast.IfExp: _Evaluator.choice,
    ast.Subscript: _Evaluator.subscript, ast.Call: _Evaluator.call,
}


def _size(value: Any) -> int:
    """Items in a value, nested lists counted in full (stops counting past the limit)."""
    if isinstance(value, str):
        return len(value)
    if not isinstance(value, (list, tuple)):
        return 1
    total = 0
    for item in value:
        total += _size(item)
        if total > MAX_SEQ_LEN:
            break
    return max(total, len(value))


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def evaluate(expr: Expr, env: Mapping[str, Any]) -> Any:
    """Evaluate an expression against param values; errors point at the failing sub-expression."""
    return _Evaluator(expr.span, env).eval(expr.node)


def resolve(template: Any, env: Mapping[str, Any]) -> Any:
    """Evaluate every Expr inside a YAML value (lists and mappings walked recursively)."""
    if isinstance(template, Expr):
        return evaluate(template, env)
    if isinstance(template, list):
        out = [resolve(t, env) for t in template]
        if _size(out) > MAX_SEQ_LEN:  # `["${x}", "${x}"]` doubles x, as `[x, x]` would
            where = _first_expr(template)
            if where is not None:
                raise _error("LS126", f"list longer than {MAX_SEQ_LEN:,} items, nested lists "
                             "counted in full (limit)", where.loc)
        return out
    if isinstance(template, dict):
        return {k: resolve(v, env) for k, v in template.items()}
    return template


def names_read(template: Any) -> list[str]:
    """The names the expressions inside a YAML value may read, in order, each once."""
    found: dict[str, None] = {}
    todo = [template]
    while todo:  # a loop, not recursion: values nest as deep as YAML lets them
        item = todo.pop()
        if isinstance(item, Expr):
            found.update((n.id, None) for n in ast.walk(item.node) if isinstance(n, ast.Name))
        elif isinstance(item, dict):
            todo.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            todo.extend(reversed(item))
    return list(found)


def _first_expr(template: Any) -> Expr | None:
    """The first expression inside a YAML value (lists and mappings walked), if any."""
    if isinstance(template, Expr):
        return template
    items = template.values() if isinstance(template, dict) else \
        template if isinstance(template, list) else ()
    for item in items:
        found = _first_expr(item)
        if found is not None:
            return found
    return None
