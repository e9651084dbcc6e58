from __future__ import annotations

import copy

import pytest
import torch

from ferlab.explain import NotApplicable, explain, list_methods
from ferlab.explain.common import truncated_features
from ferlab.explain.filters import feature_maps, shallow_middle_deep, visualize_filters
from ferlab.explain.lime_method import superpixels
from ferlab.models import build_model
from ferlab.models.layers import crop_input
from tests.explain.helpers import LeftHalf, SquaredProjection, all_hooks, identity_conv_model, small_cnn

FAST_OPTIONS = {"lime": {"num_samples": 120}}


def test_saliency_is_the_absolute_analytic_input_gradient():
    torch.manual_seed(1)
    weights = torch.randn(7, 48 * 48) * 0.05
    x = torch.randn(3, 1, 48, 48)
    maps = explain("saliency", SquaredProjection(weights), x, target=[2, 5, 2])
    for i, c in enumerate([2, 5, 2]):
        analytic = 2 * (x[i].flatten() @ weights[c]) * weights[c]
        assert torch.allclose(maps[i].flatten(), analytic.abs(), rtol=1e-5, atol=1e-7)


def test_gradcam_reproduces_the_hand_computed_map():
    torch.manual_seed(2)
    head = torch.randn(7, 2)
    x = torch.rand(2, 1, 48, 48)
    maps = explain("gradcam", identity_conv_model(head), x, target=3)
    # alpha_k = W[3, k] / (48 * 48) (the average pool's gradient); A_0 = x, A_1 = 2x.
    by_hand = (head[3, 0] / 2304) * x + (head[3, 1] / 2304) * 2 * x
    assert torch.allclose(maps, by_hand, rtol=1e-5, atol=1e-9)
    # With a global-average-pool head the gradient is uniform over positions, so HiResCAM's
    # element-wise products sum to the same map.
    assert torch.allclose(explain("hirescam", identity_conv_model(head), x, target=3), by_hand, rtol=1e-5, atol=1e-9)


def captum_gradcam(model, module, x, targets):
    from captum.attr import LayerAttribution, LayerGradCam

    maps = LayerGradCam(model, module).attribute(x.clone().requires_grad_(True), target=targets)
    return LayerAttribution.interpolate(maps, (48, 48), interpolate_mode="bilinear")


def captum_guided_gradcam(model, module, x, targets):
    from captum.attr import GuidedGradCam

    return GuidedGradCam(model, module).attribute(x.clone().requires_grad_(True), target=targets).amax(dim=1, keepdim=True)


@pytest.mark.parametrize("method, captum", [("gradcam", captum_gradcam), ("guided_gradcam", captum_guided_gradcam)])
@pytest.mark.parametrize("layer", [None, 1])
def test_our_class_activation_maps_match_captums(method, captum, layer):
    """Ours run without hooks on the model (gradcam) and place the map on the window a crop-trained
    model sees (both); on whole faces they are Captum's."""
    from ferlab.explain.common import pick_layer

    model = build_model("cnn", channels=((8, 8), (16, 16), (16, 16, 16)), dense=(32, 32)).eval()
    x = torch.randn(3, 1, 48, 48)
    targets = [1, 4, 6]
    _, module = pick_layer(model, layer)
    maps = explain(method, model, x, targets, layer=layer)
    assert torch.allclose(maps, captum(model, module, x, targets), rtol=1e-4, atol=1e-7) and maps.abs().sum() > 0


@pytest.mark.parametrize("method", list_methods())
@pytest.mark.parametrize("target", [None, 4, [0, 6, 3]])
def test_a_batch_equals_one_by_one(method, target):
    model = small_cnn()
    x = torch.randn(3, 1, 48, 48)
    batch = explain(method, model, x, target, **FAST_OPTIONS.get(method, {}))
    assert batch.shape == (3, 1, 48, 48) and batch.dtype == torch.float32
    for i in range(3):
        single_target = target if not isinstance(target, list) else [target[i]]
        single = explain(method, model, x[i:i + 1], single_target, **FAST_OPTIONS.get(method, {}))
        assert torch.allclose(batch[i], single[0], rtol=1e-4, atol=1e-6), (method, i)


@pytest.mark.parametrize("method", list_methods())
def test_no_hooks_left_and_the_model_is_unchanged(method):
    model = small_cnn().train()
    before = copy.deepcopy(model.state_dict())
    explain(method, model, torch.randn(2, 1, 48, 48), None, **FAST_OPTIONS.get(method, {}))
    assert all_hooks(model) == 0
    assert model.training and all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_none_target_means_the_predicted_class():
    model = small_cnn()
    x = torch.randn(4, 1, 48, 48)
    predicted = model(x).argmax(1).tolist()
    assert torch.equal(explain("saliency", model, x), explain("saliency", model, x, predicted))


