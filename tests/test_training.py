from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from ferlab.checkpoint import load_model, read_checkpoint
from ferlab.cli import main
from ferlab.config import TrainConfig, resolve_config
from ferlab.data.augment import AugmentPolicy, augment_batch, mix_batch, random_affine, random_crop, random_erase, shrink
from ferlab.data.normalize import Normalization
from ferlab.training import (WeightAverage, epochs_since_best, fit, lr_at, mixed_cross_entropy, plateau_scale,
                             training_batch, view_side_at)


def test_onecycle_and_cosine_schedules_have_known_values():
    config = TrainConfig(lr=1.0, schedule="onecycle", warmup_fraction=0.25)
    # two warm-up steps (1/2, 1), then linear decay over the remaining six
    assert [lr_at(s, 8, config) for s in range(8)] == pytest.approx([0.5, 1.0, 1.0, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6])
    cosine = TrainConfig(lr=1.0, schedule="cosine", warmup_fraction=0.1)  # one warm-up step of ten
    assert lr_at(0, 10, cosine) == 1.0
    assert lr_at(5, 10, cosine) == pytest.approx(0.5 * (1 + math.cos(math.pi * 4 / 9)))
    assert lr_at(10, 10, cosine) == pytest.approx(0.0)
    assert lr_at(5, 10, TrainConfig(lr=0.3, schedule="plateau")) == 0.3


def test_plateau_scale_and_early_stopping_follow_the_history():
    history = [0.50, 0.52, 0.51, 0.51, 0.52, 0.50, 0.53]
    # patience 2: stalls after 0.52 at epochs 3-4 (one drop), again at 5-6 (second drop), then improves
    assert plateau_scale(history, 0.5, 2) == 0.25
    assert plateau_scale(history[:3], 0.5, 2) == 1.0
    assert epochs_since_best(history) == 0
    assert epochs_since_best(history[:6]) == 4


def test_augmentation_keeps_shape_range_and_is_reproducible():
    images = torch.rand(16, 1, 48, 48) * 255
    policy = AugmentPolicy()
    first = augment_batch(images, policy, torch.Generator().manual_seed(1))
    again = augment_batch(images, policy, torch.Generator().manual_seed(1))
    assert first.shape == images.shape and torch.equal(first, again)
    assert first.min() >= images.min() - 1e-3 and first.max() <= images.max() + 1e-3
    assert not torch.allclose(first, images)


def test_flip_only_policy_mirrors_exactly():
    images = torch.arange(4 * 48 * 48, dtype=torch.float32).reshape(4, 1, 48, 48)
    flipped = augment_batch(images, AugmentPolicy(flip=True, rotate=0, shift=0, shear=0, zoom=0),
                            torch.Generator().manual_seed(3))
    for original, out in zip(images, flipped):
        assert torch.allclose(out, original, atol=1e-3) or torch.allclose(out, original.flip(-1), atol=1e-3)
    identity = random_affine(3, AugmentPolicy(flip=False, rotate=0, shift=0, shear=0, zoom=0), torch.Generator())
    assert torch.allclose(identity, torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(3, 2, 3))


@pytest.mark.parametrize("mixed_precision, ema, ema_warmup, mix, optimizer", [
    (False, 0.0, False, "none", "adamw"), (True, 0.0, False, "none", "adamw"), (False, 0.9, False, "none", "adamw"),
    (False, 0.99, True, "none", "adamw"), (False, 0.0, False, "mixup", "adamw"), (False, 0.0, False, "cutmix", "adamw"),
    (False, 0.0, False, "none", "muon")])
