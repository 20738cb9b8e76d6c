"""Models given as a local Hugging Face folder or a Hub id, next to registry names."""

import json
import shutil
import types

import pytest

from w2strust import models
from w2strust.config.build import build_config
from w2strust.errors import W2SError
from w2strust.experiment.plan import plan


@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory, save_tiny):
    return save_tiny("tiny-bert-wide", tmp_path_factory.mktemp("models") / "bert")


def test_local_folder_is_keyed_by_content_not_path(bert_folder, tmp_path):
    spec = models.get_spec(bert_folder)
    assert (spec.source, spec.arch) == ("local", "encoder")
    moved = shutil.copytree(bert_folder, tmp_path / "elsewhere")
    assert models.stage_id(str(moved)) == models.stage_id(bert_folder)
    assert models.stage_id(bert_folder).startswith("local-sha256:")
    keys = {d: [s.key for s in plan(build_config("fairness", "smoke", overrides={"strong_model": d}))[0]]
            for d in (bert_folder, str(moved))}
    assert keys[bert_folder] == keys[str(moved)]
    config = json.loads((moved / "config.json").read_text())
    config["layer_norm_eps"] = 1e-6  # a different model: a different key
    (moved / "config.json").write_text(json.dumps(config))
    assert models.stage_id(str(moved)) != models.stage_id(bert_folder)
    # the strong model's stages change, the weak model's do not
    changed = plan(build_config("fairness", "smoke", overrides={"strong_model": str(moved)}))[0]
    assert len({s.key for s in changed} & set(keys[bert_folder])) == 1 + 1  # the two weak stages


def test_relative_folder_is_stored_as_an_absolute_path(bert_folder, monkeypatch):
    from pathlib import Path

    monkeypatch.chdir(Path(bert_folder).parent)
    cfg = build_config("fairness", "smoke", overrides={"strong_model": "bert"})
    assert cfg.strong_model == str(Path(bert_folder).resolve())


def test_local_classifier_and_its_task_checks(bert_folder):
    model, tok = models.build_classifier(bert_folder, num_labels=2)
    assert type(model).__name__ == "BertForSequenceClassification" and model.config.pad_token_id == tok.pad_token_id
    with pytest.raises(W2SError, match="bert model \\(an encoder\\); the privacy property fine-tunes causal LMs. "
                                       "Supported model types .*gpt_neox"):
        models.build_causal_lm(bert_folder)
    with pytest.raises(W2SError, match="privacy fine-tunes causal LMs"):
        build_config("privacy", "smoke", overrides={"strong_model": bert_folder})


def test_unsupported_architecture_names_what_is_supported(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(W2SError, match="is a vit model, which has no sequence-classification head. Supported model "
                                       "types \\(transformers AutoModelForSequenceClassification\\): .*bert.*gpt_neox"):
        models.check(str(tmp_path), "classification")
    with pytest.raises(W2SError, match="has no config.json"):
        models.get_spec(str(tmp_path.parent))
    with pytest.raises(W2SError, match="model folder './no/such/folder' does not exist"):
        models.get_spec("./no/such/folder")


@pytest.mark.parametrize("hub_id", ["EleutherAI/pythia-70m", "sentence-transformers/all-MiniLM-L6-v2"])
def test_hub_id_offline_says_how_to_get_it(hub_id):
    spec = models.get_spec(hub_id)
    assert (spec.source, spec.hub_id) == ("hub", hub_id)
    if hub_id.startswith("sentence-transformers"):  # not in the registry: arch unknown until its config is fetched
        assert spec.arch == "" and models.stage_id(hub_id) == hub_id
    build_config("fairness", "smoke", overrides={"strong_model": hub_id})  # accepted; fetched before training
    with pytest.raises(W2SError, match=f"model {hub_id} is not in the local Hugging Face cache and HF_HUB_OFFLINE "
                                       f"is set. On a machine with internet run `hf download {hub_id}`"):
        models.check(hub_id, "classification")


def test_registered_hub_id_shares_the_registry_entry():
    assert models.get_spec("EleutherAI/pythia-14m") is models.get_spec("pythia-14m")
    assert models.stage_id("EleutherAI/pythia-14m") == "pythia-14m"


def test_unknown_name_lists_the_three_kinds():
    with pytest.raises(W2SError, match="unknown model 'bert'.*a Hub id such as EleutherAI/pythia-70m, or a local"):
        models.get_spec("bert")


def test_hub_provenance_names_the_cached_snapshot(monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(models.resolve, "_cached_hub_arch", lambda hub_id: "")
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache",
                        lambda repo, filename: f"/hf/hub/models--x/snapshots/0123abc/{filename}")
    assert models.provenance("sentence-transformers/all-MiniLM-L6-v2") == {
        "name": "sentence-transformers/all-MiniLM-L6-v2", "source": "hub",
        "hub_id": "sentence-transformers/all-MiniLM-L6-v2", "revision": "0123abc"}


def _fake_hub_cache(monkeypatch, commit: str) -> None:
    """A local HF cache whose snapshot of every repo is ``commit`` (no network, no files)."""
    import huggingface_hub

    monkeypatch.setattr(models.resolve, "_cached_hub_arch", lambda hub_id: "")
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache",
                        lambda repo, filename, **kw: f"/hf/hub/models--x/snapshots/{commit}/{filename}")


