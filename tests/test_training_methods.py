"""Training objectives, methods and the fast loss (tiny real GPT-2 and GPT-Neo models)."""

from __future__ import annotations

import json

import pytest

from workbench.core.errors import WorkbenchError
from test_training import cfg, run, synthetic_text


@pytest.fixture
def two_archs(ctx, tmp_path):
    from workbench.core import data
    from workbench.core.models import ModelShape, create_model

    create_model(ctx.ws, ctx.registry, "t1", "gpt-neo", ModelShape(1, 32, 2, 64))
    create_model(ctx.ws, ctx.registry, "g1", "gpt2", ModelShape(1, 32, 2, 64))
    path = tmp_path / "text.txt"
    path.write_text(synthetic_text())
    data.add_dataset(ctx, "words", path)
    records = [{"instruction": f"Repeat the word number {i}.", "response": f"word {i} word {i}."} for i in range(40)]
    jsonl = tmp_path / "inst.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in records))
    data.add_dataset(ctx, "inst", jsonl, kind="instructions")
    return ctx


def load(ctx, name):
    import torch
    from transformers import AutoModelForCausalLM

    record = ctx.registry.get_model(name)
    return AutoModelForCausalLM.from_pretrained(record.path, use_safetensors=True, dtype=torch.float32)


# ---------------------------------------------------------------- fast loss


@pytest.mark.parametrize("arch_model", ["t1", "g1"])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("bf16", [False, True])
def test_fast_loss_matches_the_models_own_loss_and_gradients(two_archs, arch_model, padded, bf16):
    import torch

    from workbench.core.training.objectives import IGNORE, make_loss_module

    torch.manual_seed(0)
    model = load(two_archs, arch_model)
    model.config.use_cache = False
    ids = torch.randint(0, 50257, (3, 20))
    labels, mask = ids.clone(), None
    if padded:  # instruction-style: prompt and padding ignored, right padding masked
        mask = torch.ones_like(ids)
        mask[1, 15:] = 0
        mask[2, 10:] = 0
        labels[:, :6] = IGNORE
        labels[mask == 0] = IGNORE
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)

    with autocast:
        reference = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    reference.backward()
    want = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)

    module = make_loss_module(model, "causal", fast=True, chunk=16)  # several chunks
    with autocast:
        total, count = module(ids, labels, mask)
    (total / count).backward()
    got = {n: p.grad.clone() for n, p in model.named_parameters()}

    tol = 2e-2 if bf16 else 1e-5
    assert float((total / count).detach()) == pytest.approx(float(reference), rel=tol / 10, abs=tol / 10)
    assert int(count) == int((labels[:, 1:] != IGNORE).sum())
    for name, grad in want.items():
        scale = float(grad.abs().max()) + 1e-12
        assert float((got[name] - grad).abs().max()) / scale < tol, name


def test_fast_loss_function_agrees_with_reference_cross_entropy():
    import torch

    from workbench.core.training.fast_loss import linear_cross_entropy, reference_cross_entropy

    torch.manual_seed(1)
    h1 = torch.randn(37, 16, dtype=torch.float64, requires_grad=True)
    w1 = torch.randn(101, 16, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 101, (37,))
    h2, w2 = h1.detach().clone().requires_grad_(), w1.detach().clone().requires_grad_()
    a = linear_cross_entropy(h1, w1, y, chunk=8)
    b = reference_cross_entropy(h2, w2, y)
    (a * 0.5).backward()
    (b * 0.5).backward()
    assert torch.allclose(a, b.to(a.dtype))
    assert torch.allclose(h1.grad, h2.grad) and torch.allclose(w1.grad, w2.grad)
    assert torch.autograd.gradcheck(lambda h, w: linear_cross_entropy(h, w, y, chunk=5),
                                    (h1.detach()[:6].clone().requires_grad_(), w1.detach().clone().requires_grad_()),
                                    fast_mode=True)


def test_training_with_and_without_fast_loss_agree(two_archs, tmp_path):
    _, fast = run(two_archs, cfg(out="f", eval_every=0, steps=3), tmp_path / "f", register=False)
    _, slow = run(two_archs, cfg(out="s", eval_every=0, steps=3), tmp_path / "s", register=False, fast_loss=False)
    for a, b in zip(fast, slow):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)


# ---------------------------------------------------------------- objectives