def test_resumed_run_ends_bit_identical_to_an_uninterrupted_one(tmp_path, sample_faces, mixed_precision, ema, ema_warmup,
                                                                mix, optimizer):
    config = resolve_config("smoke", overrides={"epochs": 3, "mixed_precision": mixed_precision, "ema": ema,
                                                "ema_warmup": ema_warmup, "mix": mix, "mix_probability": 0.8,
                                                "optimizer": optimizer})
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    whole.mkdir(), parts.mkdir()
    fit(config, sample_faces, whole, progress=False, log=lambda _: None)
    first = fit(config, sample_faces, parts, progress=False, stop_after=1, log=lambda _: None)
    assert first["epochs"] == 1 and not first["finished"]
    fit(config, sample_faces, parts, resume=True, progress=False, log=lambda _: None)
    a, b = read_checkpoint(whole / "last.pt"), read_checkpoint(parts / "last.pt")
    assert a["epoch"] == b["epoch"] == 3
    for weights in ("model", "train_model") if ema else ("model",):
        for key in a[weights]:
            assert torch.equal(a[weights][key], b[weights][key]), (weights, key)
    without_time = lambda history: [{k: v for k, v in row.items() if k != "seconds"} for row in history]  # noqa: E731
    assert without_time(a["history"]) == without_time(b["history"])


