"""CI gates over evaluation reports: --fail-if 'metric<op>value', --baseline MODEL --max-regression P%,
and a JUnit XML rendering (one testcase per metric value and per gate)."""

from __future__ import annotations

import math

import operator
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import WorkbenchError

OPERATORS = {">=": operator.ge, "<=": operator.le, "==": operator.eq, ">": operator.gt, "<": operator.lt}
LOWER_IS_BETTER = {"perplexity", "bits_per_byte", "word_perplexity", "nll_sum"}
HIGHER_IS_BETTER = {"bleu", "f1", "exact_match", "rouge1", "rouge2", "rougeL", "rougeLsum", "x_ratio",
                    "style_self_attribution"}

_GATE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|==|>|<)\s*([-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)\s*$")


@dataclass(frozen=True)
class Threshold:
    metric: str
    op: str
    value: float

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"


@dataclass
class GateResult:
    name: str          # e.g. "perplexity>40" or "max-regression 3% perplexity vs base"
    model: str
    metric: str
    value: float | None
    passed: bool
    message: str

    def to_dict(self) -> dict:
        return asdict(self)


def parse_threshold(text: str) -> Threshold:
    """'perplexity>40' -> Threshold. The gate FAILS when the comparison holds (as in --fail-if)."""
    match = _GATE.match(text)
    if not match:
        raise WorkbenchError(f"bad gate '{text}': write METRIC OP NUMBER, e.g. 'perplexity>40' "
                             "(OP one of > >= < <= ==)")
    return Threshold(match.group(1), match.group(2), float(match.group(3)))


def parse_regression(text: str) -> float:
    """'3%' or '3' -> 0.03 (a percentage)."""
    cleaned = str(text).strip().rstrip("%").strip()
    try:
        value = float(cleaned)
    except ValueError:
        raise WorkbenchError(f"bad --max-regression '{text}': write a percentage such as 3%") from None
    if not math.isfinite(value) or value < 0:
        raise WorkbenchError(f"--max-regression must be a finite, non-negative percentage (got {text})")
    return value / 100


def check_fail_if(model: str, metrics: dict, thresholds: list[Threshold]) -> list[GateResult]:
    results = []
    for gate in thresholds:
        value = metrics.get(gate.metric)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise WorkbenchError(f"gate '{gate}' names metric '{gate.metric}', which this evaluation did not "
                                 f"compute for '{model}' (computed: {', '.join(sorted(numeric(metrics)))})")
        failed = OPERATORS[gate.op](value, gate.value)
        results.append(GateResult(f"fail-if {gate}", model, gate.metric, float(value), not failed,
                                  f"{model}: {gate.metric} = {value:.6g}" + (f" ({gate} holds)" if failed else "")))
    return results


def numeric(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def regression(metric: str, value: float, base: float) -> float | None:
    """Relative change for the worse (positive = worse), or None when the metric has no direction."""
    if metric in LOWER_IS_BETTER:
        worse = value - base
    elif metric in HIGHER_IS_BETTER:
        worse = base - value
    else:
        return None
    return worse / abs(base) if base else (0.0 if worse <= 0 else float("inf"))


def check_regression(model: str, metrics: dict, baseline_model: str, baseline: dict,
                     max_regression: float) -> list[GateResult]:
    results = []
    for metric, value in sorted(numeric(metrics).items()):
        base = numeric(baseline).get(metric)
        if base is None:
            continue
        change = regression(metric, value, base)
        if change is None:
            continue
        passed = change <= max_regression + 1e-12
        name = f"max-regression {max_regression * 100:g}% {metric} vs {baseline_model}"
        results.append(GateResult(name, model, metric, float(value), passed,
                                  f"{model}: {metric} = {value:.6g} vs {baseline_model} {base:.6g} "
                                  f"({change * 100:+.2f}% worse, limit {max_regression * 100:g}%)"))
    return results


def junit_xml(results: list[dict], gates: list[GateResult], path: str | Path) -> None:
    """JUnit XML: suite 'workbench-eval', a testcase per (model, metric) value and per gate."""
    import xml.etree.ElementTree as ET

    cases = []
    for report in results:
        for metric, value in report.get("metrics", {}).items():
            case = ET.Element("testcase", classname=f"eval.{report['model']}", name=f"metric {metric}", time="0")
            out = ET.SubElement(case, "system-out")
            out.text = f"{metric} = {value}"
            cases.append((case, False))
    for gate in gates:
        case = ET.Element("testcase", classname=f"eval.{gate.model}", name=gate.name, time="0")
        if not gate.passed:
            failure = ET.SubElement(case, "failure", message=gate.message, type="GateFailed")
            failure.text = gate.message
        else:
            out = ET.SubElement(case, "system-out")
            out.text = gate.message
        cases.append((case, not gate.passed))
    suites = ET.Element("testsuites")
    suite = ET.SubElement(suites, "testsuite", name="workbench-eval", tests=str(len(cases)),
                          failures=str(sum(1 for _, failed in cases if failed)), errors="0", skipped="0")
    for case, _ in cases:
        suite.append(case)
    tree = ET.ElementTree(suites)
    ET.indent(tree)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tree.write(str(path), encoding="utf-8", xml_declaration=True)
