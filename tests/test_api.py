"""The public API (issue 12): the README's examples run as doctests, inputs of every form give
one answer, bad inputs are one line naming the input."""

from __future__ import annotations

import doctest
import re
import warnings

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

import ferlab
from ferlab.errors import FerlabError
from tests.conftest import REPO


def run_doctests(text: str, name: str) -> doctest.TestResults:
    test = doctest.DocTestParser().get_doctest(text, {}, name, name, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    return runner.summarize(verbose=False)


def test_the_readme_api_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    examples = "\n".join(block for block in blocks if ">>>" in block)
    results = run_doctests(examples, "README.md")
    assert results.attempted >= 6 and results.failed == 0


def test_the_module_docstrings_run():
    import ferlab.api

    results = doctest.testmod(ferlab.api, optionflags=doctest.ELLIPSIS)
    assert results.attempted >= 3 and results.failed == 0


@pytest.fixture(scope="module")
def model():
    return ferlab.load("default")


@pytest.fixture(scope="module")
def crop(model):
    return model.detect(ferlab.demo_photos()[1])[0].crop  # (48, 48) uint8


def test_every_form_of_one_face_gets_one_answer(model, crop, tmp_path):
    path = tmp_path / "face.png"
    Image.fromarray(crop).save(path)
    big = np.asarray(Image.fromarray(crop).resize((96, 96), Image.Resampling.NEAREST))
    forms = [crop, crop.astype(np.float32) / 255, crop.astype(np.float64), crop.astype(np.uint16) * 257,
             np.stack([crop] * 3, -1), torch.from_numpy(crop)[None], torch.from_numpy(crop)[None, None].float(),
             Image.fromarray(crop), str(path), path, path.read_bytes(), bytearray(path.read_bytes())]
    reference = model.predict(crop).probabilities
    together = model.predict(forms)
    assert len(together) == len(forms)
    np.testing.assert_allclose(together.probabilities, np.repeat(reference, len(forms), 0), atol=1e-6)
    assert model.predict(big).labels == model.predict(crop).labels  # resized by the stated rule


def test_a_channel_axis_is_colour_never_a_batch_of_slivers(model, crop):
    """A gray (48, 48, 1) array, the layout Keras-style FER2013 code keeps, was 48 faces 1 pixel
    wide; gray-and-alpha (48, 48, 2) was 48 faces 2 pixels wide. bfloat16 and float8 tensors
    were TypeErrors from NumPy."""
    reference = model.predict(crop).probabilities
    opaque = np.full_like(crop, 255)
    forms = [crop[..., None], crop[None, ..., None], np.dstack([crop, opaque]), np.stack([crop, opaque], -1)[None],
             torch.from_numpy(np.stack([crop, opaque]))[None], torch.from_numpy(crop)[None].to(torch.bfloat16)]
    for form in forms:  # integers to 255 are exact in bfloat16
        answer = model.predict(form)
        assert len(answer) == 1, tuple(form.shape)
        np.testing.assert_allclose(answer.probabilities, reference, atol=1e-6, err_msg=str(tuple(form.shape)))
    coarse = torch.from_numpy(crop)[None].float().div(255).to(torch.float8_e4m3fn)  # 3 bits of mantissa
    np.testing.assert_allclose(model.predict(coarse).probabilities, model.predict(coarse.float()).probabilities, atol=1e-6)


@pytest.mark.parametrize("bad, message", [
    (torch.zeros(3, 48, 48), "faces: a tensor of shape (3, 48, 48) is 3 gray faces (N, H, W) or one colour image "
                             "(C, H, W), as torchvision reads it; give (3, 1, H, W) for faces or (1, 3, H, W) for one image"),
    (torch.zeros(48, 48, 3), "faces: a tensor of shape (48, 48, 3) is laid out (H, W, C); PyTorch tensors are "
                             "(N, C, H, W): permute it, or pass the NumPy array"),
    (torch.zeros(2, 48, 48, 1), "faces: a tensor of shape (2, 48, 48, 1) has 48 channels; expected (N, C, H, W), C 1 to 4"),
    (torch.empty(1, 48, 48, device="meta"), "faces: a meta tensor holds no values"),  # NotImplementedError
    (torch.zeros(1, 48, 48).to_sparse(), "faces: a sparse_coo tensor; give tensor.to_dense()"),  # TypeError
])
def test_tensors_read_two_ways_or_holding_no_values_are_one_line(model, bad, message):
    """torchvision's read_image gives a colour picture as (3, H, W): it was read as three gray faces."""
    with pytest.raises(FerlabError) as error:
        model.predict(bad)
    assert str(error.value) == message


def test_the_network_and_its_inputs_give_the_answers_in_float32(model, crop, sample_faces):
    """``network`` and ``inputs`` are the PyTorch module and the tensor it takes, for code of the
    user's own: in float32 they give the inference path's float32 logits, and gradients flow."""
    from ferlab.evaluation import infer

    faces = sample_faces.images[:64]
    logits = model.network(model.inputs(faces)).detach()
    float32 = infer(model.loaded.model, faces, model.loaded.normalization, mixed_precision=False)
    torch.testing.assert_close(logits, float32, atol=1e-5, rtol=1e-5)
    probabilities = (model.network(model.inputs(crop)) / model.temperature).softmax(1).detach().numpy()
    np.testing.assert_allclose(probabilities, model.predict(crop).probabilities, atol=0.02)  # predict runs bf16 here
    assert model.inputs(crop).shape == (1, 1, 48, 48) and model.temperature == model.loaded.temperature > 1
    x = model.inputs(crop).requires_grad_()
    model.network(x)[0, ferlab.EMOTIONS.index("neutral")].backward()
    assert x.grad.shape == x.shape and x.grad.abs().sum() > 0
    assert model.network is model.loaded.model and not model.network.training


def test_a_graph_has_no_network_to_give(fast_graph):
    graph, refusal = ferlab.load(fast_graph), "an ONNX graph runs in onnxruntime and has no PyTorch module"
    with pytest.raises(FerlabError, match=f"{refusal} \\(network\\); load the checkpoint it was exported from"):
        graph.network
    with pytest.raises(FerlabError, match=f"{refusal} \\(inputs\\)"):
        graph.inputs(np.zeros((48, 48), np.uint8))


def test_api_detect_and_the_one_inference_path_agree(model, crop):
    found = model.detect(ferlab.demo_photos()[1])[0]
    np.testing.assert_allclose(found.probabilities, model.predict(crop).probabilities[0], atol=1e-6)
    logits = model.loaded.logits(torch.from_numpy(crop)[None])  # what evaluate and predict use
    calibrated = (logits / model.loaded.temperature).softmax(1).numpy()  # the shipped model is calibrated
    assert model.loaded.temperature > 1
    np.testing.assert_allclose(calibrated, model.predict(crop).probabilities, atol=1e-6)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, 5, 48, 48)), "faces: a face array of shape (2, 5, 48, 48)"),
    (np.full((48, 48), 300.0), "faces: values must lie in [0, 1] or [0, 255], found 300..300"),
    (np.zeros((0, 48, 48), np.uint8), "faces: an empty array holds no face"),
    ([np.zeros((48, 48), np.uint8), "nowhere.png"], "nowhere.png: cannot read"),
    (3.5, "faces: cannot read a face from a float"),
    (b"\x89PNG\r\n\x1a\n" + bytes(40), "faces: damaged PNG (it starts as one, but Pillow cannot read it)"),
    ([b"hello"], "faces[0]: not an image (no image format Pillow knows)"),
    ([np.zeros((48, 48), np.uint8), Image.fromarray(np.full((48, 48), np.nan, np.float32), mode="F")],
     "faces[1]: float image with 2304 NaN or infinite pixels of 2304"),
    (Image.new("L", (0, 0)), "faces: image is 0x0: it has no pixels"),  # resized, it was a face of black
    ([Image.new("RGB", (0, 7))], "faces[0]: image is 0x7: it has no pixels"),
])
def test_bad_inputs_are_one_line_naming_the_input(model, bad, message):
    with pytest.raises(FerlabError) as error:
        model.predict(bad)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_detect_takes_gray_rgb_and_rgba_arrays_and_names_any_other(model):
    rgb = np.asarray(Image.open(ferlab.demo_photos()[1]).convert("RGB"))
    boxes = [face.box for face in model.detect(rgb)]
    assert len(boxes) == 1
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    assert [face.box for face in model.detect(rgba)] == boxes
    gray = np.asarray(Image.fromarray(rgb).convert("L"))
    assert [face.box for face in model.detect(gray)] == [face.box for face in model.detect(gray[..., None])]
    for bad, message in ((np.zeros((64, 64, 5), np.uint8), "photo: an array of shape (64, 64, 5); expected"),
                         (np.zeros((1, 64, 64, 3), np.uint8), "photo: an array of shape (1, 64, 64, 3); expected"),
                         (5, "photo: cannot read a photo from a int"),  # was a TypeError and an IndexError
                         (torch.zeros(64, 64, 3), "photo: cannot read a photo from a Tensor"),
                         (Image.new("RGB", (0, 0)), "photo: image is 0x0: it has no pixels")):
        with pytest.raises(ferlab.FerlabError) as error:
            model.detect(bad)
        assert str(error.value).startswith(message)


