"""Perplexity: the window scheme, the fast path against a plain per-window computation, lm-eval itself."""

from __future__ import annotations

import importlib.util
import json
import math
import random

import pytest

from workbench.core.evaluation.windows import rolling_windows

TEXT = (
    "Alice was beginning to get very tired of sitting by her sister on the bank, and of having nothing "
    "to do: once or twice she had peeped into the book her sister was reading, but it had no pictures or "
    "conversations in it, 'and what is the use of a book,' thought Alice 'without pictures or "
    "conversations?' So she was considering in her own mind (as well as she could, for the hot day made "
    "her feel very sleepy and stupid), whether the pleasure of making a daisy-chain would be worth the "
    "trouble of getting up and picking the daisies, when suddenly a White Rabbit with pink eyes ran close "
    "by her.\n"
) * 2


def scored_targets(n_tokens, context, stride):
    """(target index in S, history length) for every scored target of every window."""
    out = []
    for w in rolling_windows(n_tokens, context, stride):
        assert 1 <= w.length <= context
        for j in range(w.length - w.scored, w.length):
            out.append((w.start + j + 1, j + 1))
    return out


@pytest.mark.parametrize("n,context,stride", [(1, 8, None), (7, 8, None), (8, 8, None), (9, 8, None),
                                              (50, 8, None), (50, 8, 3), (50, 8, 1), (17, 8, 8),
                                              (100, 16, 5)])
def test_every_token_scored_once_with_enough_history(n, context, stride):
    targets = scored_targets(n, context, stride)
    assert sorted(t for t, _ in targets) == list(range(1, n + 1))
    stride = stride or context
    for target, history in targets:
        # the history of a target is S[start:target]: the prefix and/or earlier tokens
        assert history >= min(target, context - stride + 1)


def test_windows_match_lm_eval_rolling_windows():
    utils = pytest.importorskip("lm_eval.utils")
    rng = random.Random(0)
    for _ in range(200):
        n, context = rng.randint(1, 300), rng.randint(1, 40)
        tokens = list(range(1000, 1000 + n))
        sequence = [7] + tokens
        theirs = [utils.make_disjoint_window(pair) for pair in
                  utils.get_rolling_token_windows(tokens, prefix_token=7, max_seq_len=context, context_len=1)]
        ours = rolling_windows(n, context)
        assert len(theirs) == len(ours)
        for (ctx_part, cont), w in zip(theirs, ours):
            # lm-eval feeds (context + continuation)[-(max_len + 1):][:-1] and scores the continuation
            model_input = (ctx_part + cont)[-(context + 1):][:-1]
            assert model_input == sequence[w.start:w.end]
            assert cont == sequence[w.end - w.scored + 1:w.end + 1]


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from workbench.core.context import open_workspace
    from workbench.core.models import ModelCache, ModelShape, create_model

    home = tmp_path_factory.mktemp("ppl-ws")
    ctx = open_workspace(home, starter=False)
    cache = ModelCache()
    loaded = {}
    for arch in ("gpt2", "gpt-neo"):
        name = f"tiny-{arch}"
        create_model(ctx.ws, ctx.registry, name, arch, ModelShape(layers=2, hidden=32, heads=2, context=64), seed=1)
        loaded[arch] = cache.get(ctx.registry, name, device="cpu")
    yield loaded
    ctx.registry.close()


def plain_reference(model, ids, windows):
    """One forward pass per window, full logits, log-softmax, NLL of the scored targets summed."""
    import torch

    total = 0.0
    with torch.no_grad():
        for w in windows:
            logits = model(torch.tensor([ids[w.start:w.end]])).logits[0].double()
            logp = torch.log_softmax(logits, dim=-1)
            for j in range(w.length - w.scored, w.length):
                total -= float(logp[j, ids[w.start + j + 1]])
    return total


@pytest.mark.parametrize("arch", ["gpt2", "gpt-neo"])
@pytest.mark.parametrize("context,stride,batch", [(None, None, 8), (64, 16, 3), (32, None, 1), (20, 7, 4)])
def test_fast_path_equals_plain_reference(tiny_models, arch, context, stride, batch):
    from workbench.core.evaluation.perplexity import encode_text, perplexity, prefix_token_id

    loaded = tiny_models[arch]
    result = perplexity(loaded, TEXT, context=context, stride=stride, batch_size=batch, logits_chunk=50)
    ids = [prefix_token_id(loaded.tokenizer)] + encode_text(loaded.tokenizer, TEXT)
    reference = plain_reference(loaded.model, ids, rolling_windows(len(ids) - 1, context or 64, stride))
    assert result.tokens == len(ids) - 1
    assert result.nll_sum == pytest.approx(reference, rel=1e-4)
    assert result.perplexity == pytest.approx(math.exp(reference / result.tokens), rel=1e-4)
    n_bytes = len(TEXT.encode())
    assert result.bits_per_byte == pytest.approx(reference / n_bytes / math.log(2), rel=1e-4)
    assert result.word_perplexity == pytest.approx(math.exp(reference / len(TEXT.split())), rel=1e-4)


