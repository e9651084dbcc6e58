from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models import resnet18

from ferlab.errors import FerlabError
from ferlab.models import build_model, count_parameters, list_models, model_options
from ferlab.models.fast import pooled_unit
from ferlab.models.layers import crop_input
from ferlab.models.summary import format_summary, summarize


@pytest.mark.parametrize("name", list_models())
def test_every_model_maps_a_batch_of_faces_to_seven_logits(name):
    model = build_model(name).eval()
    with torch.no_grad():
        logits = model(torch.rand(3, 1, 48, 48))
    assert logits.shape == (3, 7) and torch.isfinite(logits).all()
    model.train()
    logits = model(torch.rand(4, 1, 48, 48))
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("name, low, high", [
    ("cnn", 6.6e6, 6.8e6),          # the seed notebooks' ~6.7 M
    ("dnn", 6.0e6, 7.5e6),
    ("vgg", 14e6, 16e6),            # VGG16's 13 conv layers (14.7 M) + a 512-512 head
    ("resnet18", 11.0e6, 11.3e6),   # torchvision's 11.7 M less the 1000-way fc, plus a 7-way one
    ("fastnet", 1.5e6, 2.5e6),
    ("fastnet-full", 1.9e6, 2.1e6),  # fastnet + one residual pair of 32-wide convs (18.6 k)
    ("vgg8", 5.1e6, 5.3e6),         # Khaireddin & Chen's 8 convs (4.7 M) + a 1024-wide dense layer
])
def test_parameter_counts(name, low, high):
    assert low <= count_parameters(build_model(name)) <= high


def test_the_new_families_have_their_layouts():
    convs = [m for m in build_model("vgg8").modules() if isinstance(m, torch.nn.Conv2d)]
    assert [m.out_channels for m in convs] == [64, 64, 128, 128, 256, 256, 512, 512]
    full, plain = build_model("fastnet-full"), build_model("fastnet")
    sides = {}
    for name, model in (("full", full), ("plain", plain)):
        shapes = []
        for module in model.features:
            module.register_forward_hook(lambda m, i, o, shapes=shapes: shapes.append(o.shape[-1]))
        model.eval()(torch.zeros(1, 1, 48, 48))
        sides[name] = shapes
    assert sides["full"][:3] == [48, 48, 48] and sides["plain"][:3] == [48, 48, 24]  # a residual pair before the first pool
    stem = build_model("resnet18").features
    assert stem[0].stride == (1, 1) and stem[0].kernel_size == (3, 3)
    assert stem[3](stem[2](stem[1](stem[0](torch.zeros(1, 1, 48, 48))))).shape[-1] == 48  # CIFAR-style: stage 1 at 48x48


def test_pooling_before_the_norm_is_the_same_function_when_the_norm_keeps_order():
    # max-pool commutes with any increasing map, and an eval-mode batch norm with positive scales
    # followed by ReLU is one: pool_first only moves the norm and activation to a quarter of the pixels
    torch.manual_seed(0)
    late, early = (nn.Sequential(*pooled_unit(3, 8, "relu", pool_first=flag)) for flag in (False, True))
    late_conv, late_norm = late[0][0], late[0][1]
    early_conv, early_norm = early[0][0], early[0][2]
    early_conv.load_state_dict(late_conv.state_dict())
    with torch.no_grad():
        late_norm.weight.uniform_(0.5, 2.0), late_norm.bias.uniform_(-1, 1)
        late_norm.running_mean.uniform_(-1, 1), late_norm.running_var.uniform_(0.5, 2.0)
    early_norm.load_state_dict(late_norm.state_dict())
    faces = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        assert torch.allclose(late.eval()(faces), early.eval()(faces), atol=1e-6)
        late_norm.weight[0] = -1.0  # a negative scale turns max into min: then the order matters
        early_norm.weight[0] = -1.0
        assert not torch.allclose(late(faces), early(faces), atol=1e-3)


