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