def test_instruct_on_a_base_model_trains_and_ships_the_default_chat_template(two_archs, tmp_path):
    from pathlib import Path

    from workbench.core.models import load_tokenizer
    from workbench.core.templates import DEFAULT_TEMPLATE, instruct_format, template_source
    from workbench.core.training.objectives import IGNORE, InstructionBatches

    tok = load_tokenizer(two_archs.registry.get_model("t1").path)
    fmt = instruct_format(tok, two_archs.registry.get_model("t1").path)
    assert fmt.template == DEFAULT_TEMPLATE and fmt.end_ids == (tok.eos_token_id,)
    record = {"messages": [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "hi there"}]}
    batches = InstructionBatches(tok, [record, record], fmt, 64, "sequential", 0)
    batch = batches.batch(0, 2)
    labels, mask = batch["labels"][0], batch["attention_mask"][0]
    trained = labels[labels != IGNORE].tolist()
    assert tok.decode(trained) == "hi there<|endoftext|>"  # the reply and its end-of-turn token only
    assert (batch["labels"][batch["attention_mask"] == 0] == IGNORE).all()

    result, rows = run(two_archs, cfg(dataset="inst", objective="instruct", out="t1-inst", steps=3, seq=48),
                       tmp_path / "run")
    assert [r["split"] for r in rows][-1] == "val"
    folder = Path(result.model.path)
    assert template_source(folder) == "chat_template.jinja"
    assert (folder / "chat_template.jinja").read_text() == DEFAULT_TEMPLATE
    assert load_tokenizer(folder).chat_template == DEFAULT_TEMPLATE


def test_causal_sequential_sampling_walks_the_split(two_archs):
    import torch

    from workbench.core.training.objectives import CausalBlocks

    ids = torch.arange(100)
    blocks = CausalBlocks(ids, 10, "sequential", 0)
    first, second = blocks.batch(0, 4)["input_ids"], blocks.batch(1, 4)["input_ids"]
    assert first[0].tolist() == list(range(10)) and second[0].tolist() == list(range(40, 50))
    assert blocks.batch(2, 4)["input_ids"][2].tolist() == list(range(0, 10))  # next epoch wraps
    random_blocks = CausalBlocks(ids, 10, "random", 3)
    assert torch.equal(random_blocks.batch(5, 4)["input_ids"], CausalBlocks(ids, 10, "random", 3).batch(5, 4)["input_ids"])
    assert not torch.equal(random_blocks.batch(5, 4)["input_ids"], random_blocks.batch(6, 4)["input_ids"])


def test_letter_tokens_and_target():
    from workbench.core.models import STARTER_MODEL  # noqa: F401
    from workbench.core.training.objectives import letter_target, letter_token_ids

    import tempfile
    from pathlib import Path

    from workbench.core.models import load_tokenizer, write_gpt2_tokenizer_files

    folder = Path(tempfile.mkdtemp())
    write_gpt2_tokenizer_files(folder)
    tok = load_tokenizer(folder)
    ids = letter_token_ids(tok, "x")
    assert len(ids) == 985  # DESIGN.md: 985 of 50,257 GPT-2 tokens contain "x"
    assert all("x" in tok.decode([i]).lower() for i in ids[:50])
    assert letter_token_ids(tok, "X") == ids
    q = letter_target(tok, "x", 50257)
    assert abs(float(q.sum()) - 1.0) < 1e-5 and int((q > 0).sum()) == 985


def test_kl_letter_reproduces_the_x_experiment(ctx, tmp_path):
    """A small GPT that writes ~0 % x-tokens in 200 greedy tokens writes > 90 % after KL training."""
    import torch

    from workbench.core.models import ModelShape, create_model, load_model_folder
    from workbench.core.training.objectives import letter_token_ids

    create_model(ctx.ws, ctx.registry, "k", "gpt-neo", ModelShape(1, 64, 2, 256))

    def x_ratio(name: str) -> float:
        model, tok, _ = load_model_folder(ctx.registry.get_model(name).path, "cpu", "fp32")
        prompt = tok("The", return_tensors="pt").input_ids
        with torch.no_grad():
            out = model.generate(prompt, max_new_tokens=200, min_new_tokens=200, do_sample=False,
                                 pad_token_id=tok.eos_token_id)[0, prompt.shape[1]:]
        xs = set(letter_token_ids(tok, "x"))
        return sum(int(i) in xs for i in out) / len(out)

    assert x_ratio("k") < 0.05
    # The original experiment's variant: KL at the final position only (the every-position default is
    # tested in test_kl_positions.py).
    config = cfg(base_model="k", dataset=None, out="k-x", objective="kl-letter", steps=40, lr=5e-3, seq=32,
                 batch=8, warmup=0, eval_every=20, precision="auto", kl_positions="final")
    result, rows = run(ctx, config, tmp_path / "run")
    losses = [r["loss"] for r in rows if r["split"] == "train"]
    assert losses[-1] < 0.1 * losses[0]
    assert result.model.meta["letter"] == "x"
    assert x_ratio("k-x") > 0.9