def test_guided_gradcam_refuses_models_without_relu_modules():
    model = build_model("vgg", activation="leaky_relu", channels=((8,), (8,), (8,), (8,), (8,)), dense=(8,))
    with pytest.raises(NotApplicable, match="only changes nn.ReLU modules; this model uses LeakyReLU"):
        explain("guided_gradcam", model.eval(), torch.randn(1, 1, 48, 48))


def test_lime_superpixels_and_a_known_answer(sample_faces):
    faces = list(sample_faces.images[::40].double().numpy()) + list(torch.rand(3, 48, 48).double().numpy())
    counts = [len(set(superpixels(face).flatten())) for face in faces]
    assert all(20 <= c <= 60 for c in counts), counts  # "a few dozen", on real faces and on noise
    x = torch.rand(2, 1, 48, 48) + 0.5
    maps = explain("lime", LeftHalf(), x, target=0, num_samples=300)
    # Only the left half decides class 0: LIME's weights must sit there.
    assert (maps[..., :24].mean() > 5 * maps[..., 24:].abs().mean()).item()


def test_feature_maps_are_the_truncated_features():
    model = small_cnn()
    x = torch.randn(2, 1, 48, 48)
    name = shallow_middle_deep(model)[1]
    _, partial = truncated_features(model, name)
    assert torch.equal(feature_maps(model, x, name), partial(x))


def test_filter_visualisation_raises_each_filters_activation_and_leaves_the_model():
    model = small_cnn().train()
    before = copy.deepcopy(model.state_dict())
    layer = shallow_middle_deep(model)[1]
    images = visualize_filters(model, layer, count=6, steps=40)
    assert images.shape == (6, 1, 48, 48)
    _, partial = truncated_features(model, layer)
    model.eval()
    with torch.no_grad():
        start = partial(torch.randn(6, 1, 48, 48, generator=torch.Generator().manual_seed(0)) * 0.1)
        found = partial(images)
    index = torch.arange(6)
    assert (found[index, index].mean((1, 2)) > start[index, index].mean((1, 2))).all()
    assert all_hooks(model) == 0 and all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("method", ["gradcam", "hirescam", "guided_gradcam"])
def test_dense_models_have_no_conv_layer_to_explain(method):
    from ferlab.explain import NotApplicable

    with pytest.raises(NotApplicable, match="no convolutional layers"):  # the report skips it with this note
        explain(method, build_model("dnn").eval(), torch.randn(1, 1, 48, 48))


@pytest.mark.parametrize("method", ["gradcam", "hirescam", "guided_gradcam"])
def test_class_activation_maps_of_a_crop_trained_model_lie_in_the_window_it_sees(method):
    """A model trained on 40-pixel crops sees the centre 40 pixels of a whole face: its map there
    is the map of that window (not stretched over 48 pixels), and zero where it never looks."""
    torch.manual_seed(2)  # weights whose Grad-CAM for these targets is positive somewhere (Guided Grad-CAM rectifies it)
    model = crop_input(build_model("fastnet"), 40).eval()
    faces = torch.randn(2, 1, 48, 48)
    whole = explain(method, model, faces, target=[1, 4])
    window = explain(method, model, faces[..., 4:44, 4:44], target=[1, 4])
    assert torch.allclose(whole[..., 4:44, 4:44], window, rtol=1e-4, atol=1e-6) and window.abs().sum() > 0
    outside = whole.clone()
    outside[..., 4:44, 4:44] = 0
    assert outside.abs().sum() == 0
    _, front = truncated_features(model, None)  # feature maps, too, are those of the window
    assert torch.equal(front(faces), front(faces[..., 4:44, 4:44])) and all_hooks(model) == 1  # its own crop only


def occluded_by_hand(model, x, target: int, window: int, stride: int, fill: float) -> torch.Tensor:
    """Occlusion written out: for each patch position the drop in the target's probability,
    each pixel the mean drop over the patches that cover it."""
    side = x.shape[-1]
    total, count = torch.zeros(side, side), torch.zeros(side, side)
    with torch.no_grad():
        before = model(x).softmax(1)[0, target]
        for top in range(0, side - window + 1, stride):
            for left in range(0, side - window + 1, stride):
                hidden = x.clone()
                hidden[..., top:top + window, left:left + window] = fill
                total[top:top + window, left:left + window] += before - model(hidden).softmax(1)[0, target]
                count[top:top + window, left:left + window] += 1
    return total / count


