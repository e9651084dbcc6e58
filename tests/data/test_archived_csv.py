"""FER2013's CSV inside an archive (Kaggle's ``fer2013.tar.gz`` and the competition's zip), built
here from the real sample's faces: the faces read back are the sample's, bit for bit."""

from __future__ import annotations

import io
import tarfile
import zipfile

import pytest
import torch

from ferlab.cli import main
from ferlab.data import load_faces
from ferlab.data.archived_csv import choose_csv
from ferlab.errors import DataError
from ferlab.labels import SPLITS
from tests.conftest import pixels_text

USAGE = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}


def challenge_csv(faces) -> bytes:
    rows = ["emotion,pixels,Usage"] + [
        f"{label},{pixels_text(image.flatten().tolist())},{USAGE[SPLITS[split]]}"
        for image, label, split in zip(faces.images, faces.labels.tolist(), faces.splits.tolist())]
    return ("\n".join(rows) + "\n").encode()


def kaggle_tar(path, members: dict[str, bytes]):
    """A gzip tar as Kaggle's challenge download lays it out: ``fer2013/<file>``."""
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            entry = tarfile.TarInfo(f"fer2013/{name}")
            entry.size = len(data)
            archive.addfile(entry, io.BytesIO(data))
    return path


def test_kaggles_tarball_reads_as_the_faces_it_was_made_from(tmp_path, sample_faces):
    path = kaggle_tar(tmp_path / "fer2013.tar.gz", {"README": b"the challenge's readme\n",
                                                    "fer2013.csv": challenge_csv(sample_faces),
                                                    "fer2013.bib": b"@inproceedings{...}\n"})
    faces = load_faces(path, use_cache=False)
    assert faces.source == str(path) and faces.official_splits
    assert torch.equal(faces.images, sample_faces.images)
    assert torch.equal(faces.labels, sample_faces.labels) and torch.equal(faces.splits, sample_faces.splits)
    assert load_faces(tmp_path, use_cache=False).source == str(path)  # a folder holding it finds it


def test_the_competitions_zip_reads_the_csv_with_the_official_split(tmp_path, sample_faces):
    path = tmp_path / "challenges-in-representation-learning.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("example_submission.csv", "id,emotion\n0,0\n")
        archive.writestr("test.csv", "pixels\n" + pixels_text([0] * 2304) + "\n")
        archive.writestr("train.csv", "emotion,pixels\n0," + pixels_text([0] * 2304) + "\n")
        archive.writestr("icml_face_data.csv", challenge_csv(sample_faces).replace(b"emotion,pixels,Usage",
                                                                                  b"emotion, pixels, Usage"))
    faces = load_faces(path, use_cache=False)
    assert torch.equal(faces.images, sample_faces.images) and torch.equal(faces.splits, sample_faces.splits)


def test_which_csv_is_read(tmp_path):
    assert choose_csv(("fer2013/README", "fer2013/fer2013.csv")) == "fer2013/fer2013.csv"
    assert choose_csv(("test.csv", "train.csv", "icml_face_data.csv")) == "icml_face_data.csv"
    assert choose_csv(("test.csv", "train.csv")) == "train.csv"
    assert choose_csv(("mine/faces.csv", "__MACOSX/mine/._faces.csv")) == "mine/faces.csv"
    assert choose_csv(("a.csv", "b.csv")) is None and choose_csv(("README",)) is None
    several = tmp_path / "several.zip"
    with zipfile.ZipFile(several, "w") as archive:
        archive.writestr("a.csv", "x\n")
        archive.writestr("b.csv", "y\n")
    with pytest.raises(DataError, match=rf"^{several}: no face images, and several CSVs \(a.csv, b.csv\): extract"):
        load_faces(several, use_cache=False)


def test_a_bad_row_names_the_archive_the_member_and_the_line(tmp_path, sample_faces, capsys):
    data = challenge_csv(sample_faces).split(b"\n")
    label, pixels, usage = data[3].split(b",")
    data[3] = b",".join([label, b"300 " + pixels.split(b" ", 1)[1], usage])  # a pixel value of 300 on line 4
    path = kaggle_tar(tmp_path / "fer2013.tar.gz", {"fer2013.csv": b"\n".join(data)})
    assert main(["evaluate", "default-fast", "--data", str(path), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == (f"ferlab: error: {path}:fer2013/fer2013.csv:4: "
                                       "pixel value 300 at position 1 is outside 0..255\n")
    faces = load_faces(path, skip_bad_rows=True, use_cache=False)
    assert faces.skipped == 1 and len(faces.ids) == len(sample_faces.ids) - 1
    assert faces.problems == (f"{path}:fer2013/fer2013.csv:4: pixel value 300 at position 1 is outside 0..255",)


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_a_tarball_cut_off_inside_the_csv_is_one_error_naming_the_member(tmp_path, sample_faces, cut):
    whole = kaggle_tar(tmp_path / "whole.tar.gz", {"fer2013.csv": challenge_csv(sample_faces)}).read_bytes()
    path = tmp_path / "fer2013.tar.gz"
    path.write_bytes(whole[: int(len(whole) * cut)])
    with pytest.raises(DataError, match=rf"^{path}(:fer2013/fer2013.csv)?: damaged"):
        load_faces(path, use_cache=False)


def test_a_compressed_csv_is_data_by_its_name(tmp_path, sample_faces):
    import gzip

    from ferlab.data import is_data_source

    path = tmp_path / "fer2013.csv.gz"
    path.write_bytes(gzip.compress(challenge_csv(sample_faces)))
    assert is_data_source(path)
    assert torch.equal(load_faces(path, use_cache=False).images, sample_faces.images)
