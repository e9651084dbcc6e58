from __future__ import annotations

import io
import tarfile
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from ferlab.data import load_faces, read_image_folder
from ferlab.errors import DataError
from ferlab.labels import EMOTIONS


def png_bytes(array: np.ndarray, mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8), mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def make_folder(root, entries: dict[str, bytes]):
    for relative, data in entries.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


@pytest.fixture
def entries():
    generator = np.random.default_rng(5)
    faces = {name: generator.integers(0, 256, (48, 48)) for name in ("a", "b", "c", "d")}
    return faces, {
        "fer/train/happy/Training_1.png": png_bytes(faces["a"]),
        "fer/train/sad/Training_2.png": png_bytes(faces["b"]),
        "fer/test/angry/PublicTest_3.png": png_bytes(faces["c"]),
        "fer/test/neutral/PrivateTest_4.png": png_bytes(faces["d"]),
        "fer/README.txt": b"not an image",
    }


def test_folder_zip_and_tar_give_the_same_faces(tmp_path, entries):
    faces, files = entries
    folder = read_image_folder(make_folder(tmp_path / "unpacked", files) / "fer")
    with zipfile.ZipFile(tmp_path / "fer.zip", "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    with tarfile.open(tmp_path / "fer.tar.gz", "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    for other in (read_image_folder(tmp_path / "fer.zip"), read_image_folder(tmp_path / "fer.tar.gz")):
        assert other.ids == folder.ids
        assert torch.equal(other.images, folder.images) and torch.equal(other.labels, folder.labels)
    by_id = dict(zip(folder.ids, range(len(folder))))
    i = by_id["test/angry/PublicTest_3.png"]
    assert torch.equal(folder.images[i], torch.from_numpy(faces["c"].astype(np.uint8)))
    assert EMOTIONS[int(folder.labels[i])] == "angry"
    assert folder.split_sizes() == {"train": 2, "val": 1, "test": 1}


def test_entries_passed_over_by_name_are_counted_and_named(tmp_path, entries, capsys):
    """READMEs and macOS litter are not faces, but passing over them is said: an unsuffixed
    PrivateTest face would otherwise vanish without a word. Visible names come first; the note
    survives the cache and is printed under the data line."""
    from ferlab.cli import main

    _, files = entries
    litter = {"fer/test/neutral/PrivateTest_5": files["fer/test/neutral/PrivateTest_4.png"],
              "fer/train/happy/.DS_Store": b"\0", "fer/__MACOSX/train/happy/._Training_1.png": b"\0"}
    folder = make_folder(tmp_path / "unpacked", {**files, **litter}) / "fer"
    expected = ("passed over 4 entries that are not images by name "
                "(README.txt, test/neutral/PrivateTest_5, __MACOSX/train/happy/._Training_1.png, …)",)
    assert read_image_folder(folder).notes == expected
    assert load_faces(folder).notes == load_faces(folder).notes == expected  # decoded, then from the cache
    one = make_folder(tmp_path / "one", {"fer/train/happy/Training_1.png": files["fer/train/happy/Training_1.png"],
                                         "fer/train/happy/Training_2": b"x"}) / "fer"
    assert read_image_folder(one).notes == ("passed over 1 entry that is not an image by name (train/happy/Training_2)",)
    assert read_image_folder(make_folder(tmp_path / "clean", {"t/train/sad/Training_2.png": files[
        "fer/train/sad/Training_2.png"]}) / "t").notes == ()
    assert main(["evaluate", "default", "--data", str(folder), "--out", str(tmp_path / "eval")]) == 0
    assert f"data: {folder}: {expected[0]}" in capsys.readouterr().out.splitlines()


def test_faces_of_12_bit_values_in_16_bits_are_counted_in_a_note(tmp_path, entries):
    """A folder of 16-bit faces holding 12-bit values (a lab camera's, saved unscaled) was read as
    nearly black faces without a word, and trained on. They are read as they are (one face is never
    read brighter than the next) and counted in the data's note; a PNG stating 12 bits is scaled."""
    from tests.hostile import with_significant_bits

    faces, files = entries
    wide = io.BytesIO()
    Image.fromarray((faces["a"] * 16).astype(np.uint16)).save(wide, format="PNG")  # 0..4080
    folder = make_folder(tmp_path / "unpacked", {**files, "fer/train/happy/Training_1.png": wide.getvalue(),
                                                 "fer/train/sad/Training_2.png": with_significant_bits(wide.getvalue(), 12)})
    read = read_image_folder(folder / "fer")
    assert read.notes[-1] == ("1 image(s) whose pixels could not be read as meant, the first train/happy/Training_1.png: "
                              "its 16-bit values reach only 4080 of 65535, as 12-bit data saved unscaled would, so it is "
                              "read nearly black: scale it to the full range or state its bits in a PNG sBIT chunk")
    by_id = dict(zip(read.ids, read.images))
    assert int(by_id["train/happy/Training_1.png"].max()) == 16  # 4080 of 65535: as it is, nearly black
    expected = np.rint(faces["a"] * 16 * 255 / 4095).astype(np.uint8)
    assert torch.equal(by_id["train/sad/Training_2.png"], torch.from_numpy(expected))  # its own range, as stated


def test_class_comes_from_the_folder_name_not_its_position(tmp_path):
    # Alphabetically 'neutral' is the 5th folder, but its label must be 6 (the CSV order).
    files = {f"train/{name}/Training_{i}.png": png_bytes(np.full((48, 48), i)) for i, name in enumerate(sorted(EMOTIONS))}
    faces = read_image_folder(make_folder(tmp_path, files))
    for face_id, label in zip(faces.ids, faces.labels.tolist()):
        assert face_id.split("/")[1] == EMOTIONS[label]


def test_colour_converted_to_gray_and_size_checked(tmp_path):
    colour = np.zeros((48, 48, 3))
    colour[..., 0] = 255  # pure red -> ITU-R 601 luma 76
    big = np.zeros((60, 50))
    root = make_folder(tmp_path, {"train/happy/Training_1.png": png_bytes(colour, "RGB"),
                                  "train/happy/Training_2.png": png_bytes(big)})
    with pytest.raises(DataError, match=r"Training_2.png: image is 50x60, expected 48x48 \(pass --resize"):
        read_image_folder(root)
    faces = read_image_folder(root, resize=True)
    assert faces.images.shape == (2, 48, 48)
    assert int(faces.images[0, 0, 0]) == 76


def test_unreadable_empty_and_misplaced_images_are_reported(tmp_path, entries):
    _, files = entries
    cases = {
        "fer/train/happy/Training_9.jpg": (b"\xff\xd8 definitely not a jpeg", "not an image"),
        "fer/train/happy/Training_8.jpg": (b"", "empty file"),
        "fer/train/joyful/Training_7.png": (files["fer/train/happy/Training_1.png"], "unknown class folder 'joyful'"),
    }
    for name, (data, message) in cases.items():
        root = make_folder(tmp_path / name.replace("/", "_"), {**files, name: data})
        with pytest.raises(DataError) as caught:
            read_image_folder(root / "fer")
        assert name.removeprefix("fer/") in str(caught.value) and message in str(caught.value)
        skipped = read_image_folder(root / "fer", skip_bad_rows=True)
        assert skipped.skipped == 1 and len(skipped) == 4


def test_a_face_read_twice_is_a_bad_entry_not_a_second_face(tmp_path, entries):
    """A zip or tar appended to holds two members of one name (``tar -r``; extracting keeps the
    last, reading all would count the face twice); two copies of one tree give each face id twice.
    The second is a bad entry naming the first: an error, or under --skip-bad-rows skipped and counted."""
    faces, files = entries
    name, other = "fer/train/happy/Training_1.png", png_bytes(faces["b"])
    appended = tmp_path / "appended.tar"
    with tarfile.open(appended, "w") as archive:
        for member, data in [*files.items(), (name, other)]:
            info = tarfile.TarInfo(member)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    with pytest.raises(DataError, match=f"appended.tar:{name}: a second member of this name "
                                        r"\(an archive appended to\?\); each face is read once"):
        read_image_folder(appended)
    skipped = read_image_folder(appended, skip_bad_rows=True)
    assert skipped.skipped == 1 and len(skipped) == 4 and len(set(skipped.ids)) == 4
    first = skipped.ids.index("train/happy/Training_1.png")
    assert torch.equal(skipped.images[first], torch.from_numpy(faces["a"].astype(np.uint8)))  # the first copy
    twice = tmp_path / "twice.zip"
    with zipfile.ZipFile(twice, "w") as archive:
        for member, data in files.items():
            archive.writestr(member, data)
            archive.writestr(member.replace("fer/", "copy/", 1), data)
    with pytest.raises(DataError, match="twice.zip:copy/train/happy/Training_1.png: face train/happy/Training_1.png "
                                        "again, first read from fer/train/happy/Training_1.png"):
        read_image_folder(twice)
    assert len(read_image_folder(twice, skip_bad_rows=True)) == 4


def test_truncated_archive_is_a_clear_error(tmp_path, sample_archive):
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(sample_archive.read_bytes()[:20000])
    with pytest.raises(DataError, match=rf"{broken}(:[^:]+)?: damaged"):
        read_image_folder(broken)


def test_folder_without_prefixes_gets_a_validation_split(tmp_path):
    files = {f"train/{name}/img{i}.png": png_bytes(np.full((48, 48), i)) for name in EMOTIONS for i in range(5)}
    files.update({f"test/{name}/img{i}.png": png_bytes(np.full((48, 48), i)) for name in EMOTIONS for i in range(2)})
    faces = load_faces(make_folder(tmp_path, files), val_fraction=0.2)
    assert faces.split_sizes() == {"train": 28, "val": 7, "test": 14}


def test_sample_archive_has_the_documented_counts(sample_faces):
    assert len(sample_faces) == 420
    assert sample_faces.split_sizes() == {"train": 280, "val": 70, "test": 70}
    for split, per_class in (("train", 40), ("val", 10), ("test", 10)):
        assert set(sample_faces.split(split).class_counts().values()) == {per_class}
    assert all(i.split("/")[-1].startswith({"train": "Training_", "val": "PublicTest_", "test": "PrivateTest_"}[s])
               for i, s in zip(sample_faces.ids, [("train", "val", "test")[k] for k in sample_faces.splits.tolist()]))
    assert sample_faces.images.float().std() > 20  # real faces, not a blank decode


def test_cache_returns_the_same_faces(sample_archive):
    from ferlab.data.cache import cache_dir

    first = load_faces(sample_archive)
    assert len(list(cache_dir().glob("faces-*.pt"))) == 1
    second = load_faces(sample_archive)
    assert torch.equal(first.images, second.images) and first.ids == second.ids
    assert torch.equal(first.splits, second.splits)


@pytest.mark.slow
def test_full_archive_matches_the_official_counts():
    from tests.conftest import FULL_ARCHIVE

    if not FULL_ARCHIVE.exists():
        pytest.skip(f"{FULL_ARCHIVE} not found")
    faces = load_faces(FULL_ARCHIVE)
    expected = {  # the data README's table, identical to the original fer2013.csv
        "train": [3995, 436, 4097, 7215, 4830, 3171, 4965],
        "val": [467, 56, 496, 895, 653, 415, 607],
        "test": [491, 55, 528, 879, 594, 416, 626],
    }
    for split, counts in expected.items():
        assert list(faces.split(split).class_counts().values()) == counts
    assert len(set(faces.ids)) == 35887
