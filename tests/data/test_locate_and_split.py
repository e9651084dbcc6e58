from __future__ import annotations

import pytest
import torch

from ferlab.data import find_data, stratified_val_split
from ferlab.errors import FerlabError


def test_explicit_then_environment_then_default(tmp_path, monkeypatch, sample_archive):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FerlabError, match="FER2013 not found.*--data PATH.*FERLAB_DATA"):
        find_data()
    default = tmp_path / "data" / "fer2013"
    default.mkdir(parents=True)
    (default / "fer2013.csv").write_text("emotion,pixels,Usage\n")
    assert find_data() == default / "fer2013.csv"
    monkeypatch.setenv("FERLAB_DATA", str(sample_archive))
    assert find_data() == sample_archive
    explicit = tmp_path / "train.csv"
    explicit.write_text("label,feature\n")
    assert find_data(explicit) == explicit
    with pytest.raises(FerlabError, match="no such file"):
        find_data(tmp_path / "missing.csv")


def test_shared_folder_resolves_to_the_full_archive(sample_archive):
    assert find_data(sample_archive.parent).name == "fer2013-images.tar.xz"


def test_stratified_split_takes_the_fraction_of_each_class():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 2)
    mask = stratified_val_split(labels, 0.2, seed=0)
    assert [int(mask[labels == c].sum()) for c in (0, 1, 2)] == [10, 6, 1]
    assert torch.equal(mask, stratified_val_split(labels, 0.2, seed=0))
