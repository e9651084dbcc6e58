from __future__ import annotations

import torch

from ferlab.explain.trust import area_under, assess, perturbation_curves, randomized_copy, rank_correlation
from tests.explain.helpers import LeftHalf, small_cnn


def sobel_edges(model, images, target=None):
    """An 'explanation' that ignores the model: the image's edge strength."""
    kernel = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])[None, None]
    gx = torch.nn.functional.conv2d(images, kernel, padding=1)
    gy = torch.nn.functional.conv2d(images, kernel.transpose(2, 3), padding=1)
    return (gx ** 2 + gy ** 2).sqrt()


def test_sanity_check_fails_for_a_model_blind_method_and_passes_for_the_gradient():
    model = small_cnn(seed=3)
    images = torch.randn(6, 1, 48, 48)
    targets = model(images).argmax(1)
    edges = assess(sobel_edges, model, images, targets, name="edges")
    assert edges.randomization_rho > 0.99 and not edges.passes_sanity
    assert "FAILS the randomisation check" in edges.verdict()
    gradient = assess("saliency", model, images, targets)
    assert gradient.randomization_rho < 0.5 and gradient.passes_sanity


def test_deletion_and_insertion_reward_the_pixels_the_model_uses():
    model = LeftHalf()
    images = torch.rand(3, 1, 48, 48) + 0.5
    targets = torch.zeros(3, dtype=torch.int64)
    left = torch.zeros(3, 1, 48, 48)
    left[..., :24] = 1 + torch.rand(3, 1, 48, 24)  # the true evidence first
    good = assess(lambda m, x, t: left, model, images, targets, name="left")
    bad = assess(lambda m, x, t: 2 - left, model, images, targets, name="right")
    assert good.deletion_auc < good.random_deletion_auc and good.insertion_auc > good.random_insertion_auc
    assert good.faithful and not bad.faithful
    assert bad.deletion_auc > bad.random_deletion_auc


def test_perturbation_curves_start_and_end_where_they_must():
    model = LeftHalf()
    images = torch.rand(2, 1, 48, 48) + 0.5
    targets = torch.zeros(2, dtype=torch.int64)
    deletion, insertion = perturbation_curves(model, images, torch.rand(2, 1, 48, 48), targets, fill=0.0)
    full = model(images).softmax(1)[:, 0]
    blank = model(torch.zeros_like(images)).softmax(1)[:, 0]
    assert deletion.shape == (2, 49)
    assert torch.allclose(deletion[:, 0], full) and torch.allclose(deletion[:, -1], blank)
    assert torch.allclose(insertion[:, 0], blank) and torch.allclose(insertion[:, -1], full)
    assert torch.allclose(area_under(torch.ones(1, 49)), torch.tensor([1.0]))


def test_randomized_copy_changes_every_weight_and_leaves_the_original():
    model = small_cnn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    clone = randomized_copy(model, seed=1)
    for (name, p), q in zip(model.named_parameters(), clone.parameters()):
        assert torch.equal(p, before[name])
        if p.numel() > 16 and p.dim() > 1:
            assert not torch.equal(p, q), name


def test_rank_correlation_known_values():
    a = torch.arange(10.0).reshape(1, 1, 2, 5)
    assert torch.allclose(rank_correlation(a, a * 3), torch.ones(1))
    assert torch.allclose(rank_correlation(a, 10 - a), -torch.ones(1))


def test_a_model_without_weights_is_measured_without_the_randomisation_check():
    from tests.explain.test_methods import AnswersOnly

    images = torch.rand(3, 1, 48, 48) + 0.5
    targets = torch.zeros(3, dtype=torch.int64)
    graph, same = assess("occlusion", AnswersOnly(), images, targets), assess("occlusion", LeftHalf(), images, targets)
    assert graph.unchecked and not same.unchecked  # LeftHalf re-initialised keeps its ranking: rho 1, checked
    assert (graph.deletion_auc, graph.insertion_auc) == (same.deletion_auc, same.insertion_auc)
    assert graph.faithful and graph.verdict() == ("no randomisation check (the model has no weights to "
                                                  "re-initialise); beats a random order at deletion and insertion")
