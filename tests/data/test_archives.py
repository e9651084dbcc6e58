"""Damaged archives, link members, FIFOs, broken symlinks and size caps: every entry is read or
named, never dropped (issue 11: defects 1, 2 and 6)."""

from __future__ import annotations

import bz2
import lzma
import os
import re
import tarfile

import numpy as np
import pytest

from ferlab.data import ReaderLimits, load_faces, read_image_folder
from ferlab.data.archives import open_member
from ferlab.errors import DataError
from tests.hostile import face_tree, tar_bytes, zip_bytes


@pytest.fixture
def tree():
    return face_tree(np.random.default_rng(3))


def regular(tree):
    return [(name, data, {}) for name, data in tree.items()]


def test_a_gzip_tar_corrupted_in_the_middle_is_an_error_not_a_partial_read(tmp_path, sample_archive):
    data = bytearray(sample_archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged = tmp_path / "damaged.tar.gz"
    damaged.write_bytes(data)
    with pytest.raises(DataError, match=rf"^{damaged}(:[^ ]+)?: damaged data"):
        read_image_folder(damaged)
    with pytest.raises(DataError):  # --skip-bad-rows skips bad faces, not a damaged archive
        read_image_folder(damaged, skip_bad_rows=True)


@pytest.mark.parametrize("compression", ["", "xz", "bz2"])
def test_a_damaged_tar_header_in_the_middle_names_the_archive(tmp_path, tree, compression):
    plain = bytearray(tar_bytes(regular(tree)))
    second_header = 512 + 512 * ((len(next(iter(tree.values()))) + 511) // 512)
    plain[second_header + 100] ^= 0x55  # inside the mode field: the header checksum no longer matches
    packed = {"": bytes, "xz": lzma.compress, "bz2": bz2.compress}[compression](bytes(plain))
    path = tmp_path / f"fer.tar{'.' + compression if compression else ''}"
    path.write_bytes(packed)
    with pytest.raises(DataError, match=f"damaged tar header at byte {second_header}"):
        read_image_folder(path)


def test_a_truncated_xz_tar_is_an_error(tmp_path, tree):
    data = tar_bytes(regular(tree), "xz")
    path = tmp_path / "cut.tar.xz"
    path.write_bytes(data[: len(data) - 40])
    with pytest.raises(DataError, match="damaged data"):
        read_image_folder(path)


def test_tar_links_inside_the_archive_are_read_and_links_outside_refused_by_name(tmp_path, tree):
    names = list(tree)
    members = regular(tree) + [
        ("fer/train/happy/Training_100.png", None, {"type": tarfile.LNKTYPE, "linkname": names[0]}),
        ("fer/train/sad/Training_101.png", None, {"type": tarfile.SYMTYPE, "linkname": "../happy/Training_0.png"}),
    ]
    path = tmp_path / "links.tar"
    path.write_bytes(tar_bytes(members))
    faces = read_image_folder(path)
    assert len(faces) == len(tree) + 2
    by_id = dict(zip(faces.ids, faces.images))
    assert (by_id["train/happy/Training_100.png"] == by_id["train/happy/Training_0.png"]).all()
    assert (by_id["train/sad/Training_101.png"] == by_id["train/happy/Training_0.png"]).all()

    escaping = regular(tree) + [("fer/train/sad/Training_102.png", None,
                                 {"type": tarfile.SYMTYPE, "linkname": "../../../../etc/passwd"})]
    path.write_bytes(tar_bytes(escaping))
    with pytest.raises(DataError, match=r"links.tar:fer/train/sad/Training_102.png: symbolic link pointing outside"):
        read_image_folder(path)
    skipped = read_image_folder(path, skip_bad_rows=True)
    assert len(skipped) == len(tree) and skipped.skipped == 1


def test_tar_fifo_and_dangling_hard_link_are_named(tmp_path, tree):
    path = tmp_path / "odd.tar"
    path.write_bytes(tar_bytes(regular(tree) + [
        ("fer/train/happy/Training_200.png", None, {"type": tarfile.FIFOTYPE}),
        ("fer/train/happy/Training_201.png", None, {"type": tarfile.LNKTYPE, "linkname": "/etc/passwd"}),
    ]))
    faces = read_image_folder(path, skip_bad_rows=True)
    assert faces.skipped == 2 and len(faces) == len(tree)
    assert any("Training_200.png: not a regular file" in p for p in faces.problems)
    assert any("Training_201.png: hard link to '/etc/passwd', outside the archive" in p for p in faces.problems)


def test_zip_symlinks_resolve_inside_and_are_refused_outside(tmp_path, tree):
    path = tmp_path / "links.zip"
    path.write_bytes(zip_bytes(tree, {"fer/train/sad/Training_300.png": "../happy/Training_0.png",
                                      "fer/train/sad/Training_301.png": "/etc/hostname"}))
    faces = read_image_folder(path, skip_bad_rows=True)
    assert len(faces) == len(tree) + 1 and faces.skipped == 1
    assert "train/sad/Training_300.png" in faces.ids
    assert "Training_301.png: symbolic link pointing outside the archive" in faces.problems[0]


def test_a_zip_member_with_a_bad_crc_names_the_member(tmp_path, tree):
    data = bytearray(zip_bytes({name: bytes(100) + body for name, body in tree.items()}))
    name = next(iter(tree)).encode()
    data[data.index(name) + len(name) + 5] ^= 0xFF  # inside the first member's compressed bytes
    path = tmp_path / "crc.zip"
    path.write_bytes(data)
    with pytest.raises(DataError, match=rf"crc.zip:{next(iter(tree))}: damaged zip member"):
        read_image_folder(path)


def flag_every_entry(data: bytes, local: tuple[int, int], central: tuple[int, int]) -> bytes:
    """``data`` with byte ``local[0]`` of every local header or-ed with ``local[1]`` (and
    ``central`` likewise in the central directory)."""
    data = bytearray(data)
    for signature, (offset, bits) in ((b"PK\x03\x04", local), (b"PK\x01\x02", central)):
        start = 0
        while (start := data.find(signature, start)) >= 0:
            data[start + offset] |= bits
            start += 4
    return bytes(data)


def test_an_encrypted_or_deflate64_zip_says_so_rather_than_damaged(tmp_path, sample_archive):
    """Both were "damaged zip member (RuntimeError: File <ZipInfo filename=...", cut short."""
    import io
    import zipfile

    with tarfile.open(sample_archive) as source, zipfile.ZipFile(buffer := io.BytesIO(), "w", zipfile.ZIP_DEFLATED) as packed:
        for member in source:
            if member.isfile():
                packed.writestr(member.name, source.extractfile(member).read())
    first = zipfile.ZipFile(buffer).infolist()[0].filename
    encrypted, deflate64 = tmp_path / "encrypted.zip", tmp_path / "deflate64.zip"
    encrypted.write_bytes(flag_every_entry(buffer.getvalue(), (6, 0x1), (8, 0x1)))  # general-purpose flag bit 0
    deflate64.write_bytes(flag_every_entry(buffer.getvalue(), (8, 0x1), (10, 0x1)))  # method 8 (deflate) -> 9
    for path, message in ((encrypted, "encrypted (password-protected); extract the archive with its password and read the folder"),
                          (deflate64, "compressed by zip method 9, which Python cannot read; re-pack the archive with deflate")):
        with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:{first}: {re.escape(message)}"):
            load_faces(path, skip_bad_rows=True, use_cache=False)  # an archive is never read in part
        with pytest.raises(DataError, match=re.escape(message)):  # streamed, as a CSV over 64 MiB is: was a traceback
            with open_member(path, first, ReaderLimits()) as member:
                member.read()


def test_a_zip_entry_swallowed_by_a_damaged_comment_length_is_an_error(tmp_path, tree):
    """Found by tests/data/test_fuzz.py: one flipped bit in a central-directory comment length
    made the next entry that comment, and its face vanished without a word."""
    data = bytearray(zip_bytes(tree))
    entries = [i for i in range(len(data)) if data[i:i + 4] == b"PK\x01\x02"]
    data[entries[-2] + 33] ^= 0x01  # bytes 32-33: the comment length; now 256, over the last entry
    path = tmp_path / "swallowed.zip"
    path.write_bytes(data)
    with pytest.raises(DataError, match=rf"swallowed.zip: damaged zip archive \(its end record lists {len(tree)} "
                                        rf"entries, its central directory {len(tree) - 1}\)"):
        read_image_folder(path)


def test_a_folder_with_a_broken_symlink_skips_and_counts_it(tmp_path, tree):
    root = tmp_path / "fer"
    for name, data in tree.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    os.symlink(tmp_path / "nowhere.png", root / "train" / "happy" / "Training_400.png")
    os.symlink(root / "train", root / "train" / "loop")  # a folder loop is entered once
    with pytest.raises(DataError, match=r"Training_400.png: broken symbolic link"):
        read_image_folder(root)
    faces = read_image_folder(root, skip_bad_rows=True)
    assert faces.skipped == 1 and len(faces) == len(tree)
    assert len(load_faces(root, skip_bad_rows=True)) == len(tree)  # the cache's hash walks it too


def test_a_zip_bomb_stops_at_the_member_cap_without_reading_it(tmp_path, tree):
    bomb = tmp_path / "bomb.zip"
    bomb.write_bytes(zip_bytes({**tree, "fer/train/happy/Training_500.png": bytes(50 * 2**20)}))
    assert bomb.stat().st_size < 2**20
    limits = ReaderLimits(member_bytes=2**20)
    with pytest.raises(DataError, match=r"Training_500.png: member is 50 MiB, over the readers' limit of 1 MiB"):
        read_image_folder(bomb, limits=limits)
    faces = read_image_folder(bomb, skip_bad_rows=True, limits=limits)
    assert len(faces) == len(tree) and faces.skipped == 1


def test_the_number_of_entries_is_capped_before_they_are_all_listed(tmp_path, tree, monkeypatch):
    # A 9 MiB tar.gz of a million empty members takes 25 s and 0.6 GiB (benchmarks/input_limits.py).
    empty = {f"fer/train/happy/empty{i}": b"" for i in range(20)}  # not images by name: passed over
    limits = ReaderLimits(entries=len(tree) + 10)
    folder = tmp_path / "folder"
    for name, data in {**tree, **empty}.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    zipped, tarred = tmp_path / "many.zip", tmp_path / "many.tar.gz"
    zipped.write_bytes(zip_bytes({**tree, **empty}))
    tarred.write_bytes(tar_bytes(regular({**tree, **empty}), "gz"))
    for path in (folder, tarred, zipped):
        with pytest.raises(DataError, match=rf"^{path}: holds over 16 entries, the readers' limit$"):
            read_image_folder(path, skip_bad_rows=True, limits=limits)
        assert len(read_image_folder(path, limits=ReaderLimits(entries=len(tree) + 20))) == len(tree)
    monkeypatch.setattr("zipfile.ZipFile", None)  # a zip's end record is enough to refuse it
    with pytest.raises(DataError, match="holds over 16 entries"):
        read_image_folder(zipped, limits=limits)


def test_the_total_decompressed_size_is_capped(tmp_path, tree):
    many = {f"fer/train/happy/junk{i}.txt": bytes(2**20) for i in range(5)}
    for path, data in ((tmp_path / "many.zip", zip_bytes({**tree, **many})),
                       (tmp_path / "many.tar.gz", tar_bytes(regular({**tree, **many}), "gz"))):
        path.write_bytes(data)
        with pytest.raises(DataError, match=rf"{path}: decompressed size is over the readers' limit of 4 MiB"):
            read_image_folder(path, skip_bad_rows=True, limits=ReaderLimits(total_bytes=4 * 2**20))
