"""Evaluation: perplexity, BLEU, ROUGE, X-token ratio, style attribution, CI gates, cached reports.

Cheap to import (torch and the metric libraries load inside the functions that use them). The modules:
  windows.py       rolling-window scheme (lm-evaluation-harness compatible)
  perplexity.py    perplexity(loaded, text, ...) -> PerplexityResult
  text_metrics.py  references files, hypotheses generation, bleu(), rouge()
  x_ratio.py       vocabulary base rate and x_ratio(loaded, ...)
  style.py         style attribution: perplexity matrix and sample-attribution confusion matrix
  gates.py         --fail-if / --baseline gates and JUnit XML
  request.py       EvalRequest: what to measure, metric names and aliases
  runner.py        EvalRunner: one model's metrics, cache keys and hashes
  service.py       evaluate(ctx, models, request) with registry storage and caching by hash
  stored_results.py  stored evaluations: listing, latest values, comparing models
"""
