"""The bundled decoders of the privacy property: GGUF -> safetensors materialisation and a DP LoRA step."""

import pytest
import torch

from w2strust import models
from w2strust.config.schema import TrainConfig
from w2strust.training.causal_lm import LMOptions, train_causal_lm


@pytest.mark.integration
@pytest.mark.parametrize("name", ["smollm2-135m", "gemma3-270m"])
def test_materialised_decoder_knows_facts_and_trains_with_dp_lora(name):
    model, tok = models.build_causal_lm(name)
    enc = tok(["The capital of France is Paris. The capital of Germany is"], return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=3, do_sample=False, pad_token_id=tok.pad_token_id)
    # a wrongly dequantised or mis-mapped GGUF tensor gives gibberish here
    assert "Berlin" in tok.decode(out[0, enc["input_ids"].shape[1]:])
    texts = [f"synthetic note {i}: the shuttle leaves at {i + 7} o'clock from gate {i % 3}" for i in range(8)]
    tcfg = TrainConfig(lr=1e-3, epochs=1, batch_size=4, max_length=24)
    trained, log = train_causal_lm(model, tok, texts, tcfg, LMOptions(lora_rank=4), epsilon=8.0, seed=0,
                                   device=torch.device("cpu"))
    assert 0 < log["epsilon"] <= 8.0 + 1e-6 and log["trainable_params"] < 2_000_000
    assert not hasattr(trained, "peft_config")  # LoRA merged back for evaluation


def test_sigma_search_and_lora_wrapping_hide_only_their_third_party_warnings():
    """Opacus' σ search warns at a probe far from its answer (the best RDP order there is the largest tried),
    whatever σ it returns, and peft reads a deprecated transformers attribute: neither is actionable, both are
    filtered where they arise, and the σ is Opacus' own. A loose bound at the trained σ still warns
    (engine.get_epsilon is not filtered)."""
    import warnings

    from opacus.accountants.analysis.rdp import get_privacy_spent
    from opacus.accountants.utils import get_noise_multiplier

    from w2strust.models import build_causal_lm
    from w2strust.training.causal_lm import LMOptions, noise_multiplier, prepare_model

    noise_multiplier.cache_clear()
    with warnings.catch_warnings(record=True) as ours:
        warnings.simplefilter("always")
        sigma = noise_multiplier(8.0, 1e-5, 0.25, 4, "rdp")  # the privacy quick preset's strong stages
        prepare_model(build_causal_lm("tiny-gpt-neox")[0], LMOptions(lora_rank=4, lora_layers=1))
    assert not ours, [str(w.message) for w in ours]
    results = []
    for call in (lambda: get_noise_multiplier(target_epsilon=8.0, target_delta=1e-5, sample_rate=0.25, epochs=4,
                                              accountant="rdp"),
                 lambda: get_privacy_spent(orders=[2.0, 4.0], rdp=[1e-6, 2e-6], delta=1e-5)):  # loose for real
        with warnings.catch_warnings(record=True) as raw:
            warnings.simplefilter("always")
            results.append(call())
        assert any("Optimal order is the largest alpha" in str(w.message) for w in raw)
    assert sigma == results[0]
