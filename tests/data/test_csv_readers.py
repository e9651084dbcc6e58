from __future__ import annotations

import numpy as np
import pytest
import torch

from ferlab.data import load_faces, read_csv
from ferlab.errors import DataError
from tests.conftest import pixels_text, random_face


def write_challenge(path, rows, header="emotion,pixels,Usage"):
    lines = [header] + [f"{label},{pixels},{usage}" for label, pixels, usage in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def faces_np():
    generator = np.random.default_rng(1)
    return [random_face(generator) for _ in range(6)]


def test_challenge_csv_reads_pixels_labels_and_official_splits(tmp_path, faces_np):
    usages = ["Training", "Training", "PublicTest", "PrivateTest", "Training", "PublicTest"]
    rows = [(i % 7, pixels_text(f.flatten()), u) for i, (f, u) in enumerate(zip(faces_np, usages))]
    faces = read_csv(write_challenge(tmp_path / "fer2013.csv", rows))
    assert faces.images.dtype == torch.uint8 and faces.images.shape == (6, 48, 48)
    assert torch.equal(faces.images[3], torch.from_numpy(faces_np[3].astype(np.uint8)))
    assert faces.labels.tolist() == [0, 1, 2, 3, 4, 5]
    assert faces.split_sizes() == {"train": 3, "val": 2, "test": 1}
    assert faces.ids[0] == "line 2"  # the header is line 1


def test_icml_variant_with_leading_spaces_and_other_column_order(tmp_path, faces_np):
    lines = ["emotion, Usage, pixels"] + [f"{i},Training,{pixels_text(f.flatten())}" for i, f in enumerate(faces_np[:3])]
    path = tmp_path / "icml_face_data.csv"
    path.write_text("\n".join(lines) + "\n")
    faces = read_csv(path)
    assert faces.labels.tolist() == [0, 1, 2]
    assert torch.equal(faces.images[2], torch.from_numpy(faces_np[2].astype(np.uint8)))


def test_course_train_csv_gets_a_stratified_seeded_validation_split(tmp_path):
    generator = np.random.default_rng(2)
    lines = ["label,feature"] + [f"{i % 7},{pixels_text(random_face(generator).flatten())}" for i in range(70)]
    path = tmp_path / "train.csv"
    path.write_text("\n".join(lines) + "\n")
    first = load_faces(path, val_fraction=0.2, seed=3)
    again = load_faces(path, val_fraction=0.2, seed=3)
    other = load_faces(path, val_fraction=0.2, seed=4)
    assert first.split_sizes() == {"train": 56, "val": 14, "test": 0}
    assert first.split("val").class_counts() == {name: 2 for name in first.class_counts()}  # 20% of 10 per class
    assert torch.equal(first.splits, again.splits)
    assert not torch.equal(first.splits, other.splits)


def test_course_test_csv_is_unlabelled_with_its_ids(tmp_path, faces_np):
    lines = ["id,feature"] + [f"{100 + i},{pixels_text(f.flatten())}" for i, f in enumerate(faces_np[:3])]
    path = tmp_path / "test.csv"
    path.write_text("\n".join(lines) + "\n")
    faces = load_faces(path)
    assert faces.ids == ("100", "101", "102")
    assert faces.labels.tolist() == [-1, -1, -1]
    assert faces.split_sizes() == {"train": 0, "val": 0, "test": 3}
    assert not faces.labelled


GOOD = " ".join(["7"] * 2304)


@pytest.mark.parametrize("row, message", [
    (f"0,{' '.join(['7'] * 2303)},Training", "expected 2304 pixel values (48x48), found 2303"),
    (f"0,{' '.join(['7'] * 2305)},Training", "found 2305"),
    (f"0,-1 {' '.join(['7'] * 2303)},Training", "pixel value -1 at position 1 is outside 0..255"),
    (f"0,{' '.join(['7'] * 2303)} 256,Training", "pixel value 256 at position 2304 is outside 0..255"),
    (f"0,{' '.join(['7'] * 2000)} abc {' '.join(['7'] * 303)},Training", "non-numeric pixel value 'abc'"),
    (f"0,{' '.join(['7'] * 2303)} 7.5,Training", "non-numeric pixel value '7.5'"),
    (f"9,{GOOD},Training", "unknown label '9'"),
    (f"happyish,{GOOD},Training", "unknown label 'happyish'"),
    (f"0,{GOOD},Validation", "unknown Usage 'Validation'"),
    (f"0,{GOOD}", "expected 3 fields, found 2"),
    # a label of 5,000 digits was a ValueError from int() (Python refuses over 4,300), not a bad row
    (f"{'9' * 5000},{GOOD},Training", "unknown label '9999"),  # cut short: see the length check below
    (f"0,{GOOD},{'U' * 5000}", "unknown Usage 'UUUU"),
])
def test_bad_rows_name_file_and_line(tmp_path, row, message):
    path = tmp_path / "fer2013.csv"
    path.write_text(f"emotion,pixels,Usage\n3,{GOOD},Training\n{row}\n4,{GOOD},PublicTest\n")
    with pytest.raises(DataError) as caught:
        read_csv(path)
    assert str(caught.value).startswith(f"{path}:3: ")
    assert message in str(caught.value) and len(str(caught.value)) < len(str(path)) + 200
    skipped = read_csv(path, skip_bad_rows=True)
    assert len(skipped) == 2 and skipped.skipped == 1
    assert skipped.problems[0].startswith(f"{path}:3: ")


def test_minus_one_is_never_turned_into_255(tmp_path):
    path = tmp_path / "fer2013.csv"
    path.write_text(f"emotion,pixels,Usage\n0,{' '.join(['-1'] * 2304)},Training\n")
    with pytest.raises(DataError, match="-1"):
        read_csv(path)


def test_missing_column_and_empty_file(tmp_path):
    path = tmp_path / "fer2013.csv"
    path.write_text("emotion,Usage\n0,Training\n")
    with pytest.raises(DataError, match=rf"{path}:1: missing column"):
        read_csv(path)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match=rf"{empty}: empty file"):
        read_csv(empty)
    header_only = tmp_path / "header.csv"
    header_only.write_text("emotion,pixels,Usage\n")
    with pytest.raises(DataError, match=r"header.csv: no faces found \(a header and no rows\)$"):  # was "(empty file)"
        read_csv(header_only)


