"""``ferlab summary`` in torchinfo's columns, and the course's derivations (docs/derivations.md)
checked against the models' shapes and against autograd (issue 12, item 9)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ferlab.cli import main
from ferlab.models import build_model, list_models
from ferlab.models.summary import format_summary, output_side, summarize


@pytest.mark.parametrize("name", list_models())
def test_every_conv_output_size_follows_the_formula(name):
    model = build_model(name).eval()
    shapes = {}
    handles = [module.register_forward_hook(lambda m, i, o, key=key: shapes.update({key: (i[0].shape, o.shape)}))
               for key, module in model.named_modules() if isinstance(module, nn.Conv2d)]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 1, 48, 48))
    finally:
        for handle in handles:
            handle.remove()
    convs = dict(model.named_modules())
    for key, (inputs, outputs) in shapes.items():
        conv = convs[key]
        expected = [output_side(inputs[2 + axis], conv.kernel_size[axis], conv.stride[axis], conv.padding[axis],
                                conv.dilation[axis]) for axis in (0, 1)]
        assert list(outputs[2:]) == expected, key
    assert name == "dnn" or shapes  # every other model has convolutions to check


@pytest.mark.parametrize("name", list_models())
def test_parameters_mult_adds_and_sizes_match_torchinfo(name):
    torchinfo = pytest.importorskip("torchinfo")
    model = build_model(name).eval()
    reference = torchinfo.summary(model, input_size=(1, 1, 48, 48), verbose=0)
    rows, total = summarize(model)
    assert total == reference.total_params and sum(r[4] for r in rows) == reference.total_mult_adds
    assert format_summary(name, model).splitlines()[-4:] == str(reference).splitlines()[-5:-1]


def test_batch_norm_backward_matches_autograd():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, 5, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    norm = nn.BatchNorm2d(3).double().train()
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([0.5, 1.5, -2.0]))
        norm.bias.copy_(torch.tensor([0.1, 0.0, 0.3]))
    upstream = torch.randn(8, 3, 5, 5, generator=generator, dtype=torch.float64)
    norm(x).backward(upstream)
    # By hand, per channel over the m = N*H*W values (docs/derivations.md, 2).
    m = x.shape[0] * x.shape[2] * x.shape[3]
    mean = x.detach().mean((0, 2, 3), keepdim=True)
    variance = ((x.detach() - mean) ** 2).mean((0, 2, 3), keepdim=True)
    inverse_std = 1 / torch.sqrt(variance + norm.eps)
    x_hat = (x.detach() - mean) * inverse_std
    gamma = norm.weight.detach().view(1, 3, 1, 1)
    sum_g, sum_g_xhat = upstream.sum((0, 2, 3), keepdim=True), (upstream * x_hat).sum((0, 2, 3), keepdim=True)
    grad_x = gamma * inverse_std / m * (m * upstream - sum_g - x_hat * sum_g_xhat)
    torch.testing.assert_close(x.grad, grad_x, atol=1e-10, rtol=0)
    torch.testing.assert_close(norm.weight.grad, sum_g_xhat.flatten(), atol=1e-10, rtol=0)
    torch.testing.assert_close(norm.bias.grad, sum_g.flatten(), atol=1e-10, rtol=0)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_softmax_cross_entropy_gradient_is_p_minus_y(smoothing):
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 7, generator=generator, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 3, 6, 2, 2, 5])
    F.cross_entropy(logits, labels, label_smoothing=smoothing).backward()
    target = (1 - smoothing) * F.one_hot(labels, 7).double() + smoothing / 7
    torch.testing.assert_close(logits.grad, (logits.detach().softmax(1) - target) / 6, atol=1e-12, rtol=0)


def test_summary_takes_the_shipped_model_a_run_or_a_name(capsys):
    assert main(["summary", "default"]) == 0
    out = capsys.readouterr().out
    assert out.startswith('Model: "default (fastnet)"') and "Total mult-adds (M): 383.5" in out
    assert "Estimated Total Size (MB)" in out
