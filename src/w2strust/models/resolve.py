"""A model name -> its spec, its folder or Hub id (materialising a bundled model once), checks before training
(architecture, whole weight files), and what it contributes to a stage key and an audit record."""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

from ..errors import W2SError
from ..io import atomic_write_text
from .bundled import PINNED_VERSIONS
from .specs import MODELS, ModelSpec, cache_root

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


def _cached_config(hub_id: str) -> Path | None:
    """The config.json of a Hub model's snapshot in the local HF cache (default branch), or None (no network)."""
    from huggingface_hub import try_to_load_from_cache

    path = try_to_load_from_cache(hub_id, "config.json")
    return Path(path) if isinstance(path, str) else None


def _cached_hub_arch(hub_id: str) -> str:
    """The architecture of a Hub model whose config is in the local HF cache; "" if it is not (no network here)."""
    path = _cached_config(hub_id)
    return arch_of(_read_config(str(path.parent), hub_id).model_type) if path else ""


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


def folder_sha256(path: str | Path, skip: tuple[str, ...] = ()) -> str:
    """SHA-256 over a folder's files (relative names and contents; hidden files and the names in ``skip`` left out),
    cached per process while no file changes: a moved folder keeps its hash, an edited weight file does not."""
    root = Path(path)
    files = sorted(p for p in root.rglob("*")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
                   and p.relative_to(root).as_posix() not in skip)
    # inode and ctime too: `cp -p`, `rsync -a` and `tar x` replace a file keeping its size and mtime
    stamp = (str(root.resolve()), tuple((p.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns, st.st_ino,
                                         st.st_ctime_ns) for p in files for st in (p.stat(),)))
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
    """What a model contributes to a stage key: its registry name, a local folder's content hash, or for a Hub model
    its name and the commit it trains from (``pythia-70m@<sha>``): a model updated on the Hub gets new keys instead
    of reusing stages trained on its old weights. The stage then loads that commit (``planned_revision``)."""
    spec = get_spec(name)
    if spec.source == "local":
        return f"local-sha256:{folder_sha256(spec.path)}"
    if spec.source == "bundled":
        versions = bundled_versions(name)
        if versions == {p: PINNED_VERSIONS.get(p) for p in spec.packages}:
            return spec.name
        blob = json.dumps(versions, sort_keys=True).encode()
        return f"{spec.name}@packages-{hashlib.sha256(blob).hexdigest()[:12]}"
    rev = hub_revision(spec.hub_id) if spec.source == "hub" else None
    return f"{spec.name}@{rev}" if rev else spec.name


def bundled_versions(name: str) -> dict[str, str] | None:
    """The package versions a bundled model's weights come from: the installed packages' (``model_path`` rebuilds a
    folder materialised from other versions), else, on a machine given the materialised folder without its packages
    (scripts/offline-bundle.sh), the versions that folder records; None where neither is known."""
    spec = get_spec(name)
    installed = _installed_versions(spec)
    if installed is not None:
        return installed
    folder = cache_root() / "models"
    return _recorded_versions(folder / name) or (_recorded_versions(folder / spec.base) if spec.base else None)


def _installed_versions(spec: ModelSpec) -> dict[str, str] | None:
    if not all(_installed(p) for p in spec.packages):
        return None
    return {p: md.version(p) for p in spec.packages}


def _from_other_versions(spec: ModelSpec, folder: Path) -> bool:
    """The materialised ``folder`` records other package versions than the installed ones (an upgrade, or a folder
    written before folders recorded them): its weights are not the installed packages'. False without the packages."""
    installed = _installed_versions(spec)
    return installed is not None and _recorded_versions(folder) != installed


SHA_FILE = ".w2strust-sha256"  # a materialised folder's content hash, written when it was made


def _made_sha(folder: Path) -> str:
    """The content hash of what was materialised: every file but the record of where it came from (w2strust.json,
    which `_from_other_versions` reads, and which a machine without the packages may be given apart)."""
    return folder_sha256(folder, skip=("w2strust.json",))