@pytest.mark.parametrize("header", ["emotion,pixels,Usage,pixels", "emotion,pixels, Usage,usage", "label,feature,Feature"])
def test_a_column_given_twice_is_one_line(tmp_path, header):
    """Two pixel columns: the last was read without a word, whichever held the faces."""
    path = tmp_path / "fer2013.csv"
    width = len(header.split(","))
    path.write_text(header + "\n" + ",".join(["0"] + [" ".join(["7"] * 2304)] * (width - 1)) + "\n")
    twice = header.split(",")[-1].strip()
    with pytest.raises(DataError, match=rf"{path}:1: column '{twice}' given twice; which one holds the data is not clear"):
        read_csv(path)


def test_every_bad_row_skipped_is_still_an_error(tmp_path):
    path = tmp_path / "fer2013.csv"
    path.write_text("emotion,pixels,Usage\n0,1 2 3,Training\n")
    with pytest.raises(DataError, match="1 bad rows skipped"):
        read_csv(path, skip_bad_rows=True)


# --- hostile CSVs (issue 11: defect 7) and the cache's keys (defect 16) ------------------------------

@pytest.fixture
def csv_text(faces_np):
    rows = [(i % 7, pixels_text(f.flatten()), u) for i, (f, u) in
            enumerate(zip(faces_np, ["Training", "Training", "PublicTest", "PrivateTest", "Training", "PublicTest"]))]
    return "emotion,pixels,Usage\n" + "".join(f"{label},{pixels},{usage}\n" for label, pixels, usage in rows)


@pytest.mark.parametrize("label", ["--3", "²", "٣", "3.0", "+-1"])
def test_odd_labels_are_one_line_errors_naming_the_line(tmp_path, csv_text, label):
    lines = csv_text.splitlines(keepends=True)
    lines[3] = label + lines[3][1:]
    path = tmp_path / "fer2013.csv"
    path.write_text("".join(lines), encoding="utf-8")
    with pytest.raises(DataError, match=r"fer2013.csv:4: unknown label"):
        read_csv(path)
    assert len(read_csv(path, skip_bad_rows=True)) == 5


