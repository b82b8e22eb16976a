"""The kl-letter loss at the final position or at every position: chunked equals full logits; training."""

from __future__ import annotations

import pytest
import torch

from workbench.core.training.kl_loss import kl_loss, reference_kl_loss
from tiny_families import family_tokenizer_dir, tiny_family  # noqa: F401  (fixtures)


def _case(bias: bool, seed: int = 0):
    torch.manual_seed(seed)
    hidden = torch.randn(3, 7, 16, dtype=torch.float64, requires_grad=True)
    head = torch.nn.Linear(16, 50, bias=bias).double()
    q = torch.zeros(50, dtype=torch.float64)
    q[[1, 5, 9, 33]] = 0.25
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[1, 5:] = 0  # right padding: never scored, and the final position is the last real token
    return hidden, head, q, mask


@pytest.mark.parametrize("positions", ["all", "final"])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("with_mask", [False, True])
def test_chunked_kl_matches_full_logits_and_gradients(positions, bias, with_mask):
    hidden, head, q, mask = _case(bias)
    mask = mask if with_mask else None
    ours = kl_loss(hidden, head, q, mask, positions, chunk=4)
    grads = torch.autograd.grad(ours, [hidden, head.weight])
    ref = reference_kl_loss(head(hidden), q, mask, positions)
    ref_grads = torch.autograd.grad(ref, [hidden, head.weight])
    assert torch.allclose(ours.double(), ref, atol=1e-6)
    for a, b in zip(grads, ref_grads):
        assert torch.allclose(a, b, atol=1e-6)


def test_kl_positions_differ_and_final_scores_one_position_per_sequence():
    hidden, head, q, mask = _case(False)
    final = reference_kl_loss(head(hidden), q, mask, "final")
    log_p = torch.log_softmax(head(hidden), -1).detach()
    by_hand = sum(float(torch.nn.functional.kl_div(log_p[b, last], q, reduction="sum"))
                  for b, last in enumerate([6, 4, 6]))
    assert float(final) == pytest.approx(by_hand)
    assert float(kl_loss(hidden, head, q, mask, "all")) != pytest.approx(by_hand)


@pytest.mark.parametrize("positions", ["all", "final"])
def test_kl_letter_training_lowers_the_loss_in_both_variants(ctx, tmp_path, positions):
    from workbench.core.training.config import TrainConfig
    from workbench.core.training.loop import train

    config = TrainConfig(base_model="tiny-neo", dataset=None, out=f"x-{positions}", objective="kl-letter",
                         kl_positions=positions, steps=6, batch=2, seq=16, lr=3e-3, warmup=0, eval_every=0)
    result = train(ctx, config, tmp_path / positions, progress=False)
    rows = result.model.meta
    assert rows["settings"]["kl_positions"] == positions
    assert result.final_val_loss is not None and result.final_train_loss < 5.0


def test_kl_positions_is_checked():
    from workbench.core.errors import WorkbenchError
    from workbench.core.training.config import TrainConfig

    config = TrainConfig(base_model="tiny-neo", dataset=None, out="x", objective="kl-letter", kl_positions="some")
    with pytest.raises(WorkbenchError, match="kl-positions"):
        config.validate_values()


@pytest.mark.parametrize("positions", ["all", "final"])
def test_the_kl_sees_gemma2s_soft_capped_logits(tiny_family, positions):  # noqa: F811
    """Gemma 2 soft-caps its logits (cap * tanh(logits / cap)): the KL objective must score the model's
    real distribution, as a plain computation from its own forward's logits does."""
    from transformers import AutoModelForCausalLM

    from workbench.core.training.objectives import make_loss_module

    model = AutoModelForCausalLM.from_pretrained(tiny_family("gemma2"), dtype=torch.float32).eval()
    assert model.config.final_logit_softcapping
    model.config.final_logit_softcapping = 0.5  # a tiny random model's logits are far below Gemma's 30
    vocab = model.config.vocab_size
    q = torch.zeros(vocab)
    q[[3, 7, 11]] = 1 / 3
    ids = torch.randint(0, vocab, (2, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    module = make_loss_module(model, "kl-letter", target=q, kl_positions=positions, speedups=False)
    loss, _ = module(ids, attention_mask=mask)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
    assert float(loss) == pytest.approx(float(reference_kl_loss(logits, q, mask, positions)), rel=1e-4)