def test_fastnet_without_a_stem_reads_the_face_in_its_first_stage():
    model = build_model("fastnet", stem=False, pool_first=True)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    plain = [m for m in build_model("fastnet").modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == len(plain) - 1 and convs[0].in_channels == 1 and convs[0].out_channels == 32
    sides = []
    for module in model.features:
        module.register_forward_hook(lambda m, i, o: sides.append(o.shape[-1]))
    model.eval()(torch.zeros(1, 1, 48, 48))
    assert sides == [24, 24, 12, 12, 6, 6, 3, 3]  # no layer at 48x48 keeps its output
    with pytest.raises(ValueError, match="option pool_first must be true or false, got 1"):
        build_model("fastnet", pool_first=1)


@pytest.mark.parametrize("name", [n for n in list_models() if n not in ("cnn", "dnn")])
def test_a_model_trained_on_crops_answers_on_the_centre_crop_of_a_whole_face(name):
    model = crop_input(build_model(name), 40).eval()
    faces = torch.rand(2, 1, 48, 48)
    with torch.no_grad():
        assert torch.equal(model(faces), model(faces[..., 4:44, 4:44]))
        assert model.features(faces).shape == model.features(faces[..., 4:44, 4:44]).shape
    untouched = crop_input(build_model(name), 48)
    assert not untouched.features._forward_pre_hooks


def test_dnn_is_within_ten_percent_of_cnn():
    ratio = count_parameters(build_model("dnn")) / count_parameters(build_model("cnn"))
    assert 0.9 <= ratio <= 1.1, ratio


def test_cnn_has_the_seed_layout():
    model = build_model("cnn")
    convs = [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    dense = [m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert convs == [64, 64, 128, 128, 256, 256, 256]
    assert dense == [512, 512, 7]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 7


def test_unknown_names_and_options_list_the_valid_ones():
    with pytest.raises(ValueError, match="unknown model 'vgg19'; available: cnn, dnn"):
        build_model("vgg19")
    with pytest.raises(ValueError, match="has no option depth; its options: channels"):
        build_model("cnn", depth=3)
    assert "activation" in model_options("vgg")


@pytest.mark.parametrize("activation", ["leaky_relu", "softplus"])
def test_vgg_activation_is_configurable(activation):
    model = build_model("vgg", activation=activation)
    kind = {"leaky_relu": torch.nn.LeakyReLU, "softplus": torch.nn.Softplus}[activation]
    assert sum(isinstance(m, kind) for m in model.modules()) == 15  # 13 conv + 2 dense
    assert not any(isinstance(m, torch.nn.ReLU) for m in model.modules())


def test_resnet18_loads_imagenet_weights_from_a_local_file(tmp_path):
    reference = resnet18(weights=None)
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(reference.state_dict(), path)
    model = build_model("resnet18", stem_kernel=7, pretrained=str(path))
    assert torch.equal(model.features[3][0].conv1.weight, reference.layer1[0].conv1.weight)
    assert torch.allclose(model.features[0].weight, reference.conv1.weight.sum(1, keepdim=True))
    with pytest.raises(FerlabError, match="no such weights file"):
        build_model("resnet18", pretrained=str(tmp_path / "missing.pth"))
    import zipfile

    deflated = tmp_path / "deflated.pth"  # a zip bomb's way in: torch.load inflates compressed members
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as target:
        for member in source.infolist():
            target.writestr(member.filename, source.read(member.filename))
    with pytest.raises(FerlabError, match=rf"^{deflated}: \d+ compressed members"):
        build_model("resnet18", pretrained=str(deflated))


def test_summary_rows_match_the_model_and_leave_no_hooks():
    model = build_model("cnn").train()
    rows, total = summarize(model)
    assert total == count_parameters(model)
    assert sum(row[3] for row in rows) == total
    assert rows[-1][2] == (7,) and rows[0][2] == (64, 48, 48)
    assert model.training
    assert all(not m._forward_hooks for m in model.modules())
    text = format_summary("cnn", model)
    assert "Total params: 6,721,863" in text and "Output Shape" in text and "Total mult-adds (M)" in text