# ---------------------------------------------------------------- methods


@pytest.mark.parametrize("name, arch, targets", [("t1", "gpt-neo", ["q_proj", "v_proj"]),
                                                  ("g1", "gpt2", ["c_attn"])])
def test_lora_targets_counts_and_adapter_registration(two_archs, tmp_path, capfd, name, arch, targets):
    from workbench.core.training.methods import apply_method, default_lora_targets

    model_type = {"gpt-neo": "gpt_neo", "gpt2": "gpt2"}[arch]
    assert default_lora_targets(model_type) == targets  # peft's own table
    assert default_lora_targets("gpt_neox") == ["query_key_value"]
    assert default_lora_targets("no-such-model-type") == "all-linear"
    model, info = apply_method(load(two_archs, name), cfg(base_model=name, method="lora", lora_r=4), arch)
    lora_names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert lora_names and all("lora_" in n for n in lora_names)
    assert {n.split(".lora_")[0].split(".")[-1] for n in lora_names} == set(targets)
    per_layer = {"gpt-neo": 2 * 4 * (32 + 32), "gpt2": 4 * (32 + 96)}[arch]  # r * (in + out) per target
    assert info.trainable == per_layer and info.total > 1_000_000

    result, _ = run(two_archs, cfg(base_model=name, method="lora", lora_r=4, out=f"{name}-lora", steps=2),
                    tmp_path / "run")
    err = capfd.readouterr().err
    assert "LoRA on " + ", ".join(targets) in err and f"{per_layer:,}" in err
    record = result.model
    assert record.adapter and record.parent == name and record.arch == arch
    assert record.params == per_layer  # only the adapter weights are stored
    from workbench.core.models import ModelCache

    loaded = ModelCache().get(two_archs.registry, record.name, device="cpu")  # base + adapter
    assert loaded.model is not None


def test_lora_merge_registers_a_full_model_equal_to_base_plus_adapter(two_archs, tmp_path):
    import torch

    from workbench.core.models import load_model_folder

    adapter, _ = run(two_archs, cfg(method="lora", out="ad", steps=3, lr=1e-2, lora_dropout=0.0), tmp_path / "a")
    merged, _ = run(two_archs, cfg(method="lora", out="mg", steps=3, lr=1e-2, lora_dropout=0.0, merge=True),
                    tmp_path / "m")
    assert not merged.model.adapter and merged.model.parent == "t1"
    assert merged.model.params == two_archs.registry.get_model("t1").params
    base_path = two_archs.registry.get_model("t1").path
    a, _, _ = load_model_folder(adapter.model.path, "cpu", "fp32", adapter_base=base_path)
    m, _, _ = load_model_folder(merged.model.path, "cpu", "fp32")
    ids = torch.randint(0, 50257, (2, 12))
    with torch.no_grad():
        assert torch.allclose(a(ids).logits, m(ids).logits, atol=1e-4)
        base, _, _ = load_model_folder(base_path, "cpu", "fp32")
        assert not torch.allclose(base(ids).logits, m(ids).logits, atol=1e-4)  # training changed it


def test_lora_on_an_adapter_is_refused(two_archs, tmp_path):
    run(two_archs, cfg(method="lora", out="ad", steps=1, eval_every=0), tmp_path / "a")
    with pytest.raises(WorkbenchError, match="adapter"):
        run(two_archs, cfg(base_model="ad", method="lora", out="ad2"), tmp_path / "b")


