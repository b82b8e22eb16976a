"""What the Evaluate screen shows of a report: one row per score (with the earlier stored value), the
generated samples and generation settings behind the highlighted score, and warnings when those samples
are empty or degenerate. Pure functions from report dicts to rows and Rich text."""

from __future__ import annotations

from rich.console import Group
from rich.text import Text

from ...core.evaluation.samples import sample_warnings
from ..format import number, percent

SHOWN = ("perplexity", "bits_per_byte", "x_ratio", "bleu", "rouge1", "rouge2", "rougeL", "f1", "exact_match",
         "style_self_attribution")
REF_METRICS = ("bleu", "f1", "exact_match")  # scored against a references file, like rouge*
LOWER_IS_BETTER = ("perplexity", "bits_per_byte", "word_perplexity")
SAMPLE_CHARS = 240  # of each generated text shown under the table


def target_of(result: dict, metric: str) -> str:
    settings = result.get("settings", {})
    if metric in LOWER_IS_BETTER:
        return settings.get("ppl", {}).get("target", "")
    if metric.startswith("rouge") or metric in REF_METRICS:
        return f"refs:{settings.get('refs', {}).get('file', '')}"
    return ""


def change_text(metric: str, value, before) -> str:
    if before is None or before == 0 or value is None:
        return ""
    pct = (value - before) / abs(before) * 100
    better = (value < before) if metric in LOWER_IS_BETTER else (value > before)
    return f"{pct:+.1f}%" + ("" if abs(pct) < 0.05 else (" better" if better else " worse"))


def result_rows(report: dict, earlier: dict[str, list]) -> list[tuple[str, list[str]]]:
    """(key "<result index>:<metric>", cells) per score; `earlier[model]` are its older evaluation rows."""
    rows = []
    for index, result in enumerate(report["results"]):
        model = result["model"]
        for metric in SHOWN:
            if metric not in result["metrics"]:
                continue
            value = result["metrics"][metric]
            target = target_of(result, metric)
            older = [e for e in earlier.get(model, []) if e.metric == metric and (e.target or "") == target]
            before = older[-1].value if older else None
            rows.append((f"{index}:{metric}", [model, metric, target or "-", number(value), number(before),
                                               change_text(metric, value, before),
                                               "cached" if result.get("cached") else ""]))
    return rows


def generation_line(settings: dict | None, new_tokens: str | None = None) -> str:
    """How the text was generated; `new_tokens` replaces the settings' "up to N new tokens" where a metric
    fixes its own length (the x-ratio generates exactly its N tokens)."""
    if not settings:
        return f"generation: greedy, {new_tokens}" if new_tokens else "generation: greedy"
    how = (f"sampling (temperature {number(settings.get('temperature'))}, top-k {settings.get('top_k')}, "
           f"top-p {number(settings.get('top_p'))}, seed {settings.get('seed')})"
           if settings.get("do_sample") else "greedy")
    length = new_tokens or f"up to {settings.get('max_new_tokens')} new tokens"
    return f"generation: {how}, {length}"


def _sample(label: str, text: str) -> Text:
    shown = text if len(text) <= SAMPLE_CHARS else text[:SAMPLE_CHARS] + "..."
    line = Text(f"{label}: ", style="bold")
    line.append(repr(shown) if not shown.strip() else shown.replace("\n", " / "))
    return line


def samples_view(report: dict, key: str | None) -> Group:
    """The samples and settings behind the score `key` ("<index>:<metric>")."""
    if not key:
        return Group(Text("Highlight a score to see the samples behind it.", style="dim"))
    index, metric = key.split(":", 1)
    result = report["results"][int(index)]
    parts: list = []
    if metric in LOWER_IS_BETTER:
        details = result.get("details", {}).get("ppl", {})
        parts.append(Text(f"perplexity of {result['model']} on {target_of(result, metric)}: scores every "
                          f"token of the text once; lower is better"))
        for name in ("tokens", "bits_per_byte", "word_perplexity", "context", "stride"):
            if details.get(name) is not None:
                parts.append(Text(f"  {name.replace('_', ' ')}: {number(details[name])}", style="dim"))
    elif metric == "x_ratio":
        details = result.get("details", {}).get("x_ratio", {})
        settings = result.get("settings", {}).get("x_ratio", {})
        parts.append(Text(f"share of generated tokens containing '{settings.get('letter', 'x')}': "
                          f"{percent(result['metrics']['x_ratio'])} "
                          f"(the vocabulary's base rate: {percent(details.get('base_rate'))})"))
        exactly = f"exactly {settings.get('tokens')} new tokens per sample"
        parts.append(Text(generation_line(result.get("generation"), exactly), style="dim"))
        for sample in result.get("samples", {}).get("x_ratio", []):
            parts.append(_sample(f"{percent(sample.get('ratio'))}", sample.get("text", "")))
    elif metric.startswith("rouge") or metric in REF_METRICS:
        refs = result.get("settings", {}).get("refs", {})
        parts.append(Text(generation_line(refs.get("generation")), style="dim"))
        for sample in result.get("samples", {}).get("refs", []):
            parts += [_sample("prompt", sample["prompt"]), _sample("  reference", sample["reference"]),
                      _sample("  model", sample["hypothesis"])]
            if metric in ("f1", "exact_match") and "f1" in sample:
                parts.append(Text(f"  token F1 {number(sample['f1'])}, exact match {number(sample['exact_match'])}",
                                  style="dim"))
    elif metric == "style_self_attribution":
        style = report.get("style", {})
        parts.append(Text("share of this model's samples that the perplexities attribute to it"))
        for sample in style.get("samples", []):
            if sample.get("generator") == result["model"]:
                parts.append(_sample(f"{sample.get('dataset')} prompt -> {sample.get('attributed', '?')}",
                                     sample.get("text", "")))
    warnings = report_warnings(report, result)
    if warnings:
        parts.insert(0, Text("warning: " + "; ".join(warnings), style="bold red"))
    return Group(*parts)


def report_warnings(report: dict, result: dict | None = None) -> list[str]:
    """Warnings about the generated text behind a report (of one result, or of all of them)."""
    warnings = []
    for item in [result] if result is not None else report["results"]:
        samples = item.get("samples", {})
        if samples.get("x_ratio"):
            warnings += [f"{item['model']} x-ratio: {w}" for w in
                         sample_warnings([s.get("text", "") for s in samples["x_ratio"]], "samples")]
        if samples.get("refs"):
            warnings += [f"{item['model']} BLEU/ROUGE: {w}" for w in
                         sample_warnings([s["hypothesis"] for s in samples["refs"]], "answers")]
    return warnings