def test_a_gzip_csv_is_read_whatever_its_name(tmp_path, csv_text):
    import gzip

    plain, packed = tmp_path / "plain.csv", tmp_path / "fer2013.csv"
    plain.write_text(csv_text)
    packed.write_bytes(gzip.compress(csv_text.encode()))
    assert torch.equal(read_csv(packed).images, read_csv(plain).images)


def test_utf16_with_a_byte_order_mark_is_read(tmp_path, csv_text):
    path = tmp_path / "utf16.csv"
    path.write_bytes(csv_text.encode("utf-16"))
    assert len(read_csv(path)) == 6


def test_latin1_text_names_the_line_and_the_byte(tmp_path, csv_text):
    lines = csv_text.splitlines(keepends=True)
    lines[2] = lines[2].replace("Training", "Trainé")
    path = tmp_path / "latin1.csv"
    path.write_bytes("".join(lines).encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.csv:3: not UTF-8 text \(byte 0xe9 at column \d+\)"):
        read_csv(path)
    assert read_csv(path, skip_bad_rows=True).skipped == 1


def test_binary_files_nul_bytes_and_endless_lines_are_named(tmp_path, csv_text):
    binary = tmp_path / "photo.csv"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe" + bytes(range(256)))
    with pytest.raises(DataError, match=r"photo.csv:1: header: not UTF-8 text|photo.csv:1: missing column"):
        read_csv(binary)
    nul = tmp_path / "nul.csv"
    nul.write_text(csv_text.replace("PublicTest\n", "Public\0Test\n", 1))
    with pytest.raises(DataError, match=r"nul.csv:4: (malformed CSV|unknown Usage)"):
        read_csv(nul)
    endless = tmp_path / "endless.csv"
    endless.write_text(csv_text + "0," + "1 " * 40000)
    with pytest.raises(DataError, match=r"endless.csv:8: line is longer than the readers' limit of 65536 bytes"):
        read_csv(endless)
    assert len(read_csv(endless, skip_bad_rows=True)) == 6


def test_a_byte_copy_is_reported_under_its_own_path(tmp_path, csv_text):
    first, copy = tmp_path / "first.csv", tmp_path / "elsewhere" / "copy.csv"
    copy.parent.mkdir()
    first.write_text(csv_text)
    copy.write_text(csv_text)
    assert load_faces(first).source == str(first)
    assert load_faces(copy).source == str(copy)  # same bytes: from the cache, under the path given


def test_a_txt_is_refused_even_when_its_bytes_are_cached(tmp_path, csv_text):
    from ferlab.errors import FerlabError

    (tmp_path / "fer2013.csv").write_text(csv_text)
    load_faces(tmp_path / "fer2013.csv")
    (tmp_path / "notes.txt").write_text(csv_text)
    for use_cache in (True, False):
        with pytest.raises(FerlabError, match="notes.txt: unknown data format"):
            load_faces(tmp_path / "notes.txt", use_cache=use_cache)


@pytest.mark.parametrize("ending", ["\r", "\r\n"])
def test_classic_mac_and_windows_line_endings_read_as_unix_ones(tmp_path, sample_faces, ending):
    """A CSV saved with bare CR line endings (classic Mac programs, Excel's "CSV (Macintosh)") was
    "line 1 is longer than the readers' limit"; it reads as the LF file does, line numbers too."""
    from tests.data.test_archived_csv import challenge_csv

    text = challenge_csv(sample_faces).decode()
    unix, other = tmp_path / "unix.csv", tmp_path / "other.csv"
    unix.write_bytes(text.encode())
    other.write_bytes(text.replace("\n", ending).encode())
    expected, read = read_csv(unix), read_csv(other)
    assert len(read) == len(sample_faces) == 420
    assert torch.equal(read.images, expected.images) and torch.equal(read.labels, expected.labels)
    assert torch.equal(read.splits, expected.splits) and read.ids == expected.ids
    lines = text.split("\n")
    lines[5] = lines[5].replace(",Training", ",Trainning").replace(",PublicTest", ",Trainning").replace(",PrivateTest", ",Trainning")
    other.write_bytes(ending.join(lines).encode())
    with pytest.raises(DataError, match=r"other.csv:6: .*Trainning"):
        read_csv(other)