@pytest.mark.parametrize("window, stride, fill", [(8, 4, 0.0), (6, 6, 0.3), (1, 1, -0.5)])
def test_occlusion_is_the_mean_probability_drop_over_the_patches_covering_each_pixel(window, stride, fill):
    torch.manual_seed(3)
    linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48 * 48, 7)).eval()
    x = torch.randn(2, 1, 48, 48)
    maps = explain("occlusion", linear, x, target=[5, 2], window=window, stride=stride, fill=fill, mixed_precision=False)
    for i, target in enumerate([5, 2]):
        expected = occluded_by_hand(linear, x[i:i + 1], target, window, stride, fill)
        assert torch.allclose(maps[i, 0], expected, rtol=1e-4, atol=1e-6), (window, i)


def test_occlusion_sees_only_what_the_model_looks_at():
    x = torch.rand(2, 1, 48, 48) + 0.5
    maps = explain("occlusion", LeftHalf(), x, target=0)
    # Patches that start at column 24 or later hide nothing class 0 reads; columns from 28 on lie under those only.
    assert torch.equal(maps[..., 28:], torch.zeros_like(maps[..., 28:]))
    assert (maps[..., :20] > 0).all()


@pytest.mark.parametrize("options, message", [
    ({"window": 0}, "window 0 must be 1..48"), ({"window": 8, "stride": 9}, "stride 9 must be 1..8"),
    ({"window": 5, "stride": 4}, "do not tile 48 pixels"), ({"window": "8"}, "window must be a whole number, not '8'"),
    ({"stride": 2.0}, "stride must be a whole number"), ({"fill": float("nan")}, "fill must be a finite number"),
    ({"fill": "gray"}, "fill must be a finite number in model-input units, not 'gray'")])
def test_occlusion_refuses_patches_that_leave_pixels_uncovered(options, message):
    from ferlab.errors import FerlabError

    with pytest.raises(FerlabError, match=message):
        explain("occlusion", LeftHalf(), torch.rand(1, 1, 48, 48), target=0, **options)


@pytest.mark.parametrize("options, message", [
    ({"num_samples": 0}, "lime: num_samples 0 must be 2..100000$"), ({"num_samples": "x"}, "num_samples must be a whole number"),
    ({"num_samples": 10**20}, "lime: num_samples 100000000000000000000 must be 2..100000$"),  # a traceback from numpy
    ({"segments": 0}, "lime: segments 0 must be 1..2304$"), ({"fill": "x"}, "lime: fill must be a finite number"),
    ({"batch_size": -1}, "lime: batch_size -1 must be at least 1$"),
    ({"seed": -1}, r"lime: seed -1 must be 0\.\.4294967295$")])  # a ValueError from NumPy's RandomState
def test_lime_refuses_options_that_would_fail_inside_lime(options, message):
    from ferlab.errors import FerlabError

    with pytest.raises(FerlabError, match=message):
        explain("lime", LeftHalf(), torch.rand(1, 1, 48, 48), target=0, **options)


class AnswersOnly(torch.nn.Module):
    """LeftHalf behind a wall, as an ONNX graph is: no parameters, no gradients."""
    gives_gradients = False
    source = "answers.onnx"

    def __init__(self):
        super().__init__()
        self.inner = [LeftHalf()]  # a list: its parameter stays out of this module's

    def forward(self, x):
        with torch.no_grad():
            return self.inner[0](x)


@pytest.mark.parametrize("method", list_methods())
def test_a_model_without_gradients_gets_the_gradient_free_methods_only(method):
    from ferlab.explain import get_spec, gradient_free_methods

    x = torch.rand(2, 1, 48, 48) + 0.5
    if method in gradient_free_methods():
        maps = explain(method, AnswersOnly(), x, target=0, **FAST_OPTIONS.get(method, {}))
        assert torch.allclose(maps, explain(method, LeftHalf(), x, target=0, **FAST_OPTIONS.get(method, {})), atol=1e-6)
        return
    assert get_spec(method).gradients
    with pytest.raises(NotApplicable, match=r"needs gradients and answers.onnx is an ONNX graph .* lime, occlusion$"):
        explain(method, AnswersOnly(), x, target=0)


def test_the_registry_imports_no_method_library_until_a_method_runs():
    """Every method registers when ferlab.explain is imported; LIME's scikit-learn made that 1.7 s,
    paid by `ferlab photo`, `Model.detect` and `Model.predict`, which run no LIME. Checked by what
    is imported (a timed test would be noise); the time is in BENCHMARKS.md."""
    import subprocess
    import sys

    script = ("import sys, ferlab.explain, ferlab.photos; print(sorted(ferlab.explain.list_methods())); "
              "print(sorted(m for m in ('captum', 'lime', 'sklearn', 'skimage') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    registered, imported = result.stdout.strip().splitlines()
    assert registered == str(sorted(["saliency", "gradcam", "hirescam", "guided_gradcam", "lime", "occlusion"]))
    assert imported == "[]", result.stderr[-300:]