def test_bf16_close_and_progress_reported(tiny_models):
    from workbench.core.evaluation.perplexity import perplexity

    loaded = tiny_models["gpt2"]
    seen = []
    fp32 = perplexity(loaded, TEXT, on_progress=lambda done, total: seen.append((done, total)))
    bf16 = perplexity(loaded, TEXT, dtype="bf16")
    assert bf16.perplexity == pytest.approx(fp32.perplexity, rel=0.05)
    assert seen[0] == (0, fp32.tokens) and seen[-1] == (fp32.tokens, fp32.tokens)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_bad_settings_are_user_errors(tiny_models):
    from workbench.core.errors import WorkbenchError
    from workbench.core.evaluation.perplexity import EvaluationCancelled, perplexity

    loaded = tiny_models["gpt2"]
    with pytest.raises(WorkbenchError, match="exceeds the context"):
        perplexity(loaded, TEXT, context=65)
    with pytest.raises(WorkbenchError, match="stride"):
        perplexity(loaded, TEXT, stride=65)
    with pytest.raises(WorkbenchError, match="empty"):
        perplexity(loaded, "")
    with pytest.raises(EvaluationCancelled):
        perplexity(loaded, TEXT, batch_size=1, should_stop=lambda: True)


@pytest.mark.skipif(importlib.util.find_spec("lm_eval") is None, reason="lm-evaluation-harness not installed")
def test_agrees_with_lm_evaluation_harness(tiny_models, tmp_path):
    """lm-eval's own loglikelihood_rolling on the same local model folder, offline, with a custom task."""
    import subprocess
    import sys

    from workbench.core.evaluation.perplexity import perplexity

    loaded = tiny_models["gpt2"]
    folder = loaded.model.name_or_path
    docs = [TEXT, "A short one.", TEXT[:300] * 3]
    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "wb_rolling.yaml").write_text(
        "task: wb_rolling\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
        "test_split: test\n"
        "output_type: loglikelihood_rolling\n"
        "doc_to_text: ''\n"
        "doc_to_target: '{{text}}'\n"
        "metric_list:\n  - metric: word_perplexity\n"
    )
    out = tmp_path / "out"
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "HF_HOME": str(tmp_path / "hf"), "PATH": "/usr/bin:/bin"}
    run = subprocess.run(
        [sys.executable, "-m", "lm_eval", "--model", "hf",
         "--model_args", f"pretrained={folder},dtype=float32", "--device", "cpu", "--tasks", "wb_rolling",
         "--include_path", str(tasks), "--batch_size", "2", "--log_samples", "--output_path", str(out)],
        capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    samples = list(out.rglob("samples_wb_rolling_*.jsonl"))
    assert samples, run.stderr[-2000:]
    rows = [json.loads(line) for line in samples[0].read_text().splitlines() if line.strip()]
    by_doc = {row["doc"]["text"]: row for row in rows}
    for doc in docs:
        row = by_doc[doc]
        resp = row["resps"][0][0] if isinstance(row["resps"][0], list) else row["resps"][0]
        theirs = -float(resp[0] if isinstance(resp, (list, tuple)) else resp)
        ours = perplexity(loaded, doc, batch_size=3).nll_sum
        assert ours == pytest.approx(theirs, rel=1e-4), doc[:40]


def test_chunk_nll_equals_cross_entropy():
    import torch

    from workbench.core.evaluation.perplexity import _chunk_nll

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(37, 1000, generator=gen) * 5
    targets = torch.randint(0, 1000, (37,), generator=gen)
    expected = torch.nn.functional.cross_entropy(logits.double(), targets, reduction="sum")
    got = _chunk_nll(logits, targets)
    assert got.dtype == torch.float64
    assert float(got) == pytest.approx(float(expected), rel=1e-6)


def test_onednn_mode_matches_torch_matmuls():
    import torch

    from workbench.core.evaluation.perplexity import _onednn_mode, onednn_enabled

    if not onednn_enabled():
        pytest.skip("oneDNN linear not available in this torch build")
    gen = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(2, 7, 16, generator=gen), torch.randn(24, 16, generator=gen), torch.randn(24, generator=gen)
    conv_w = torch.randn(16, 24, generator=gen)  # transformers' Conv1D layout (in, out)
    x2 = x.reshape(-1, 16)
    expected = (torch.nn.functional.linear(x, w, b), torch.nn.functional.linear(x, w), torch.addmm(b, x2, conv_w),
                torch.addmm(b, x2, conv_w, beta=0.5), torch.nn.functional.linear(x.double(), w.double()))
    with torch.inference_mode(), _onednn_mode():
        got = (torch.nn.functional.linear(x, w, b), torch.nn.functional.linear(x, w), torch.addmm(b, x2, conv_w),
               torch.addmm(b, x2, conv_w, beta=0.5), torch.nn.functional.linear(x.double(), w.double()))
    for g, e in zip(got, expected):
        assert g.shape == e.shape and g.dtype == e.dtype
        assert torch.allclose(g, e, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", ["gpt2", "gpt-neo"])
def test_onednn_path_equals_torch_path(tiny_models, arch, monkeypatch):
    """The oneDNN fp32 route (default on CPU) and torch's own matmuls (WORKBENCH_ONEDNN=0) agree to ~1e-6."""
    from workbench.core.evaluation import perplexity as ppl

    loaded = tiny_models[arch]
    fast = ppl.perplexity(loaded, TEXT, context=32, stride=8, batch_size=3, logits_chunk=70)
    monkeypatch.setenv("WORKBENCH_ONEDNN", "0")
    assert not ppl.onednn_enabled()
    plain = ppl.perplexity(loaded, TEXT, context=32, stride=8, batch_size=3, logits_chunk=70)
    assert fast.tokens == plain.tokens
    assert fast.nll_sum == pytest.approx(plain.nll_sum, rel=1e-6)
