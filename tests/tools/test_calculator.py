import math

import pytest

from graphcraft.tools.calculator import CalculatorError, calculator_tool, evaluate


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("2 + 3 * 4", 14),
        ("(2 + 3) * 4", 20),
        ("2 ** 10", 1024),
        ("2 ^ 10", 1024),
        ("7 // 2", 3),
        ("7 % 4", 3),
        ("-3 + +5", 2),
        ("sqrt(16) / 4", 1.0),
        ("max(3, 9, 4)", 9),
        ("round(pi, 3)", 3.142),
        ("factorial(10)", 3628800),
        ("1.5e3 / 3", 500.0),
    ],
)
def test_evaluates_arithmetic(expression, expected):
    assert evaluate(expression) == pytest.approx(expected)


def test_trig_and_constants():
    assert evaluate("sin(pi / 2) + cos(0)") == pytest.approx(2.0)
    assert evaluate("log(e)") == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("1 / 0", "division by zero"),
        ("5 // (2 - 2)", "division by zero"),
        ("5 % 0.0", "division by zero"),
        ("9 ** 9 ** 9", "exponent"),
        ("2 ** 100000", "exponent"),
        ("10 ** 5000", "too large"),
        ("1e308 * 10", "overflows"),
        ("x + 1", "unknown name 'x'"),
        ("__import__('os').system('id')", "unknown function"),
        ("().__class__", "not allowed"),
        ("open('/etc/passwd')", "unknown function 'open'"),
        ("'a' * 3", "only numbers"),
        ("[1, 2][0]", "not allowed"),
        ("lambda: 1", "not allowed"),
        ("sqrt(-1)", "sqrt(-1)"),
        ("(-8) ** 0.5", "complex"),
        ("factorial(100000)", "factorial argument too large"),
        ("", "empty"),
        ("2 +", "not an arithmetic expression"),
        ("1" * 600, "longer than"),
    ],
)
def test_refuses_with_clear_error(expression, message):
    with pytest.raises(CalculatorError, match=message.replace("(", r"\(").replace(")", r"\)")):
        evaluate(expression)


def test_tool_returns_errors_as_text_instead_of_raising():
    tool = calculator_tool()
    assert tool.name == "calculator"
    assert tool.invoke({"expression": "6 * 7"}) == "42"
    out = tool.invoke({"expression": "1/0"})
    assert out.startswith("calculator error:") and "division by zero" in out


def test_float_results_are_not_mangled():
    tool = calculator_tool()
    assert float(tool.invoke({"expression": "1 / 3"})) == pytest.approx(1 / 3)
    assert tool.invoke({"expression": "10 / 2"}) == "5"
    assert math.isclose(float(tool.invoke({"expression": "2 ** 0.5"})), math.sqrt(2))


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 ** -1", "division by zero"),
        ("0.0 ** -2", "division by zero"),
        ("1e400", "not a finite number"),
        ("1e400 - 1e400", "not a finite number"),
        ("round(2, -10 ** 8)", "ndigits"),
        ("round(2.5, 10 ** 8)", "ndigits"),
    ],
)
def test_edge_cases_become_calculator_errors(expression, message):
    with pytest.raises(CalculatorError, match=message):
        evaluate(expression)


def test_round_with_reasonable_ndigits_still_works():
    assert evaluate("round(123456, -3)") == 123000
    assert evaluate("round(2, -400)") == 0


def test_tool_reports_zero_to_negative_power_as_text():
    out = calculator_tool().invoke({"expression": "0**-1"})
    assert out.startswith("calculator error:") and "division by zero" in out
