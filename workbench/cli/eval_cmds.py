"""`workbench eval MODEL [MODEL...] --metrics ...`, `workbench eval compare A B`, `workbench eval list [MODEL]`.

Exit codes: 0 all gates passed, 1 user error, 2 bad usage, 3 a gate failed (named on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .common import add_generation_flags, add_json_flag, command, context, emit, info, positive_int, table

GATE_FAILED = 3


def register(subcommands) -> None:
    parser = command(
        subcommands, "eval", cmd_eval,
        "evaluate models (perplexity, BLEU, ROUGE, X-token ratio, style attribution) with CI gates; "
        "also `eval compare A B` and `eval list [MODEL]`",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  workbench eval tiny-neo --data alice --metrics ppl --fail-if 'perplexity>40'\n"
               "  workbench eval tuned --refs refs.jsonl --metrics bleu,rouge --baseline base --max-regression 3%\n"
               "  workbench eval alice-model poe-model --data alice --data poe --metrics style\n"
               "  workbench eval compare base tuned\n"
               "  workbench eval list tuned",
    )
    parser.add_argument("models", nargs="+", metavar="MODEL",
                        help="models to evaluate (or: compare A B | list [MODEL])")
    what = parser.add_argument_group("what to evaluate")
    what.add_argument("--metrics", default="ppl", help="comma list of ppl,bleu,rouge,f1,exact-match,x-ratio,style (default ppl)")
    what.add_argument("--data", action="append", default=[], metavar="NAME",
                      help="a registered text dataset (repeat for style attribution)")
    what.add_argument("--split", default="test", choices=["train", "val", "test"])
    what.add_argument("--file", metavar="PATH", help="a UTF-8 text file for perplexity")
    what.add_argument("--refs", metavar="FILE",
                      help="JSONL with prompt and reference, for bleu, rouge, f1 and exact-match")
    what.add_argument("--chat-template", default="auto", choices=["auto", "on", "off"],
                      help="bleu/rouge prompts through the model's chat template (auto: for chat models)")
    ppl = parser.add_argument_group("perplexity")
    ppl.add_argument("--context", type=int, default=None, help="window length (default: the model's context)")
    ppl.add_argument("--stride", type=int, default=None,
                     help="new tokens scored per window (default: the context = disjoint windows)")
    ppl.add_argument("--batch-size", type=int, default=8, help="windows (or prompts) per forward pass")
    ppl.add_argument("--bf16", action="store_true", help="bf16 autocast (faster, slightly different values)")
    xr = parser.add_argument_group("x-ratio")
    xr.add_argument("--letter", default="x")
    xr.add_argument("--tokens", type=positive_int, default=200, help="new tokens per sample (default 200)")
    xr.add_argument("--prompt", action="append", default=[], dest="prompts",
                    help="a prompt (repeatable; default: random token ids, seeded)")
    xr.add_argument("--samples", type=positive_int, default=4, help="random prompts when no --prompt (default 4)")
    xr.add_argument("--prompt-tokens", type=int, default=8, help="tokens per random prompt (default 8)")
    st = parser.add_argument_group("style attribution")
    st.add_argument("--style-prompts", type=positive_int, default=4, help="prompts drawn per dataset (default 4)")
    st.add_argument("--style-tokens", type=positive_int, default=32, help="tokens generated per prompt (default 32)")
    add_generation_flags(parser)
    out = parser.add_argument_group("output and gates")
    out.add_argument("--output", metavar="FILE", help="also write the JSON report to FILE")
    out.add_argument("--fresh", action="store_true", help="recompute even when the registry has the result")
    out.add_argument("--fail-if", action="append", default=[], metavar="GATE",
                     help="fail (exit 3) when e.g. 'perplexity>40' holds; repeatable")
    out.add_argument("--baseline", metavar="MODEL", help="compare against this model's results")
    out.add_argument("--max-regression", metavar="PCT", help="with --baseline: allowed regression, e.g. 3%%")
    out.add_argument("--junit", metavar="FILE", help="write a JUnit XML report")
    add_json_flag(parser)


def cmd_eval(args) -> int:
    first = args.models[0]
    if first in ("compare", "list") and not asks_for_evaluation(args):
        return cmd_compare(args) if first == "compare" else cmd_list(args)
    return cmd_run(args)


def asks_for_evaluation(args) -> bool:
    """Whether the flags describe an evaluation, so that `eval list --data alice` evaluates a model
    named "list" rather than listing results."""
    return bool(args.data or args.file or args.refs or args.prompts or args.baseline or args.output
                or args.junit or args.fail_if or args.metrics != "ppl")


def check_writable(path: str, flag: str) -> None:
    """Before any work: the report file can be created (not a folder, its parent exists and is
    writable, not under /proc or /sys)."""
    from ..core.errors import WorkbenchError

    target = Path(path).expanduser()
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise WorkbenchError(f"{flag} {path} is a folder; give a file name")
    if not parent.is_dir():
        raise WorkbenchError(f"{flag} {path}: the folder {parent} does not exist")
    resolved = parent.resolve()
    if resolved.parts[:2] in (("/", "proc"), ("/", "sys")) or not os.access(resolved, os.W_OK) or \
            (target.exists() and not os.access(target, os.W_OK)):
        raise WorkbenchError(f"{flag} {path} cannot be written")


# ---------------------------------------------------------------- eval


class _Progress:
    """A tqdm bar on stderr per stage (hidden when stderr is not a terminal)."""

    def __init__(self):
        self.bar = None
        self.label = ""

    def stage(self, label: str) -> None:
        self.close()
        self.label = label
        info(label) if not sys.stderr.isatty() else None

    def progress(self, done: int, total: int) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=total, desc=self.label[:40], file=sys.stderr, disable=None, leave=False,
                            dynamic_ncols=True)
        self.bar.total = total
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def cmd_run(args) -> int:
    from ..core.errors import WorkbenchError
    from ..core.evaluation import gates as gate_mod
    from ..core.evaluation.request import EvalRequest, metric_names
    from ..core.evaluation.service import evaluate
    from ..core.generation import GenerationSettings

    for path, flag in ((args.output, "--output"), (args.junit, "--junit")):
        if path:
            check_writable(path, flag)
    thresholds = [gate_mod.parse_threshold(g) for g in args.fail_if]
    if args.max_regression is not None and not args.baseline:
        raise WorkbenchError("--max-regression needs --baseline MODEL")
    max_regression = gate_mod.parse_regression(args.max_regression if args.max_regression is not None else "0%") \
        if args.baseline else None
    generation = GenerationSettings(
        max_new_tokens=args.max_new_tokens, do_sample=args.do_sample, temperature=args.temperature,
        top_k=args.top_k, top_p=args.top_p, repetition_penalty=args.repetition_penalty,
        num_return_sequences=args.num_return_sequences, seed=args.seed).validate()
    request = EvalRequest(
        metrics=args.metrics, data=args.data, split=args.split, file=args.file, refs=args.refs,
        context=args.context, stride=args.stride, batch_size=args.batch_size,
        dtype="bf16" if args.bf16 else "fp32", generation=generation.to_dict(), letter=args.letter,
        tokens=args.tokens, prompts=args.prompts, samples=args.samples, prompt_tokens=args.prompt_tokens,
        seed=args.seed if args.seed is not None else 0, style_prompts=args.style_prompts,
        style_tokens=args.style_tokens, device=args.device, fresh=args.fresh, chat_template=args.chat_template,
    ).validate()
    known = metric_names(request.metrics)
    for threshold in thresholds:
        if threshold.metric not in known:
            raise WorkbenchError(f"gate '{threshold}' names '{threshold.metric}', which --metrics "
                                 f"{','.join(request.metrics)} does not report ({', '.join(known)})")
    models = list(dict.fromkeys(args.models))
    evaluated = models + ([args.baseline] if args.baseline and args.baseline not in models else [])
    ctx = context(args)
    progress = _Progress()
    try:
        report = evaluate(ctx, evaluated, request, on_progress=progress.progress, on_stage=progress.stage,
                          on_info=info)
    finally:
        progress.close()
    results = report["results"]
    by_model = {r["model"]: r for r in results}
    if args.baseline:
        by_model[args.baseline]["baseline"] = True
    gates = []
    for model in models:
        metrics = by_model[model]["metrics"]
        gates += gate_mod.check_fail_if(model, metrics, thresholds)
        if args.baseline and model != args.baseline:
            gates += gate_mod.check_regression(model, metrics, args.baseline,
                                               by_model[args.baseline]["metrics"], max_regression)
    failed = [g for g in gates if not g.passed]
    report["gates"] = [g.to_dict() for g in gates]
    report["passed"] = not failed
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        info(f"wrote {args.output}")
    if args.junit:
        gate_mod.junit_xml(results, gates, args.junit)
        info(f"wrote {args.junit}")
    emit(args, report, render_report)
    for gate in failed:
        info(f"gate failed: {gate.name}: {gate.message}")
    return GATE_FAILED if failed else 0


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.1f}"
    return str(value)


def render_report(report: dict) -> str:
    lines = []
    for result in report["results"]:
        tag = " (cached)" if result["cached"] else ""
        tag += " [baseline]" if result.get("baseline") else ""
        lines.append(f"{result['model']}{tag}")
        for metric, value in result["metrics"].items():
            lines.append(f"  {metric:<24} {_fmt(value)}")
        ppl = result["details"].get("ppl")
        if ppl:
            lines.append(f"  ({ppl['tokens']:,} tokens scored, context {ppl['context']}, stride {ppl['stride']}, "
                         f"{ppl['windows']} windows, {ppl['dtype']})")
        xr = result["details"].get("x_ratio")
        if xr:
            per = ", ".join(f"{s['ratio']:.3f}" for s in result["samples"]["x_ratio"])
            lines.append(f"  x-ratio per sample: {per}; vocabulary base rate {xr['base_rate']:.4f} "
                         f"({xr['base_tokens']} of {xr['vocab']} tokens contain '{xr['letter']}')")
    style = report.get("style")
    if style:
        lines.append("")
        lines.append("perplexity (rows: models, columns: datasets)")
        lines.append(table([[m] + [f"{v:.2f}" for v in row] for m, row in zip(style["models"], style["perplexity"])],
                           ["MODEL"] + style["datasets"]))
        if style["confusion"]:
            lines.append("")
            lines.append("samples attributed (rows: generating model, columns: least surprised model)")
            lines.append(table([[m] + row for m, row in zip(style["models"], style["confusion"])],
                               ["GENERATOR"] + style["models"]))
            lines.append(f"self-attribution accuracy: {style['accuracy']:.2f}")
    for gate in report.get("gates", []):
        lines.append(f"{'PASS' if gate['passed'] else 'FAIL'} {gate['name']}: {gate['message']}")
    return "\n".join(lines)


# ---------------------------------------------------------------- compare and list


def cmd_compare(args) -> int:
    from ..core.errors import WorkbenchError
    from ..core.evaluation.stored_results import compare

    if len(args.models) != 3:
        raise WorkbenchError("usage: workbench eval compare MODEL_A MODEL_B")
    _, a, b = args.models
    ctx = context(args)
    rows = compare(ctx, a, b)
    emit(args, {"a": a, "b": b, "rows": rows}, lambda d: table(
        [[r["metric"], r["target"], _fmt(r["a"]) if r["a"] is not None else "-",
          _fmt(r["b"]) if r["b"] is not None else "-",
          f"{r['delta_pct']:+.2f}%" if r["delta_pct"] is not None else "-", r["better"] or "-",
          "" if r["same_settings"] or r["a"] is None or r["b"] is None else "settings differ"] for r in d["rows"]],
        ["METRIC", "TARGET", a, b, "CHANGE", "BETTER", ""]) if d["rows"] else "no stored results")
    return 0


def cmd_list(args) -> int:
    from ..core.errors import WorkbenchError
    from ..core.evaluation.stored_results import list_evaluations

    if len(args.models) > 2:
        raise WorkbenchError("usage: workbench eval list [MODEL]")
    ctx = context(args)
    model = args.models[1] if len(args.models) == 2 else None
    if model:
        ctx.registry.get_model(model)
    rows = list_evaluations(ctx, model)
    emit(args, rows, lambda rs: table(
        [[r["id"], r["model"], r["metric"], _fmt(r["value"]), r["target"], r["created_at"][:16].replace("T", " ")]
         for r in rs], ["ID", "MODEL", "METRIC", "VALUE", "TARGET", "CREATED"]) if rs else "no stored results")
    return 0