def _edited(spec: ModelSpec, folder: Path) -> bool:
    """Were the weights of a materialised bundled ``folder`` changed since it was made? Its stage keys name the model
    (``stage_id``), not its bytes, so edited weights would be trained under the keys of the real ones. True where
    the packages can rebuild it; without them, an error. A folder made before folders recorded their hash records
    it now (hashed once per process while no file changes)."""
    if not (folder / "config.json").exists():
        return False
    now = _made_sha(folder)
    try:
        made = (folder / SHA_FILE).read_text().strip()
    except OSError:
        atomic_write_text(folder / SHA_FILE, now)  # workers starting together write the same text
        return False
    if made == now:
        return False
    if _installed_versions(spec) is None:
        raise W2SError(f"the materialised model folder {folder} was changed since it was made (its files no longer "
                       f"hash to {made[:12]}): delete it and install the packages that rebuild it "
                       f"(bash scripts/setup.sh), or copy it again from the machine that made it")
    return True


def _recorded_versions(folder: Path) -> dict[str, str] | None:
    try:
        return json.loads((folder / "w2strust.json").read_text())["packages"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def planned_revision(model_id: str) -> str | None:
    """The Hub commit in a stage key's model entry (``stage_id``), or None."""
    return model_id.rsplit("@", 1)[1] if "@" in model_id and not model_id.startswith("local-sha256:") else None


_HUB_ANSWERS: dict[str, str | None] = {}


def hub_revision(hub_id: str) -> str | None:
    """The commit a Hub model is trained from: the Hub's current one where it can be asked (from_pretrained would
    fetch that one; asked once per process), else the locally cached snapshot's; None where neither is known
    (offline and not cached: nothing can train, and model_path says how to get it)."""
    if not _offline():
        if hub_id not in _HUB_ANSWERS:
            from huggingface_hub import HfApi

            try:
                _HUB_ANSWERS[hub_id] = HfApi().model_info(hub_id, timeout=10).sha
            except Exception:  # unreachable, gated, unknown: the cached snapshot, or model_path's error, decides
                _HUB_ANSWERS[hub_id] = None
        if _HUB_ANSWERS[hub_id]:
            return _HUB_ANSWERS[hub_id]
    return _cached_revision(hub_id)


def _cached_revision(hub_id: str) -> str | None:
    """The commit of the snapshot the local HF cache serves for the default branch (.../snapshots/<commit>/)."""
    path = _cached_config(hub_id)
    return path.parent.name if path else None


def provenance(name: str, revision: str | None = None) -> dict:
    """Where a stage's model came from, for its audit record; ``revision``: the Hub commit the stage loaded."""
    spec = get_spec(name)
    out = {"name": name, "source": spec.source}
    if spec.source == "local":
        out.update(path=spec.path, sha256=folder_sha256(spec.path))
    elif spec.source == "hub":
        out.update(hub_id=spec.hub_id, revision=revision or _cached_revision(spec.hub_id) or "unknown")
    elif spec.source == "bundled":
        out.update(packages=bundled_versions(name) or "unknown")
    return out


# ---------------------------------------------------------------- locating weights
def _offline() -> bool:
    """HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE as huggingface_hub reads them, also when set after its import."""
    from huggingface_hub import constants

    flags = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))
    return constants.is_offline_mode() or any(f.lower() in {"1", "true", "yes", "on"} for f in flags if f)


def _hub_cached(hub_id: str) -> bool:
    return _cached_config(hub_id) is not None


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
    folder = cache_root() / "models" / name
    if (folder / "config.json").exists():
        if _from_other_versions(spec, folder):
            return "installed (materialised again on first use: the folder is from other package versions)"
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
        # rebuilt from the installed packages where it was made from others (or edited since); without the packages,
        # used as it is, unless edited
        if _from_other_versions(spec, dest) or not (dest / "config.json").exists() or _edited(spec, dest):
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=dest.parent))
            try:
                if spec.base:  # a model derived from another bundled one (minilm-l1 from minilm-l3): start from it
                    shutil.copytree(model_path(spec.base), tmp, dirs_exist_ok=True)
                spec.materialise(tmp)  # type: ignore[misc]
                (tmp / "w2strust.json").write_text(json.dumps({"name": name, "licence": spec.licence,
                                                               "packages": bundled_versions(name)}))
                (tmp / SHA_FILE).write_text(_made_sha(tmp))  # hidden: not part of the hash it records
                if dest.exists():
                    shutil.rmtree(dest)
                os.replace(tmp, dest)  # atomic: a killed materialisation leaves no half folder
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return str(dest)
    raise W2SError(f"model '{name}' is built from a config; it has no path")

