"""Training on every family: tiny random models of each (tests/tiny_families.py) with the SmolLM2 tokenizer."""

from __future__ import annotations

import pytest

from tiny_families import FAMILIES, HEAD_VARIANTS, VOCAB, family_tokenizer_dir, tiny_family  # noqa: F401


@pytest.mark.parametrize("family", FAMILIES)
def test_each_tiny_family_loads_with_the_chat_tokenizer(tiny_family, family):
    import json

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tiny_family(family)
    assert json.loads((folder / "config.json").read_text())["model_type"] == family
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    assert len(tokenizer) == VOCAB and tokenizer.chat_template
    model = AutoModelForCausalLM.from_pretrained(str(folder), use_safetensors=True)
    assert model.config.num_hidden_layers == 2 and model.get_output_embeddings().weight.shape[0] == VOCAB
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    assert logits.shape == (1, ids.shape[1], VOCAB) and torch.isfinite(logits).all()


# ---------------------------------------------------------------- LoRA / DoRA / freeze-attention per family


def _load(folder):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(folder), use_safetensors=True, dtype=torch.float32)
    model.config.use_cache = False
    return model


def _fixed_batch(seed: int = 0):
    import torch

    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 2000, (2, 24), generator=generator)  # a narrow id range: the loss can fall fast
    return ids


def _train_a_few_steps(model, steps: int = 5, lr: float = 2e-2) -> list[float]:
    """Steps of AdamW through the workbench's loss module on one fixed batch; the loss before each step."""
    import torch

    from workbench.core.training.objectives import make_loss_module

    module = make_loss_module(model, "causal", fast=True)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr)
    torch.manual_seed(0)  # dropout-free, but keep any random draw the same from run to run
    ids, losses = _fixed_batch(), []
    for _ in range(steps):
        total, count = module(ids, ids, None)
        loss = total / count
        losses.append(float(loss.detach()))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return losses


def _cfg(**changes):
    from workbench.core.training import TrainConfig

    values = dict(base_model="b", dataset="d", out="o", method="lora", lora_r=4, lora_dropout=0.0)
    values.update(changes)
    return TrainConfig(**values)


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_trains_every_family_and_changes_only_the_adapters(tiny_family, family):
    import torch

    from workbench.core.training.methods import apply_method, default_lora_targets

    model = _load(tiny_family(family))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    torch.manual_seed(0)  # the adapters' initialisation
    peft_model, info = apply_method(model, _cfg())
    expected = default_lora_targets(family)
    if expected == "all-linear":  # phi3: not in peft's table -> every linear layer but the head
        assert {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"} <= set(info.targets)
        assert "lm_head" not in info.targets
    else:
        assert info.targets == expected
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable} == set(info.targets)

    losses = _train_a_few_steps(peft_model)
    assert all(b < a for a, b in zip(losses, losses[1:])) and losses[-1] < losses[0] - 0.02, losses
    for name, param in peft_model.get_base_model().named_parameters():
        if "lora_" in name:
            continue
        original = name.replace(".base_layer", "")
        assert torch.equal(param, before[original]), f"{family}: base weight {original} changed"


@pytest.mark.parametrize("family", FAMILIES)
def test_freeze_attention_finds_each_familys_attention_by_module(tiny_family, family):
    import torch

    from workbench.core.training.methods import apply_method

    model = _load(tiny_family(family))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model, info = apply_method(model, _cfg(method="freeze-attention"))

    def is_attention(name: str) -> bool:  # the oracle: by the families' own module names
        return any(part in ("self_attn", "attn", "attention") for part in name.split("."))

    names = [n for n, _ in model.named_parameters()]
    assert any(is_attention(n) for n in names) and any(not is_attention(n) for n in names)
    for name, param in model.named_parameters():
        assert param.requires_grad == (not is_attention(name)), f"{family}: {name}"
    assert set(info.frozen) == {n for n in names if is_attention(n)}

    losses = _train_a_few_steps(model, steps=2, lr=1e-2)
    assert losses[-1] < losses[0]
    for name, param in model.named_parameters():
        assert torch.equal(param, before[name]) == is_attention(name), f"{family}: {name}"


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_dora_trains_magnitudes_and_directions(tiny_family, family):
    import torch

    from workbench.core.training.methods import apply_method

    torch.manual_seed(0)
    model, info = apply_method(_load(tiny_family(family)), _cfg(method="dora"))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("lora_magnitude_vector" in n for n in trainable) and any("lora_A" in n for n in trainable)
    assert info.describe().startswith("DoRA on ")
    losses = _train_a_few_steps(model)
    assert all(b < a for a, b in zip(losses, losses[1:])) and losses[-1] < losses[0] - 0.02, losses


