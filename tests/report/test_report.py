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
    assert [m["method"] for m in trust["methods"]] == ["Saliency (|gradient|)", "Grad-CAM", "HiResCAM", "Guided Grad-CAM", "LIME"]
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