def test_a_short_real_training_run_writes_every_run_folder_file(tmp_path, sample_archive, capsys):
    run = tmp_path / "run"
    code = main(["train", "--preset", "smoke", "--epochs", "2", "--data", str(sample_archive), "--out", str(run), "--quiet"])
    assert code == 0
    for name in ("config.yaml", "history.csv", "curves.png", "best.pt", "last.pt", "metrics.json",
                 "eval-val.json", "eval-test.json", "confusion-test.png", "misclassified-test.png"):
        assert (run / name).stat().st_size > 0, name
    rows = list(csv.DictReader(open(run / "history.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert set(rows[0]) == {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds"}
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["test_accuracy"] <= 1 and metrics["best_epoch"] in (1, 2)
    scored = metrics["tta"]["val_accuracies"]  # the test-time augmentation, chosen on PublicTest
    assert set(scored) == {"none", "flip", "flip-zoom", "ten-crop"} and scored[metrics["tta"]["chosen"]] == max(scored.values())
    assert scored["none"] == metrics["val_accuracy"]
    checkpoint = torch.load(run / "best.pt", weights_only=True)  # plain types only
    assert checkpoint["format"] == "ferlab-checkpoint" and checkpoint["normalization"]["kind"] == "standardize"
    assert checkpoint["classes"][4] == "sad"
    loaded = load_model(run)
    assert loaded.normalization.std == pytest.approx(checkpoint["normalization"]["std"])
    assert "PrivateTest (fer2013-sample.tar.gz): accuracy" in capsys.readouterr().out


@pytest.mark.slow
def test_training_learns_on_the_sample(tmp_path, sample_faces):
    """A real signal check: a few epochs on 280 faces beat chance (1/7) on the training split."""
    config = resolve_config("smoke", overrides={"epochs": 8, "augment": False, "lr": 3e-3})
    fit(config, sample_faces, tmp_path, progress=False, log=lambda _: None)
    history = read_checkpoint(tmp_path / "last.pt")["history"]
    assert history[-1]["train_accuracy"] > 0.3


def test_weight_average_is_evaluated_and_saved(tmp_path, sample_faces):
    config = resolve_config("smoke", overrides={"epochs": 1, "ema": 0.5})
    fit(config, sample_faces, tmp_path, progress=False, log=lambda _: None)
    state = read_checkpoint(tmp_path / "last.pt")
    raw, averaged = state["train_model"], state["model"]
    assert raw.keys() == averaged.keys()
    assert any(not torch.equal(raw[k], averaged[k]) for k in raw if raw[k].is_floating_point())


def test_cli_resume_finishes_an_interrupted_run(tmp_path, sample_archive, sample_faces, capsys):
    config = resolve_config("smoke", overrides={"epochs": 2})
    fit(config, sample_faces, tmp_path, data_info={"source": str(sample_archive)}, progress=False,
        stop_after=1, log=lambda _: None)
    assert len(read_checkpoint(tmp_path / "last.pt")["history"]) == 1
    assert main(["train", "--resume", str(tmp_path), "--quiet"]) == 0
    assert [row["epoch"] for row in read_checkpoint(tmp_path / "last.pt")["history"]] == [1, 2]
    assert json.loads((tmp_path / "metrics.json").read_text())["epochs"] == 2
    assert f"resuming {tmp_path} after epoch 1 of 2" in capsys.readouterr().out


def test_augmentation_keeps_each_face_with_its_label():
    # A constant face is unchanged by any warp with edge padding: after augmenting, face i must
    # still carry the value that encodes label i, so images and labels stay aligned.
    labels = torch.arange(7).repeat(3)
    images = (labels.float() * 30)[:, None, None, None].expand(21, 1, 48, 48).contiguous()
    warped = augment_batch(images, AugmentPolicy(), torch.Generator().manual_seed(5))
    assert torch.allclose(warped.mean((1, 2, 3)) / 30, labels.float(), atol=1e-4)


def test_random_crops_are_windows_of_the_face_at_every_position():
    ramp = (torch.arange(48.0)[None, :] + 100 * torch.arange(48.0)[:, None]).expand(4000, 1, 48, 48)  # 100 row + column
    crops = random_crop(ramp, 40, torch.Generator().manual_seed(0))
    top, left = crops[:, 0, 0, 0] // 100, crops[:, 0, 0, 0] % 100
    expected = ramp[0, 0, :40, :40][None] + (100 * top + left)[:, None, None]
    assert crops.shape == (4000, 1, 40, 40) and torch.equal(crops[:, 0], expected)
    assert set(top.long().tolist()) == set(range(9)) and set(left.long().tolist()) == set(range(9))
    assert random_crop(ramp, 48, torch.Generator()) is ramp


@pytest.mark.parametrize("overrides", [{"views": 4, "crop": 40}, {"views": 3, "crop": 44, "mix": "cutmix", "erase": 0.5}])
def test_batch_augmentation_keeps_every_view_with_its_face_and_label(overrides):
    # Face i is all 10 * label(i) and keeps that value under warps, crops and (its own) erasing:
    # each view's value must be its label's, and each face's views must sit side by side.
    labels = torch.tensor([3, 0, 6, 1, 5, 2, 4, 3, 1, 0])
    images = (10 * labels).to(torch.uint8)[:, None, None].expand(10, 48, 48).contiguous()
    config = resolve_config("smoke", overrides={"rotate": 30.0, "shift": 0.2, **overrides})
    index = torch.tensor([7, 2, 9, 4])
    x, y, partner, keep = training_batch(images, labels, index, config, Normalization("none"), torch.Generator().manual_seed(3))
    views = config.views
    assert x.shape == (4 * views, 1, config.crop, config.crop)
    assert torch.equal(y, labels[index].repeat_interleave(views))
    values = x.flatten(1).round()  # bilinear warps of a constant face leave it constant up to rounding
    if partner is None:
        unerased = values.max(1).values  # erasing writes 0, the lowest value; mixing is off here
        assert torch.allclose(unerased, 10 * y.float(), atol=1e-3)
    else:  # cutmix pastes the partner's value; keep counts the view's own pixels
        own = (values == 10 * y.float()[:, None]).float().mean(1)
        pasted = (values == 10 * y[partner].float()[:, None]).float().mean(1)
        assert torch.equal(partner, torch.roll(torch.arange(4 * views), -views))  # the same view of the next face
        same = y == y[partner]
        assert torch.all(same | (own + pasted + (values == 0).float().mean(1) >= 1 - 1e-6))
        assert torch.all(same | (own <= keep + 1e-6))
    textured = (torch.arange(48)[None, :] + torch.arange(48)[:, None]).to(torch.uint8).expand(10, 48, 48)
    x, *_ = training_batch(textured, labels, index, config, Normalization("none"), torch.Generator().manual_seed(3))
    first_face = x[:views].flatten(1)
    assert all(not torch.equal(first_face[i], first_face[j]) for i in range(views) for j in range(i))  # drawn apart


def test_progressive_views_grow_from_the_start_side_to_the_full_one_in_steps_of_16():
    config = resolve_config("cpu", overrides={"epochs": 16, "progressive_start": 24, "progressive_epochs": 8})
    assert [view_side_at(epoch, config) for epoch in range(16)] == [24] * 3 + [32] * 5 + [48] * 8
    cropped = resolve_config("cpu", overrides={"crop": 40, "progressive_start": 24, "progressive_epochs": 2})
    assert [view_side_at(epoch, cropped) for epoch in range(4)] == [24, 32, 40, 40]  # grows to the crop, not past it
    assert {view_side_at(epoch, resolve_config("cpu")) for epoch in range(15)} == {48}  # off by default


def test_shrinking_averages_areas_and_keeps_the_mean():
    halves = torch.zeros(2, 1, 48, 48)
    halves[..., 24:] = 200.0  # left half dark, right half bright
    small = shrink(halves, 24)
    assert small.shape == (2, 1, 24, 24) and small.mean().item() == pytest.approx(100.0)
    assert torch.all(small[..., :11] == 0) and torch.allclose(small[..., 13:], torch.tensor(200.0))
    assert torch.allclose(small[..., 11:13], torch.tensor([[25.0, 175.0]]))  # a [1, 3, 3, 1] / 8 tent: 200 / 8 next to the edge
    stripes = (torch.arange(48) % 2 * 255.0).expand(1, 1, 48, 48)  # the finest detail a face can hold
    assert torch.allclose(shrink(stripes, 24)[..., 1:-1], torch.tensor(127.5))  # averaged away, not aliased
    assert shrink(halves, 48) is halves


def test_shrunk_views_keep_their_labels():
    labels = torch.tensor([3, 0, 6, 1, 5, 2, 4, 3, 1, 0])
    images = (10 * labels).to(torch.uint8)[:, None, None].expand(10, 48, 48).contiguous()
    config = resolve_config("smoke", overrides={"rotate": 30.0, "views": 2, "progressive_start": 32, "progressive_epochs": 1})
    index = torch.tensor([7, 2, 9, 4])
    x, y, _, _ = training_batch(images, labels, index, config, Normalization("none"), torch.Generator().manual_seed(3), side=32)
    assert x.shape == (8, 1, 32, 32) and torch.equal(y, labels[index].repeat_interleave(2))
    assert torch.allclose(x.flatten(1), 10 * y.float()[:, None], atol=1e-3)
    unaugmented = resolve_config("smoke", overrides={"augment": False, "crop": 40})  # the model crops whole faces itself
    x, *_ = training_batch(images, labels, index, unaugmented, Normalization("none"), torch.Generator().manual_seed(3),
                           side=view_side_at(0, unaugmented))
    assert x.shape == (4, 1, 48, 48)  # a crop side is not a shrink


def test_progressive_training_shrinks_the_early_epochs_views_only(tmp_path, sample_faces, monkeypatch):
    import ferlab.training as training

    sides = []

    def recording(*args, **kwargs):
        batch = training_batch(*args, **kwargs)
        sides.append(batch[0].shape[-1])
        return batch

    monkeypatch.setattr(training, "training_batch", recording)
    config = resolve_config("smoke", overrides={"epochs": 3, "progressive_start": 24, "progressive_epochs": 2})
    summary = fit(config, sample_faces, tmp_path, progress=False, log=lambda _: None)
    steps = len(sides) // 3
    assert summary["epochs"] == 3 and sides == [24] * steps + [32] * steps + [48] * steps
    assert read_checkpoint(tmp_path / "best.pt")["config"]["progressive_start"] == 24


def test_random_erasing_blanks_one_rectangle_per_chosen_face():
    images = torch.ones(64, 1, 48, 48)
    assert torch.equal(random_erase(images, 0.0, torch.Generator().manual_seed(0)), images)
    erased = random_erase(images, 1.0, torch.Generator().manual_seed(0), area=(0.1, 0.2), fill=-3.0)
    assert set(erased.unique().tolist()) == {-3.0, 1.0}
    for face in erased[:, 0]:
        rows, cols = (face == -3.0).nonzero(as_tuple=True)
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert len(rows) == box  # the erased pixels form one full rectangle
        assert 0.1 * 48 * 48 * 0.7 <= box <= 0.2 * 48 * 48 * 1.3  # its area is as asked, up to rounding
    half = random_erase(images, 0.5, torch.Generator().manual_seed(1))
    touched = (half != 1.0).flatten(1).any(1).float().mean()
    assert 0.3 < touched < 0.7


def constant_faces(n: int) -> torch.Tensor:
    """Face i is all i: which face a pixel came from can be read off its value."""
    return torch.arange(n).float()[:, None, None, None].expand(n, 1, 48, 48).contiguous()


def test_mixup_blends_each_chosen_face_with_the_next_one():
    images = constant_faces(32)
    unchanged, partner, keep = mix_batch(images, "mixup", 0.0, torch.Generator().manual_seed(0))
    assert torch.equal(unchanged, images) and torch.equal(keep, torch.ones(32))
    mixed, partner, keep = mix_batch(images, "mixup", 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(partner, torch.roll(torch.arange(32), -1))  # the batch is already shuffled
    assert ((keep > 0) & (keep < 1)).all() and keep.std() > 0.1  # a share of its own per face
    expected = keep * torch.arange(32) + (1 - keep) * partner  # face i = i, its partner = i + 1 (31 -> 0)
    assert torch.allclose(mixed[:, 0, 0, 0], expected) and torch.allclose(mixed.std((1, 2, 3)), torch.zeros(32))
    half = mix_batch(images, "mixup", 0.5, torch.Generator().manual_seed(1))[2]
    assert 0.3 < (half < 1).float().mean() < 0.7


def test_cutmix_pastes_a_square_of_the_partner_and_keep_counts_the_pixels():
    images = constant_faces(32)
    mixed, partner, keep = mix_batch(images, "cutmix", 1.0, torch.Generator().manual_seed(0))
    for i in range(32):
        face = mixed[i, 0]
        own = face == i
        assert torch.equal(own | (face == partner[i].item()), torch.ones_like(own))  # only the two faces' pixels
        assert keep[i].item() == pytest.approx(own.float().mean().item())  # label weight = pixels kept, exactly
        rows, cols = (~own).nonzero(as_tuple=True)
        if len(rows):
            height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
            assert len(rows) == height * width and height == width  # one whole square
    assert keep.min() < 0.5 < keep.max()


def test_mixed_cross_entropy_equals_cross_entropy_with_mixed_soft_targets():
    logits, labels = torch.randn(6, 7, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 3, 4, 5])
    partner, keep = torch.roll(torch.arange(6), -1), torch.tensor([1.0, 0.0, 0.5, 0.25, 0.9, 0.6])
    targets = keep[:, None] * torch.eye(7)[labels] + (1 - keep[:, None]) * torch.eye(7)[labels[partner]]
    for smoothing in (0.0, 0.1):
        expected = torch.nn.functional.cross_entropy(logits, targets, label_smoothing=smoothing)
        assert torch.allclose(mixed_cross_entropy(logits, labels, smoothing, partner, keep), expected)
    assert torch.equal(mixed_cross_entropy(logits, labels, 0.1),
                       torch.nn.functional.cross_entropy(logits, labels, label_smoothing=0.1))


def test_checkpoint_every_skips_writes_but_keeps_the_final_epoch(tmp_path, sample_faces):
    config = resolve_config("smoke", overrides={"epochs": 3, "checkpoint_every": 2})
    fit(config, sample_faces, tmp_path, progress=False, log=lambda _: None)
    last, best = read_checkpoint(tmp_path / "last.pt"), read_checkpoint(tmp_path / "best.pt")
    assert last["epoch"] == 3 and "optimizer" in last  # epoch 3 is not a multiple of 2 but is the end
    assert "optimizer" not in best  # best.pt holds what evaluation needs, not the optimiser state
    interrupted = tmp_path / "interrupted"
    interrupted.mkdir()
    fit(config, sample_faces, interrupted, progress=False, stop_after=1, log=lambda _: None)
    assert read_checkpoint(interrupted / "last.pt")["epoch"] == 1  # an early stop still leaves a resumable state


def test_weight_average_warm_up_follows_the_known_schedule():
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.constant_(model.weight, 0.0)
    plain, warm = WeightAverage(model, 0.999), WeightAverage(model, 0.999, warmup=True)
    torch.nn.init.constant_(model.weight, 1.0)
    plain.update(model), warm.update(model)
    assert plain.model.weight.item() == pytest.approx(0.001)  # plain EMA barely moves from the start
    assert warm.model.weight.item() == pytest.approx(0.9)  # decay (1 + 0) / (10 + 0) = 0.1 at the first update
    warm.update(model)  # decay 2/11: the average moves 9/11 of the rest of the way
    assert warm.model.weight.item() == pytest.approx(0.9 + 0.1 * 9 / 11)


# --- resume and run-folder edges (issue 11: defects 9, 13, 14, 15) ----------------------------------

def history_epochs(run_dir) -> list[int]:
    return [int(row["epoch"]) for row in csv.DictReader(open(run_dir / "history.csv"))]


def test_history_csv_agrees_with_last_pt_after_an_interruption_in_the_final_epoch(tmp_path, sample_archive, sample_faces):
    config = resolve_config("smoke", overrides={"epochs": 2})
    fit(config, sample_faces, tmp_path, data_info={"source": str(sample_archive)}, progress=False, log=lambda _: None)
    rows = (tmp_path / "history.csv").read_text().splitlines()
    (tmp_path / "history.csv").write_text("\n".join(rows[:-1]) + "\n")  # killed after last.pt, before history.csv
    assert history_epochs(tmp_path) == [1]
    assert main(["train", "--resume", str(tmp_path), "--quiet"]) == 0
    assert history_epochs(tmp_path) == [1, 2] == [r["epoch"] for r in read_checkpoint(tmp_path / "last.pt")["history"]]


def test_an_interruption_before_the_first_checkpoint_does_not_advise_resume(tmp_path, sample_archive, monkeypatch, capsys):
    import ferlab.training

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ferlab.training, "fit", interrupted)
    code = main(["train", "--preset", "smoke", "--checkpoint-every", "5", "--epochs", "10", "--data", str(sample_archive),
                 "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 130 and "--resume" not in err and "nothing to resume: run the same command again" in err


def test_resume_extends_epochs_and_refuses_other_changes_by_name(tmp_path, sample_archive, sample_faces, capsys):
    config = resolve_config("smoke", overrides={"epochs": 1})
    fit(config, sample_faces, tmp_path, data_info={"source": str(sample_archive)}, progress=False, log=lambda _: None)
    assert main(["train", "--resume", str(tmp_path), "--lr", "0.5", "--batch-size", "8", "--quiet"]) == 2
    assert "it cannot change --batch-size, --lr" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path), "--epochs", "2", "--quiet"]) == 0
    last = read_checkpoint(tmp_path / "last.pt")
    assert last["epoch"] == 2 and last["config"]["epochs"] == 2 and history_epochs(tmp_path) == [1, 2]
    assert "schedule is stretched from 1 to 2 epochs" in capsys.readouterr().out