def test_a_name_given_as_a_list_is_one_line(model, crop):
    """A list where a name belongs was a TypeError ("unhashable type") from the registry's lookup."""
    calls = {"unknown test-time augmentation ['flip']": lambda: ferlab.load("default", tta=["flip"]),
             "unknown explanation method ['gradcam']": lambda: model.explain(crop, method=["gradcam"]),
             "unknown face detector ['haar']": lambda: model.detect(crop, detector=["haar"])}
    for message, call in calls.items():
        with pytest.raises(FerlabError, match=f"^{re.escape(message)}; available: "):
            call()


def test_a_pil_image_its_exif_says_to_turn_is_taken_as_it_is_with_a_warning(model, tmp_path):
    """detect(path) reads a phone's photo upright; detect(Image.open(path)) found the face of the
    sideways pixels without a word. PIL's own rotate keeps the tag, so the image is not turned."""
    upright = Image.open(ferlab.demo_photos()[1]).convert("RGB")
    sideways = upright.rotate(90, expand=True)  # turned a quarter anticlockwise, as the sensor stored it
    exif = sideways.getexif()
    exif[0x0112] = 6  # "turn a quarter clockwise to view"
    path = tmp_path / "phone.jpg"
    sideways.save(path, exif=exif, quality=95)
    from_path = [face.label for face in model.detect(path)]
    with pytest.warns(UserWarning, match=r"^photo: its EXIF orientation \(6\) says to turn it, .*ImageOps.exif_transpose"):
        as_opened = model.detect(Image.open(path))
    assert len(from_path) == 1 and len(as_opened) == 0  # upright: Grace Hopper's face; sideways: none found
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [face.label for face in model.detect(ImageOps.exif_transpose(Image.open(path)))] == from_path


