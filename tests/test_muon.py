import math

import pytest
import torch

from ferlab.models import build_model
from ferlab.muon import NEWTON_SCHULZ, ORTHOGONALIZERS, RMS_MATCH, Muon, hidden_matrices, newton_schulz, spectral


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0).item()


@pytest.mark.parametrize("name", ORTHOGONALIZERS)
@pytest.mark.parametrize("shape", [(32, 288), (288, 32), (256, 1152)])
def test_orthogonalize_gives_the_polar_factor_up_to_its_tolerance(shape, name):
    orthogonalize = ORTHOGONALIZERS[name]
    matrix = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    u, _, vh = torch.linalg.svd(matrix, full_matrices=False)
    result = orthogonalize(matrix)
    singular = torch.linalg.svdvals(result)
    assert result.shape == matrix.shape and result.dtype == torch.float32
    assert 0.6 < singular.min() and singular.max() < 1.25  # the quintic's band, not exactly 1
    assert cosine(result, u @ vh) > 0.97
    assert cosine(orthogonalize(5 * matrix), result) > 0.999  # the gradient's scale does not matter (bf16 rounding aside)


@pytest.mark.parametrize("shape", [(64, 576), (576, 64)])
def test_spectral_computes_the_iterations_map_of_the_singular_values(shape):
    # a spectrum spread over three decades, as gradients have: the quintic lifts the large values
    # into its band and the smallest only part of the way, and the spectral form must agree on both
    u, _ = torch.linalg.qr(torch.randn(shape[0], 64, generator=torch.Generator().manual_seed(5)))
    v, _ = torch.linalg.qr(torch.randn(shape[1], 64, generator=torch.Generator().manual_seed(6)))
    sigma = torch.logspace(0, -3, 64)
    matrix = u @ torch.diag(sigma) @ v.T
    expected = sigma / sigma.norm()  # the normalised singular values, run through the scalar quintic
    a, b, c = NEWTON_SCHULZ
    for _ in range(5):
        expected = a * expected + b * expected ** 3 + c * expected ** 5
    assert spectral(matrix).shape == matrix.shape
    assert 0.2 < expected.min() and expected.max() > 1.2  # the quintic's overshoot, lifted smallest values
    exact = u @ torch.diag(expected) @ v.T  # the same singular vectors, the values mapped

    def error(approximation: torch.Tensor) -> float:
        return ((approximation - exact).norm() / exact.norm()).item()

    assert error(spectral(matrix)) < 2e-3
    assert error(newton_schulz(matrix, dtype=torch.float32)) < 1e-4  # the iteration without rounding
    assert error(newton_schulz(matrix)) > 10 * error(spectral(matrix))  # bf16 rounding, lifted with the small values


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_spectral_passes_zeros_and_diverged_steps_through_like_the_iteration(bad):
    assert torch.equal(spectral(torch.zeros(8, 36)), torch.zeros(8, 36))
    diverged = torch.randn(8, 36)
    diverged[2, 3] = bad  # the eigendecomposition would raise on it
    assert torch.isnan(spectral(diverged)).all() and torch.isnan(newton_schulz(diverged)).all()


def test_an_unknown_orthogonalizer_is_refused_when_the_optimizer_is_made():
    with pytest.raises(ValueError, match="newton-schulz, spectral"):
        Muon([torch.nn.Parameter(torch.zeros(4, 4))], orthogonalizer="svd")


def test_vectors_and_outer_layers_step_exactly_as_torch_adamw():
    a = torch.nn.Parameter(torch.randn(10, generator=torch.Generator().manual_seed(1)))
    b = torch.nn.Parameter(a.detach().clone())
    ours = Muon([{"params": [a], "muon": False}], lr=0.01, weight_decay=0.1)
    reference = torch.optim.AdamW([b], lr=0.01, weight_decay=0.1)
    gradients = torch.Generator().manual_seed(2)
    for _ in range(3):
        a.grad = torch.randn(10, generator=gradients)
        b.grad = a.grad.clone()
        ours.step(), reference.step()
    assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("name", ORTHOGONALIZERS)
def test_a_first_muon_step_is_the_decayed_weight_minus_the_scaled_orthogonal_gradient(name):
    weight = torch.randn(8, 4, 3, 3, generator=torch.Generator().manual_seed(3))
    gradient = torch.randn(8, 4, 3, 3, generator=torch.Generator().manual_seed(4))
    p = torch.nn.Parameter(weight.clone())
    p.grad = gradient.clone()
    lr, decay = 0.01, 0.1
    Muon([{"params": [p], "muon": True}], lr=lr, weight_decay=decay, momentum=0.9, orthogonalizer=name).step()
    # Nesterov on an empty buffer: g + 0.9 g, whose orthogonal factor is that of g
    expected = weight * (1 - lr * decay) - lr * RMS_MATCH * math.sqrt(36) * ORTHOGONALIZERS[name](gradient.reshape(8, 36)).view(8, 4, 3, 3)
    assert torch.allclose(p.detach(), expected, atol=1e-6)


def test_muon_moves_the_hidden_matrices_and_leaves_the_first_and_last_layer_to_adamw():
    model = build_model("fastnet", stem=False, pool_first=True)
    optimizer = Muon.for_model(model, lr=1e-3)
    hidden = {id(p) for p in hidden_matrices(model)}
    matrices = [p for p in model.parameters() if p.ndim >= 2]
    assert id(matrices[0]) not in hidden and id(matrices[-1]) not in hidden  # reads the pixels; the classifier
    assert matrices[0].shape[1] == 1 and matrices[-1].shape[0] == 7
    by_kind = {group["muon"]: {id(p) for p in group["params"]} for group in optimizer.param_groups}
    assert by_kind[True] == hidden
    assert by_kind[False] == {id(p) for p in model.parameters()} - hidden