def test_a_hub_model_s_stage_key_names_its_commit(monkeypatch):
    # an updated Hub model must not reuse the stages trained on its old weights
    hub_id = "sentence-transformers/all-MiniLM-L6-v2"
    keys = {}
    for commit in ("0123abc", "4567def"):
        _fake_hub_cache(monkeypatch, commit)
        assert models.stage_id(hub_id) == f"{hub_id}@{commit}"
        assert models.planned_revision(models.stage_id(hub_id)) == commit
        cfg = build_config("fairness", "smoke", overrides={"strong_model": hub_id})
        keys[commit] = {s.key for s in plan(cfg)[0] if s.kind != "weak"}
    assert keys["0123abc"].isdisjoint(keys["4567def"])
    assert models.stage_id("pythia-14m") == "pythia-14m@4567def"  # a registry name keeps its name, plus the commit
    assert models.planned_revision("minilm-l6") is None
    assert models.planned_revision("local-sha256:ab12") is None


def test_a_hub_model_is_loaded_at_the_commit_its_key_names(monkeypatch):
    import transformers

    _fake_hub_cache(monkeypatch, "4567def")  # the cache serves a newer commit than the stage was planned for
    calls = []

    def fake(kind):
        def from_pretrained(source, **kw):
            calls.append((kind, source, kw.get("revision")))
            raise RuntimeError("stop")  # nothing to load offline: the call's arguments are what the test reads
        return from_pretrained

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", fake("tokenizer"))
    monkeypatch.setattr(transformers.AutoModelForSequenceClassification, "from_pretrained", fake("model"))
    monkeypatch.setattr(models.build, "check", lambda name, task: None)
    monkeypatch.setattr(models.build, "load_tokenizer", lambda name, revision=None: calls.append(
        ("tokenizer", name, revision)) or types.SimpleNamespace(pad_token_id=0))
    with pytest.raises(RuntimeError, match="stop"):
        models.build_classifier("pythia-70m", 2, revision="0123abc")
    assert calls == [("tokenizer", "pythia-70m", "0123abc"), ("model", "EleutherAI/pythia-70m", "0123abc")]
    assert models.provenance("pythia-70m", "0123abc")["revision"] == "0123abc"


def _cut(path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize("damage, needle", [
    (lambda d: _cut(d / "model.safetensors"), "weight file .*model.safetensors is damaged or truncated"),
    (lambda d: (d / "model.safetensors").write_bytes(b"\x00" * 4), "model.safetensors is damaged or truncated"),
    (lambda d: (d / "model.safetensors").unlink(), "holds no weights"),
    (lambda d: (d / "model.safetensors.index.json").write_text('{"weight_map": {"a": "model-00002.safetensors"}}'),
     "names shards missing .*model-00002.safetensors"),
], ids=["truncated", "garbage", "no-weights", "missing-shard"])
def test_damaged_weights_are_refused_before_training(bert_folder, tmp_path, capsys, damage, needle):
    """A local folder whose weights are cut off fails in one line (exit 2) before any stage trains."""
    from w2strust.cli import main

    folder = shutil.copytree(bert_folder, tmp_path / "model")
    damage(folder)
    with pytest.raises(W2SError, match=needle):
        models.check(str(folder), "classification")
    out = tmp_path / "o"
    capsys.readouterr()
    rc = main(["run", "fairness", "--preset", "smoke", "--set", f"strong_model={folder}", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("w2strust: error: model '") and "save_pretrained" in err[0]
    assert not (out / "cache").exists() or not any((out / "cache").glob("*/meta.json"))  # nothing trained


def test_a_whole_torch_bin_passes_and_a_cut_one_does_not(bert_folder, tmp_path):
    import torch

    folder = shutil.copytree(bert_folder, tmp_path / "model")
    (folder / "model.safetensors").unlink()
    torch.save({"w": torch.zeros(64, 64)}, folder / "pytorch_model.bin")
    models.check_weights(folder, "m")
    _cut(folder / "pytorch_model.bin", 0.6)
    with pytest.raises(W2SError, match="pytorch_model.bin is damaged or truncated"):
        models.check_weights(folder, "m")