def test_lora_targets_override_and_a_wrong_name_is_one_clear_error(tiny_family):
    from workbench.core.errors import WorkbenchError
    from workbench.core.training.methods import apply_method

    folder = tiny_family("llama")
    _, info = apply_method(_load(folder), _cfg(lora_targets=["gate_proj", "down_proj"]))
    assert info.targets == ["gate_proj", "down_proj"]
    model, info = apply_method(_load(folder), _cfg(lora_targets=["all-linear"]))
    assert set(info.targets) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert not any("lm_head.lora" in n for n, _ in model.named_parameters())
    with pytest.raises(WorkbenchError, match="no such module.*q_proj"):
        apply_method(_load(folder), _cfg(lora_targets=["c_attn"]))
    with pytest.raises(WorkbenchError, match="only applies to --method lora"):
        _cfg(method="full", lora_targets=["q_proj"]).validate_values()


# ---------------------------------------------------------------- the fast loss


@pytest.mark.parametrize("family", FAMILIES + HEAD_VARIANTS)
def test_fast_loss_equals_the_models_own_loss_for_every_family(tiny_family, family):
    """fp32, padded and prompt-masked labels: the chunked loss and its gradients equal the model's own."""
    import torch

    from workbench.core.training.objectives import IGNORE, make_loss_module

    model = _load(tiny_family(family))
    model.eval()  # no dropout: both computations must see the same network
    with torch.no_grad():  # logits of tens: soft-capping (Gemma 2: 30) and scaling change them a lot
        head = model.get_output_embeddings()
        head.weight.mul_(60.0)
    ids = _fixed_batch()
    mask = torch.ones_like(ids)
    mask[1, 17:] = 0
    labels = ids.clone()
    labels[:, :5] = IGNORE
    labels[mask == 0] = IGNORE

    reference = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    reference.backward()
    want = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)

    module = make_loss_module(model, "causal", fast=True, chunk=16, use_compile=False)  # several chunks
    assert module.fast, module.fallback_reason
    total, count = module(ids, labels, mask)
    loss = total / count
    loss.backward()
    assert float(loss.detach()) == pytest.approx(float(reference.detach()), rel=1e-4, abs=1e-4)
    assert float(reference) > 1.0  # a real loss, not a degenerate one
    for name, grad in want.items():
        got = dict(model.named_parameters())[name].grad
        scale = float(grad.abs().max()) + 1e-12
        assert float((got - grad).abs().max()) / scale < 1e-4, f"{family}: {name}"


def test_the_loss_kernels_handle_bias_scale_and_softcap():
    import torch

    from workbench.core.training.fast_loss import linear_cross_entropy, reference_cross_entropy

    torch.manual_seed(0)
    h = torch.randn(40, 16, dtype=torch.float64, requires_grad=True)
    w = (torch.randn(300, 16, dtype=torch.float64) * 3).requires_grad_()
    b = torch.randn(300, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 300, (40,))
    for kwargs in ({}, {"bias": b}, {"scale": 0.25}, {"softcap": 5.0}, {"bias": b, "scale": 2.0, "softcap": 7.0}):
        for compiled, dtype in ((False, torch.float64), (False, torch.float32), (True, torch.float32)):
            args = [t.detach().to(dtype).requires_grad_() for t in (h, w, b)]
            extra = dict(kwargs, bias=args[2]) if "bias" in kwargs else kwargs
            got = linear_cross_entropy(args[0], args[1], y, chunk=16, use_compile=compiled, **extra)
            got.backward()
            refs = [t.detach().clone().requires_grad_() for t in (h, w, b)]
            ref_extra = dict(kwargs, bias=refs[2]) if "bias" in kwargs else kwargs
            want = reference_cross_entropy(refs[0], refs[1], y, **ref_extra)
            want.backward()
            tol = 1e-9 if dtype == torch.float64 else 1e-4
            assert float(got) == pytest.approx(float(want), rel=tol), (kwargs, compiled, dtype)
            for mine, theirs in zip(args, refs):
                if theirs.grad is not None:
                    assert torch.allclose(mine.grad.double(), theirs.grad, rtol=tol, atol=tol * 10), kwargs


