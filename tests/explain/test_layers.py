"""Which conv layer Grad-CAM-style methods look at (issue 13, item 3): by default the deepest whose
maps are at least 6x6, because the shipped model's last layer is 3x3 and paints the same blob on
every face; ``layer`` (and ``--layer``, the API's ``layer=``) chooses another."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import ferlab
from ferlab.checkpoint import load_model
from ferlab.errors import UnknownChoice
from ferlab.explain import NotApplicable, explain, get_spec, gradient_free_methods, list_methods
from ferlab.explain.common import MIN_CAM_SIDE, conv_layers, default_layer, layer_sides, pick_layer
from ferlab.models import build_model, list_models

CONV_MODELS = [name for name in list_models() if conv_layers(build_model(name))]


@pytest.mark.parametrize("name", CONV_MODELS)
def test_the_default_layer_is_the_deepest_with_maps_of_at_least_6x6(name):
    model = build_model(name).eval()
    sides = layer_sides(model)
    chosen = default_layer(model)
    assert sides[chosen] >= MIN_CAM_SIDE
    deeper = list(sides)[list(sides).index(chosen) + 1:]
    assert all(sides[layer] < MIN_CAM_SIDE for layer in deeper)
    assert pick_layer(model, None)[0] == chosen


def test_the_shipped_models_layers_known_answer():
    model = load_model("default", device="cpu").model
    assert layer_sides(model) == {"0": 48, "1": 48, "3": 24, "4": 24, "6": 12, "7": 12, "9": 6, "10": 6, "12": 3}
    assert default_layer(model) == "10"
    assert pick_layer(model, "last")[0] == "12" and pick_layer(model, -1)[0] == "12"
    with pytest.raises(UnknownChoice, match="available: 0, 1, 3, 4, 6, 7, 9, 10, 12 or last"):
        pick_layer(model, "11")
    assert pick_layer(model, np.int64(-2))[0] == "10"  # a position from NumPy, as from Python
    with pytest.raises(UnknownChoice, match="^no conv layer True; available: "):  # it was position 1
        pick_layer(model, True)


def test_layer_sides_are_probed_once_per_model_and_again_when_its_layers_change():
    """The probe is a forward pass (half of a one-face Grad-CAM): once per model and face size; a
    model whose layers were swapped is probed again, a second model of the same kind on its own."""
    model = build_model("cnn").eval()
    probes = []
    model.features[0].register_forward_hook(lambda module, inputs, output: probes.append(tuple(inputs[0].shape)))
    first = layer_sides(model)
    assert layer_sides(model) == first and pick_layer(model, None)[0] == default_layer(model)
    assert probes == [(1, 1, 48, 48)]
    first["0"] = 0  # the caller's copy: the cache is not touched
    assert layer_sides(model)["0"] == 48
    assert layer_sides(model, size=96)["10"] == 24 and probes == [(1, 1, 48, 48), (1, 1, 96, 96)]
    model.features = model.features[:6]  # cut after layer "5" (24x24): the deepest now
    assert layer_sides(model) == {"0": 48, "1": 48, "4": 24, "5": 24} and len(probes) == 3
    assert default_layer(model) == "5"
    other = build_model("cnn").eval()
    assert layer_sides(other) == layer_sides(build_model("cnn").eval()) != layer_sides(model)


def test_the_last_layer_paints_one_blob_and_the_default_layer_follows_the_face(sample_faces):
    """Where each face's Grad-CAM peaks: on the 3x3 layer almost every face peaks in one place;
    on the 6x6 default the peaks spread over the face."""
    loaded = load_model("default", device="cpu")
    faces = sample_faces.split("test").images[:40]
    inputs = loaded.normalization.apply(faces)

    def peaks(layer) -> int:
        maps = explain("gradcam", loaded.model, inputs, layer=layer)[:, 0]
        return len({int(i) for i in maps.flatten(1).argmax(1)})

    assert peaks("last") <= 9  # a 3x3 map upsampled peaks at one of at most 9 places
    assert peaks(None) > 2 * peaks("last")


def test_the_api_and_the_registry_take_a_layer(sample_faces):
    model = ferlab.load("default", device="cpu")
    face = sample_faces.split("test").images[:1].numpy()
    default, last = model.explain(face), model.explain(face, layer="last")
    assert default.shape == last.shape == (1, 48, 48)
    assert not np.allclose(default, last)
    assert "layer" in get_spec("gradcam").options and "layer" not in get_spec("saliency").options
    with pytest.raises(UnknownChoice, match="saliency takes no option layer"):
        model.explain(face, method="saliency", layer="10")


def test_every_method_says_how_it_is_drawn():
    assert {name: get_spec(name).display for name in list_methods()} == {
        "saliency": "fine", "gradcam": "heat", "hirescam": "heat", "guided_gradcam": "fine", "lime": "signed",
        "occlusion": "signed"}
    assert gradient_free_methods() == ["lime", "occlusion"]


def test_the_explain_command_takes_a_layer(tmp_path, sample_archive, capsys):
    from ferlab.cli import main

    output = tmp_path / "cam.png"
    assert main(["explain", "default", "--method", "gradcam", "--index", "0", "--layer", "last", "--data",
                 str(sample_archive), "-o", str(output)]) == 0
    assert output.stat().st_size > 1000
    assert main(["explain", "default", "--method", "gradcam", "--index", "0", "--layer", "99", "--data",
                 str(sample_archive), "-o", str(output)]) == 2
    assert "no conv layer '99'" in capsys.readouterr().err


@pytest.mark.parametrize("command", [
    ["photo", "--demo", "--explain", "--layer", "99"],
    ["serve", "--layer", "99", "--port", "1"],  # refused before it would try to bind
    ["explain", "default", "--method", "saliency", "--index", "0", "--layer", "10"],
])
def test_a_layer_the_model_or_method_lacks_is_one_line_before_any_work(command, tmp_path, sample_archive, capsys):
    from ferlab.cli import main

    extra = {"photo": ["-o", str(tmp_path / "out")], "explain": ["--data", str(sample_archive), "-o", str(tmp_path / "x.png")]}
    assert main([*command, *extra.get(command[0], [])]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and ("no conv layer '99'" in error or
                                  error.endswith("--layer is an option of gradcam, hirescam, guided_gradcam; saliency takes no layer"))
    assert not (tmp_path / "out" / "results.json").exists() and not (tmp_path / "x.png").exists()


def test_explain_all_draws_every_method_that_applies_and_names_those_left_out(tmp_path, sample_faces, capsys):
    from ferlab.checkpoint import LoadedModel
    from ferlab.cli import main
    from ferlab.config import TrainConfig
    from ferlab.data.normalize import Normalization
    from ferlab.models import build_model
    from ferlab.report.explain_figures import explain_faces_figure

    torch.manual_seed(0)
    dense = LoadedModel(build_model("dnn").eval(), Normalization(), TrainConfig(model="dnn"), {})
    faces = sample_faces.images[:2]
    left_out = explain_faces_figure(dense, faces, ["a", "b"], list_methods(), None, tmp_path / "dnn.png")
    assert set(left_out) == {"Grad-CAM", "HiResCAM", "Guided Grad-CAM"}
    assert all("no convolutional layers" in why for why in left_out.values())
    assert (tmp_path / "dnn.png").stat().st_size > 5000
    with pytest.raises(NotApplicable, match="no convolutional layers"):  # one method: its own answer
        explain_faces_figure(dense, faces, ["a", "b"], ["gradcam"], None, tmp_path / "one.png")
    figure = tmp_path / "all.png"
    assert main(["explain", "default", "--method", "all", "--image", str(tmp_path / "dnn.png"), "-o", str(figure)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"wrote {figure}"  # nothing left out of the shipped model
    with Image.open(figure) as image:  # seven panels after the face: the masked face beside saliency
        assert image.width > 6 * image.height