def test_resume_reuses_the_recorded_reader_options(tmp_path, sample_archive, capsys, monkeypatch):
    import tarfile

    import ferlab.training

    data = tmp_path / "data"
    with tarfile.open(sample_archive) as archive:
        archive.extractall(data, filter="data")
    (data / "fer2013" / "train" / "happy" / "Training_broken.jpg").write_bytes(b"not a jpeg")
    run_dir = tmp_path / "run"
    argv = ["train", "--preset", "smoke", "--epochs", "2", "--data", str(data / "fer2013"), "--skip-bad-rows",
            "--out", str(run_dir), "--quiet"]
    with monkeypatch.context() as patched:  # stopped after one epoch of two
        patched.setattr(ferlab.training, "fit", lambda *a, **k: fit(*a, **{**k, "stop_after": 1}))
        assert main(argv) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 0  # no --skip-bad-rows: taken from the run
    assert "skipped 1 bad entries" in capsys.readouterr().out


@pytest.mark.parametrize("flags, side", [(["--crop", "40"], 40), (["--progressive-start", "32", "--progressive-epochs", "1"], 32)])
def test_a_model_for_whole_faces_only_refuses_crops_before_anything_is_written(tmp_path, sample_archive, capsys, flags, side):
    code = main(["train", "--model", "cnn", *flags, "--data", str(sample_archive), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and f"model 'cnn' takes only whole 48x48 faces, not {side}-pixel crops or shrunk views" in err
    assert "\n" not in err and not (tmp_path / "r").exists()


def test_a_diverging_run_stops_with_an_error(tmp_path, sample_archive, capsys):
    code = main(["train", "--preset", "smoke", "--lr", "1e30", "--data", str(sample_archive), "--out", str(tmp_path / "r"),
                 "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("ferlab: error: epoch 1: the training loss became nan") and "\n" not in err


@pytest.mark.parametrize("flag, value, message", [
    ("--ema", "1.5", "ema must be in [0, 1)"), ("--weight-decay", "-1", "weight_decay must be a finite number >= 0"),
    ("--momentum", "-0.5", "momentum must be in [0, 1)"), ("--label-smoothing", "1", "label_smoothing must be in [0, 1)"),
    ("--lr", "nan", "lr must be a positive finite number"), ("--lr", "inf", "lr must be a positive finite number"),
    ("--val-fraction", "0", "val_fraction must be in (0, 1)"), ("--val-fraction", "1", "val_fraction must be in (0, 1)"),
    ("--early-stop-patience", "-1", "early_stop_patience must be an integer >= 0"),
    # the flag's option adds to the preset's, and the message names them all
    ("--model-option", "dropout=3", "model 'fastnet' cannot be built with widths=[8, 16, 16, 32], dropout=3"),
    ("--model-option", "stem=maybe", "option stem must be true or false, got 'maybe'"),
    ("--crop", "50", "crop must be a side in pixels from 24 to 48 (the whole face), got 50"),
    ("--crop", "16", "crop must be a side in pixels from 24 to 48"), ("--views", "0", "views must be at least 1, got 0"),
    ("--views", "100000", "views must be at most 64"),
    ("--hard-label-weight", "1.5", "hard_label_weight must be in [0, 1]"),
    ("--distill-temperature", "0", "distill_temperature must be a positive number up to 100, got 0.0"),
    ("--progressive-start", "50", "progressive_start must be a side in pixels from 24 to crop (48), or 0 for no progressive"),
    ("--progressive-start", "32", "progressive_epochs must be from 1 to epochs (2) with progressive_start set, got 0"),
    ("--progressive-epochs", "3", "progressive_epochs 3 needs progressive_start, the first epoch's side in pixels (24 to crop, 48)"),
    ("--seed", "99999999999999999999", "seed must be a whole number from 0 to 2**63 - 1"),  # an OverflowError after reading the data
    ("--seed", "-1", "seed must be a whole number from 0 to 2**63 - 1, got -1"),
    ("--plateau-patience", "-" + "9" * 400, "plateau_patience must be an integer >= 0"),  # a 400-digit int was an OverflowError ...
    ("--early-stop-patience", "-" + "9" * 400, "early_stop_patience must be an integer >= 0 (0 never stops early), got -99999"),  # ... cut short
    ("--distill-temperature", "1e20", "distill_temperature must be a positive number up to 100, got 1e+20"),  # T**2 overflowed
    # a student's options without teachers trained on the labels alone, without a word
    ("--distill-temperature", "2", "distill_temperature 2.0 is an option of a student, and there are no teachers (ferlab distill"),
    ("--hard-label-weight", "0.1", "hard_label_weight 0.1 is an option of a student, and there are no teachers"),
    ("--teacher-flip", None, "teacher_flip True is an option of a student, and there are no teachers"),
])
def test_bad_options_stop_before_anything_is_written(tmp_path, sample_archive, capsys, flag, value, message):
    out = tmp_path / "run"
    given = [flag] if value is None else [flag, value]
    code = main(["train", "--preset", "smoke", *given, "--data", str(sample_archive), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("ferlab: error: ") and message in err and "\n" not in err
    assert not out.exists()