def test_an_adapted_head_falls_back_to_the_models_own_loss_with_a_reason(tiny_family):
    import torch

    from workbench.core.training.methods import apply_method
    from workbench.core.training.objectives import make_loss_module

    torch.manual_seed(0)
    model, _ = apply_method(_load(tiny_family("qwen2")), _cfg(lora_targets=["q_proj", "lm_head"]))
    module = make_loss_module(model, "causal", fast=True)
    assert not module.fast and "not a plain linear layer" in module.fallback_reason
    ids = _fixed_batch()
    total, count = module(ids, ids, None)
    with torch.no_grad():
        own = model(input_ids=ids, labels=ids).loss
    assert float(total / count) == pytest.approx(float(own), rel=1e-5)


# ---------------------------------------------------------------- dtype of the result


@pytest.fixture
def bf16_llama(ctx, tmp_path, family_tokenizer_dir):
    """A bf16 tiny Llama registered as `b16`, and a small text dataset `words`."""
    import torch

    from test_training import synthetic_text
    from tiny_families import build_tiny_model
    from workbench.core import data
    from workbench.core.models import add_model

    folder = build_tiny_model("llama", tmp_path / "b16-src", family_tokenizer_dir, dtype=torch.bfloat16)
    add_model(ctx.ws, ctx.registry, "b16", str(folder))
    text = tmp_path / "text.txt"
    text.write_text(synthetic_text(3000))
    data.add_dataset(ctx, "words", text)
    return ctx


def _stored_dtypes(folder) -> set[str]:
    from safetensors import safe_open

    dtypes = set()
    for path in folder.glob("*.safetensors"):
        with safe_open(str(path), "pt") as handle:
            dtypes |= {str(handle.get_tensor(k).dtype) for k in handle.keys()}
    return dtypes


def test_a_full_fine_tune_of_a_bf16_base_saves_bf16_and_keeps_fp32_masters(bf16_llama, tmp_path):
    import json
    from pathlib import Path

    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from test_training import cfg, run

    result, _ = run(bf16_llama, cfg(base_model="b16", out="b16-ft", steps=3, batch=2, seq=32, lr=1e-2,
                                    precision="bf16", eval_every=0), tmp_path / "run")
    folder = Path(result.model.path)
    assert _stored_dtypes(folder) == {"torch.bfloat16"}
    assert json.loads((folder / "config.json").read_text())["dtype"] == "bfloat16"
    base = Path(bf16_llama.registry.get_model("b16").path)
    assert (folder / "model.safetensors").stat().st_size == pytest.approx((base / "model.safetensors").stat().st_size,
                                                                          rel=0.01)
    tuned = AutoModelForCausalLM.from_pretrained(str(folder), use_safetensors=True)
    assert tuned.dtype == torch.bfloat16
    original = AutoModelForCausalLM.from_pretrained(str(base), use_safetensors=True)
    assert not torch.equal(tuned.model.layers[0].mlp.down_proj.weight, original.model.layers[0].mlp.down_proj.weight)

    masters = load_file(str(Path(result.last_checkpoint) / "master.safetensors"))  # resume continues from these
    assert {str(v.dtype) for v in masters.values()} == {"torch.float32"}
    saved = dict(tuned.named_parameters())
    for name, value in masters.items():
        assert torch.equal(value.to(torch.bfloat16), saved[name].detach()), name


def test_lora_on_a_bf16_base_keeps_frozen_weights_bf16_and_trains(bf16_llama, tmp_path, capfd):
    from test_training import cfg, run, train_losses

    result, rows = run(bf16_llama, cfg(base_model="b16", out="b16-lora", method="lora", steps=4, batch=2, seq=32,
                                       lr=2e-2, precision="bf16", eval_every=0, lora_dropout=0.0), tmp_path / "run")
    err = capfd.readouterr().err
    assert "LoRA on q_proj, v_proj" in err and "frozen weights kept in bfloat16" in err
    losses = [loss for _, loss in train_losses(rows)]
    assert losses[-1] < losses[0]
    assert result.model.adapter and _stored_dtypes(__import__("pathlib").Path(result.model.path)) == {"torch.float32"}