def test_a_file_that_is_not_an_image_is_named(model, tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    with pytest.raises(FerlabError, match=rf"^{re.escape(str(text))}: not an image"):
        model.predict([np.zeros((48, 48), np.uint8), text])


def test_a_path_holding_a_nul_character_is_one_line_everywhere(model, tmp_path):
    """Python's ValueError ("embedded null byte") came through predict, detect, explain and video."""
    calls = (model.predict, model.detect, model.explain, lambda path: model.video(path, tmp_path / "out"))
    for call in calls:
        with pytest.raises(FerlabError) as error:
            call("face\x00.png")
        assert str(error.value) == "face\x00.png: cannot read (a file name cannot hold a NUL character)"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("given", ["", 123, None, b"default"])
def test_a_model_that_names_nothing_is_one_line(given, capsys):
    """'' was the current folder ("no best.pt here"); 123 or None a TypeError from pathlib."""
    from ferlab.cli import main

    message = f"model {given!r}: name a run folder, a checkpoint or ONNX file, 'default' or 'default-fast'"
    with pytest.raises(FerlabError, match=f"^{re.escape(message)}$"):
        ferlab.load(given)
    if given == "":
        assert main(["evaluate", ""]) == 2 and capsys.readouterr().err.strip() == f"ferlab: error: {message}"


def test_a_checkpoint_other_than_best_or_last_is_one_line(tmp_path):
    for model in ("default", str(tmp_path)):  # it took the shipped model whatever the checkpoint said
        with pytest.raises(FerlabError, match=r"^checkpoint 'worst': a run folder holds best.pt and last.pt; choose best or last$"):
            ferlab.load(model, checkpoint="worst")
    shipped = ferlab.checkpoint.shipped_model_path("default")
    for model, what in (("default", "one shipped model"), (str(shipped), "one checkpoint file")):  # no last.pt to take
        with pytest.raises(FerlabError, match=rf"^--checkpoint last: {re.escape(model)} is {what}; a run folder holds"):
            ferlab.load(model, checkpoint="last")


def test_a_layer_without_a_map_is_one_line(model, tmp_path, capsys):
    """A conv layer picks the map's; without explain it was passed over without a word."""
    from ferlab.cli import main

    hopper = ferlab.demo_photos()[1]
    message = "--layer 3: picks the conv layer of the map that --explain draws"
    with pytest.raises(FerlabError, match=message):
        model.detect(hopper, layer="3")
    with pytest.raises(FerlabError, match=message):
        model.video(hopper, tmp_path / "video", layer="3")
    for command in (["photo", str(hopper)], ["video", str(hopper)]):
        assert main([*command, "--layer", "3", "-o", str(tmp_path / "out")]) == 2
        assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
    assert model.detect(hopper, explain=True, layer="3")[0].cam is not None


def test_explain_takes_a_class_by_name(model, crop):
    happy, predicted = model.explain(crop, target="happy"), model.explain(crop)
    assert happy.shape == predicted.shape == (1, 48, 48) and not np.allclose(happy, predicted)
    with pytest.raises(FerlabError, match="unknown class 'joy'"):
        model.explain(crop, target="joy")
    np.testing.assert_array_equal(model.explain(crop, target=np.int64(3)), happy)  # happy's index, as NumPy gives it
    for wrong in (9, -1, 2.0, True):  # not an index error deep in the method, nor a bool taken for 1
        with pytest.raises(FerlabError, match=rf"^target {wrong!r} is not a class index 0..6 or name"):
            model.explain(crop, target=wrong)


def test_detect_on_an_animated_photo_warns_that_it_read_the_first_frame(model, tmp_path):
    from tests.test_faces import animated_photo

    gif, still = animated_photo(tmp_path)
    with pytest.warns(UserWarning, match=r"animated\.gif: first frame only"):
        faces = model.detect(gif)
    assert [f.label for f in faces] == [f.label for f in model.detect(still)]


def test_detect_with_a_smallest_face_over_the_photo_warns_why_none_was_found(model):
    photo = np.full((300, 200, 3), 128, np.uint8)
    with pytest.warns(UserWarning, match=r"^photo: --min-face 250 px is over this 200x300 picture's shorter side$"):
        assert model.detect(photo, min_face=250) == []



def test_a_photo_given_as_a_face_warns_that_it_was_stretched(model, crop, tmp_path):
    """A group photo given to predict gave one label of its squeezed pixels without a word."""
    photo = tmp_path / "group.png"
    Image.fromarray(np.full((400, 640), 128, np.uint8)).save(photo)
    with pytest.warns(UserWarning, match=r"^1 image\(s\) not shaped as a face crop, each stretched to 48x48 as one face "
                                         rf"\({re.escape(str(photo))} 640x400\); Model.detect finds the faces in photos$") as caught:
        model.predict(photo)
    assert caught[0].filename == __file__  # it points at the caller's line
    with pytest.warns(UserWarning, match=r"^3 image\(s\) .*\(faces\[1\] 80x40\)"):
        model.predict([crop, np.zeros((3, 40, 80), np.uint8)])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a face crop a little off square (a detector's box) is not warned of
        model.predict([crop, np.zeros((48, 40), np.uint8), Image.fromarray(np.zeros((60, 70), np.uint8))])


def test_an_empty_or_missing_path_is_one_line_naming_the_argument(model, tmp_path):
    """'' was read by pathlib as the current folder (".: not a regular file"); None was a TypeError."""
    for call, message in [(lambda: model.predict(""), "faces '': give a path"),
                          (lambda: model.predict([np.zeros((48, 48), np.uint8), ""]), "faces[1] '': give a path"),
                          (lambda: model.detect(""), "photo '': give a path"),
                          (lambda: model.video(None, tmp_path / "out"), "video None: give a path"),
                          (lambda: model.video("", tmp_path / "out"), "video '': give a path"),
                          (lambda: model.video(tmp_path / "clip.mp4", None), "output None: give a path")]:
        with pytest.raises(FerlabError, match=f"^{re.escape(message)}$"):
            call()
    assert not (tmp_path / "out").exists()