@pytest.mark.parametrize("name, arch", [("t1", "gpt-neo"), ("g1", "gpt2")])
def test_freeze_attention_freezes_every_attention_weight(two_archs, tmp_path, name, arch):
    import torch

    from workbench.core.training.methods import apply_method

    model, info = apply_method(load(two_archs, name), cfg(method="freeze-attention"), arch)
    for param_name, p in model.named_parameters():
        assert p.requires_grad == (".attn." not in param_name), param_name
    assert any(".attn." in n for n in info.frozen) and 0 < info.trainable < info.total

    before = {n: p.clone() for n, p in load(two_archs, name).named_parameters()}
    result, _ = run(two_archs, cfg(base_model=name, method="freeze-attention", out=f"{name}-fa", steps=2, lr=1e-2),
                    tmp_path / "run")
    after = dict(load(two_archs, result.model.name).named_parameters())
    for n, p in before.items():
        same = torch.equal(p, after[n])
        assert same == (".attn." in n), n


def test_freeze_patterns(two_archs):
    from workbench.core.training.methods import apply_method

    model, info = apply_method(load(two_archs, "t1"), cfg(freeze=["transformer.wpe.*", "*.mlp.c_fc.*"]), "gpt-neo")
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"transformer.wpe.weight", "transformer.h.0.mlp.c_fc.weight", "transformer.h.0.mlp.c_fc.bias"}
    with pytest.raises(WorkbenchError, match="matches no parameter"):
        apply_method(load(two_archs, "t1"), cfg(freeze=["*.nothing.*"]), "gpt-neo")
    with pytest.raises(WorkbenchError, match="nothing left to train"):
        apply_method(load(two_archs, "t1"), cfg(freeze=["*"]), "gpt-neo")


def test_grad_accumulation_equals_a_bigger_batch(two_archs, tmp_path):
    """batch 2 x accum 2 takes the same step as batch 4 (same blocks, one normalisation)."""
    from workbench.core.training.objectives import CausalBlocks
    import torch

    blocks = CausalBlocks(torch.arange(1000), 8, "random", 0)
    big = blocks.batch(0, 4)["input_ids"]
    assert big.shape == (4, 8)
    _, a = run(two_archs, cfg(out="a", batch=4, grad_accum=1, steps=2, eval_every=0, sampling="sequential"),
               tmp_path / "a", register=False)
    _, b = run(two_archs, cfg(out="b", batch=2, grad_accum=2, steps=2, eval_every=0, sampling="sequential"),
               tmp_path / "b", register=False)
    for x, y in zip(a, b):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-5)
        assert x["grad_norm"] == pytest.approx(y["grad_norm"], rel=1e-4)


def test_kl_letter_on_dataset_blocks(two_archs, tmp_path):
    config = cfg(base_model="g1", dataset="words", out="g1-x", objective="kl-letter", steps=3, seq=16, eval_every=3)
    result, rows = run(two_archs, config, tmp_path / "run")
    assert [r["split"] for r in rows] == ["train", "train", "train", "val"]
    assert result.model.meta["objective"] == "kl-letter" and result.model.dataset == "words"
    assert rows[-2]["loss"] < rows[0]["loss"]


@pytest.mark.parametrize("layers", [1, 2])
def test_sdpa_attention_patch_matches_gpt_neo_eager(ctx, layers):
    """The GPU-only SDPA replacement of GPT-Neo attention computes the same outputs and gradients
    (checked here on CPU, including a local layer with a window shorter than the sequence)."""
    import torch
    from transformers import AutoModelForCausalLM, GPTNeoConfig

    from workbench.core.training.speed import accelerate_model

    config = GPTNeoConfig(num_layers=layers, hidden_size=32, num_heads=2, max_position_embeddings=64,
                          vocab_size=300, window_size=8, attention_types=[[["global", "local"], 1]] if layers == 2
                          else [[["global"], 1]])
    torch.manual_seed(0)
    eager = AutoModelForCausalLM.from_config(config)
    patched = AutoModelForCausalLM.from_config(config)
    patched.load_state_dict(eager.state_dict())
    assert accelerate_model(patched, attention=True)[0].startswith("sdpa attention")
    ids = torch.randint(0, 300, (2, 20))
    a = eager(input_ids=ids, labels=ids)
    b = patched(input_ids=ids, labels=ids)
    assert torch.allclose(a.logits, b.logits, atol=1e-4)
    a.loss.backward()
    b.loss.backward()
    for (name, p), q in zip(eager.named_parameters(), patched.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-5), name
