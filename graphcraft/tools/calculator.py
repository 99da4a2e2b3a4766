"""Safe arithmetic for agents: the expression is parsed with `ast` and walked, never `eval`-ed.

Only numbers, + - * / // % **, unary signs, parentheses, a few math functions and the
constants pi / e / tau are accepted. Anything else (names, attributes, calls to unknown
functions, strings) is refused with a message the model can act on. Exponents and results are
bounded so `9**9**9` cannot freeze the process.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable

from langchain_core.tools import BaseTool, StructuredTool, ToolException

MAX_EXPRESSION_CHARS = 500
MAX_RESULT_BITS = 4096  # integers up to ~1233 decimal digits
MAX_EXPONENT = 10_000
MAX_ROUND_DIGITS = 400  # round(x, -n) computes 10**n; a float has no more than ~340 digits anyway

_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[float], float]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS: dict[str, Callable[..., float]] = {
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "sqrt": math.sqrt,
    "log": math.log,
    "log10": math.log10,
    "log2": math.log2,
    "exp": math.exp,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "asin": math.asin,
    "acos": math.acos,
    "atan": math.atan,
    "floor": math.floor,
    "ceil": math.ceil,
    "factorial": math.factorial,
}
_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}
_SYMBOLS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%", ast.Pow: "**"}


class CalculatorError(ValueError):
    """The expression is not allowed or cannot be computed; the message says why."""


def evaluate(expression: str) -> int | float:
    """Compute an arithmetic expression such as ``"(2 + 3) * sqrt(16) / 4"``."""
    text = expression.strip()
    if not text:
        raise CalculatorError("empty expression")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise CalculatorError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(text.replace("^", "**"), mode="eval")
    except SyntaxError as exc:
        raise CalculatorError(f"not an arithmetic expression: {exc.msg}") from None
    return _eval(tree.body)


def _check_size(value: int | float) -> int | float:
    if isinstance(value, int) and value.bit_length() > MAX_RESULT_BITS:
        raise CalculatorError(f"result too large (more than {MAX_RESULT_BITS} bits)")
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculatorError(f"result overflows a float ({value} is not a finite number)")
    return value


def _power(base: int | float, exponent: int | float) -> int | float:
    if abs(exponent) > MAX_EXPONENT:
        raise CalculatorError(f"exponent {exponent} too large (limit {MAX_EXPONENT})")
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0:
        if max(base.bit_length(), 1) * exponent > MAX_RESULT_BITS * 2:
            raise CalculatorError(f"result too large (more than {MAX_RESULT_BITS} bits)")
    try:
        result = base**exponent
    except OverflowError:
        raise CalculatorError("result overflows a float") from None
    except ZeroDivisionError:
        raise CalculatorError("division by zero in '**' (zero to a negative power)") from None
    if isinstance(result, complex):
        raise CalculatorError("result is a complex number (fractional power of a negative number)")
    return result


def _eval(node: ast.AST) -> int | float:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise CalculatorError(f"only numbers are allowed, got {node.value!r}")
        return _check_size(node.value)  # 1e400 parses as inf
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            return _check_size(_power(left, right))
        if isinstance(node.op, ast.Div | ast.FloorDiv | ast.Mod) and right == 0:
            raise CalculatorError(f"division by zero in '{_SYMBOLS[type(node.op)]}'")
        try:
            return _check_size(_BINARY[type(node.op)](left, right))
        except OverflowError:
            raise CalculatorError("result overflows a float") from None
    if isinstance(node, ast.Name):
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        raise CalculatorError(f"unknown name {node.id!r}; allowed constants: {', '.join(_CONSTANTS)}")
    if isinstance(node, ast.Call):
        return _call(node)
    raise CalculatorError(f"'{ast.unparse(node)}' is not allowed: use numbers, + - * / // % ** and math functions")


def _call(node: ast.Call) -> int | float:
    if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
        raise CalculatorError(f"unknown function '{ast.unparse(node.func)}'; allowed: {', '.join(sorted(_FUNCTIONS))}")
    if node.keywords:
        raise CalculatorError("keyword arguments are not allowed")
    name = node.func.id
    args = [_eval(arg) for arg in node.args]
    if name == "factorial" and args and isinstance(args[0], int) and args[0] > 500:
        raise CalculatorError("factorial argument too large (limit 500)")
    if name == "round" and len(args) > 1 and isinstance(args[1], int) and abs(args[1]) > MAX_ROUND_DIGITS:
        raise CalculatorError(f"round() ndigits {args[1]} out of range (limit ±{MAX_ROUND_DIGITS})")
    try:
        return _check_size(_FUNCTIONS[name](*args))
    except (ValueError, TypeError, ZeroDivisionError, OverflowError) as exc:
        raise CalculatorError(f"{name}({', '.join(map(str, args))}): {exc}") from None


def _calculator(expression: str) -> str:
    try:
        value = evaluate(expression)
    except CalculatorError as exc:
        raise ToolException(f"calculator error: {exc}") from None
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def calculator_tool() -> BaseTool:
    """The `calculator` tool; errors come back to the model as text, not as a crash."""
    return StructuredTool.from_function(
        func=_calculator,
        name="calculator",
        description=(
            "Evaluate an arithmetic expression exactly. Supports + - * / // % ** (or ^), parentheses, "
            "pi, e, and sqrt, log, exp, sin, cos, tan, floor, ceil, abs, round, min, max, factorial. "
            "Input: expression, e.g. '(3 + 4) * 2 ** 3'."
        ),
        handle_tool_error=True,
    )
