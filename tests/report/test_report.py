"""``ferlab report`` end to end on a real (short) training run, opened in headless Chromium."""

from __future__ import annotations

import json
import re

import pytest

from ferlab.cli import main
from tests.browser import chromium_page, screenshot_path


@pytest.fixture(scope="module")
def reported_run(tmp_path_factory, sample_archive):
    run = tmp_path_factory.mktemp("report") / "run"
    assert main(["train", "--preset", "smoke", "--epochs", "2", "--data", str(sample_archive), "--out", str(run), "--quiet"]) == 0
    assert main(["report", str(run), "--lime-samples", "150", "--filter-steps", "20", "--trust-faces-per-class", "1"]) == 0
    return run


def test_report_is_self_contained_and_writes_every_figure(reported_run):
    page = (reported_run / "report.html").read_text()
    for name in ("curves", "confusion-test", "reliability-test", "misclassified-test", "explanations", "filters",
                 "feature-maps", "trust-curves"):
        assert (reported_run / f"{name}.png").stat().st_size > 1000, name
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page), "the page must not load anything from the network"
    assert page.count('src="data:image/png;base64,') == 8  # with the reliability diagram
    trust = json.loads((reported_run / "trust.json").read_text())
    # The CAM heat maps at the default layer (the deepest with maps of at least 6x6) and at the last
    # layer (3x3), so that the default's choice is measured, not asserted.
    assert [m["method"] for m in trust["methods"]] == [
        "Saliency (|gradient|)", "Grad-CAM (layer 10, 6x6)", "Grad-CAM (last layer 12, 3x3)", "HiResCAM (layer 10, 6x6)",
        "HiResCAM (last layer 12, 3x3)", "Guided Grad-CAM", "LIME", "Occlusion"]
    assert all(m["verdict"] for m in trust["methods"])
    assert "How far to trust each explanation" in page and "PrivateTest (fer2013-sample.tar.gz) accuracy" in page


@pytest.mark.browser
def test_report_opens_in_headless_chromium_without_errors(reported_run, tmp_path):
    with chromium_page() as (page, errors):
        page.goto((reported_run / "report.html").resolve().as_uri())
        page.wait_for_load_state("load")
        broken = page.evaluate("Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).length")
        count = page.evaluate("document.images.length")
        screenshot = screenshot_path("report.png", tmp_path)
        page.screenshot(path=str(screenshot), full_page=True)
    assert errors == []
    assert count == 8 and broken == 0
    assert screenshot.stat().st_size > 10_000


def test_a_dense_model_gets_a_report_with_the_conv_methods_skipped_and_noted(tmp_path, sample_archive):
    """Issue 11: Grad-CAM, HiResCAM and Guided Grad-CAM look at a conv layer; a dnn has none."""
    run = tmp_path / "dnn"
    assert main(["train", "--model", "dnn", "--epochs", "1", "--batch-size", "32", "--data", str(sample_archive),
                 "--out", str(run), "--quiet"]) == 0
    assert main(["report", str(run), "--lime-samples", "60", "--filter-steps", "5", "--trust-faces-per-class", "1"]) == 0
    page = (run / "report.html").read_text()
    assert page.count("no convolutional layers") >= 1
    assert not (run / "filters.png").exists()
    trust = {m["method"]: m for m in json.loads((run / "trust.json").read_text())["methods"]}
    assert "no convolutional layers" in trust["Grad-CAM"]["verdict"]


def test_stages_can_be_skipped_and_the_history_is_the_whole_run(reported_run, tmp_path):
    out = tmp_path / "skipped"
    assert main(["report", str(reported_run), "--out", str(out), "--skip", "filters,trust", "--lime-samples", "50",
                 "--quiet"]) == 0
    assert (out / "explanations.png").exists() and (out / "report.html").exists()
    assert not (out / "filters.png").exists() and not (out / "trust.json").exists()
    page = (out / "report.html").read_text()
    assert "How far to trust" not in page and page.count('src="data:image/png;base64,') == 5
    assert ">2</b><span>epochs" in page  # the whole history of the 2-epoch run, and the epoch its weights are from
    assert main(["report", str(reported_run), "--out", str(out), "--skip", "filterz"]) == 2


@pytest.mark.parametrize("flags, message", [
    (["--lime-samples", "1"], "lime-samples 1 must be a whole number, 2..100,000"),
    (["--lime-samples", "99999999999999999999"], "lime-samples 99999999999999999999 must be a whole number, 2..100,000"),  # a traceback
    (["--filter-steps", "-3"], "filter-steps -3 must be a whole number, 1..10,000"),  # was drawn with no ascent at all
    (["--filter-steps", "99999999999999999999"], "filter-steps 99999999999999999999 must be a whole number, 1..10,000"),  # ran on
    (["--trust-faces-per-class", "0"], "trust-faces-per-class 0 must be a whole number, at least 1"),  # was an IndexError
    (["--skip", "filterz"], "cannot skip filterz; stages: explanations, filters, trust"),
])
def test_report_settings_out_of_range_are_one_line_before_any_work(flags, message, tmp_path, capsys):
    from ferlab.errors import FerlabError
    from ferlab.report.build import ReportOptions

    out = tmp_path / "out"
    assert main(["report", "default", "--out", str(out), "--data", str(tmp_path / "no-data-needed"), *flags]) == 2
    assert capsys.readouterr().err.strip() == f"ferlab: error: {message}" and not out.exists()
    with pytest.raises(FerlabError, match="must lie in"):
        ReportOptions(mask_fraction=0)


def test_a_new_method_appears_in_the_report_without_touching_the_report(reported_run, tmp_path, monkeypatch):
    """Registering a method is enough: the panels, the trust table and the page loop over the registry."""
    import torch

    from ferlab import explain

    def centre(model, images, target=None):  # a toy map: the centre of the face matters most
        y, x = torch.meshgrid(torch.arange(48.0), torch.arange(48.0), indexing="ij")
        return (-((y - 23.5) ** 2 + (x - 23.5) ** 2)).expand(images.shape[0], 1, 48, 48).clone()

    monkeypatch.setattr(explain, "_METHODS", dict(explain._METHODS))  # registered for this test only
    explain.register_method("centre", "Centre prior")(centre)
    out = tmp_path / "toy"
    assert main(["report", str(reported_run), "--out", str(out), "--skip", "filters", "--lime-samples", "50",
                 "--trust-faces-per-class", "1", "--quiet"]) == 0
    trust = {m["method"]: m for m in json.loads((out / "trust.json").read_text())["methods"]}
    assert "Centre prior" in trust
    assert trust["Centre prior"]["rho"] == pytest.approx(1.0)  # the same map for any weights: it fails the check
    assert "Centre prior" in (out / "report.html").read_text()


def test_a_run_without_a_test_split_is_reported_on_its_held_out_split(tmp_path, sample_faces, capsys):
    """The course's train.csv has no PrivateTest: the report uses the held-out (val) split."""
    import torch

    from ferlab.checkpoint import load_model
    from ferlab.report.build import ReportOptions, build_report

    no_test = sample_faces.select(torch.nonzero(sample_faces.splits != 2).flatten())
    path = build_report(tmp_path, load_model("default", device="cpu"), no_test,
                        ReportOptions(skip=("explanations", "filters", "trust"), progress=False))
    assert "no labelled test split" in capsys.readouterr().out
    assert list(tmp_path.glob("eval-val*.json")) and "Test metrics (PublicTest" in path.read_text()
