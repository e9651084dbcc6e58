"""What hostile inputs cost before they are refused, each case in a fresh process (peak memory is
per process):

- ``entries``: a tar.gz of N empty members (not images by name), read as a data source: the
  seconds and peak memory until it is refused (over ``ReaderLimits.entries``) or found to hold no
  face; and the same archive under a limit of N - 1.
- ``photo``: one photo of about 40 megapixels (the largest a photo may be), its faces found and
  explained as ``POST /api/predict`` does: seconds and peak memory (what ``PHOTO_SLOTS`` bounds).
- ``upload``: a multipart upload of 1 GiB sent straight to the served app (ASGI), declared with
  its Content-Length and in chunks: the MiB the app reads before it answers 413.

    python benchmarks/input_limits.py [--members 1000000] [--side 5800] [--upload-mib 1024]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.serve.test_server's ASGI driver


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def empty_members_archive(path: Path, members: int) -> Path:
    with gzip.open(path, "wb", compresslevel=1) as raw, tarfile.open(fileobj=raw, mode="w|", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo()
        for i in range(members):
            info.name = f"x/{i}"
            tar.addfile(info)
    return path


def case_entries(archive: str, limit: int) -> dict:
    from ferlab.data import ReaderLimits, read_image_folder
    from ferlab.errors import DataError

    before, started = peak_mib(), time.perf_counter()
    try:
        read_image_folder(archive, limits=ReaderLimits(entries=limit))
        outcome = "read"
    except DataError as error:
        outcome = str(error).split(": ", 1)[1]
    return {"seconds": time.perf_counter() - started, "peak_growth_mib": peak_mib() - before, "outcome": outcome}


def case_photo(side: int) -> dict:
    import io

    from PIL import Image

    from ferlab.checkpoint import load_model
    from ferlab.photos import demo_photos
    from ferlab.serve.app import predict_bytes

    loaded = load_model("default-fast")
    photo = Image.open(demo_photos()[1]).convert("RGB")
    buffer = io.BytesIO()
    photo.resize((side, side * photo.height // photo.width)).save(buffer, format="JPEG", quality=90)
    data, size = buffer.getvalue(), (side, side * photo.height // photo.width)
    del photo, buffer
    before, started = peak_mib(), time.perf_counter()
    answer = predict_bytes(loaded, data, "large.jpg", explain=True)
    return {"seconds": time.perf_counter() - started, "peak_growth_mib": peak_mib() - before,
            "outcome": f"{size[0]}x{size[1]} ({size[0] * size[1] / 1e6:.0f} MP), {len(answer['faces'])} face(s)"}


def case_upload(mib: int) -> dict:
    from ferlab.checkpoint import load_model
    from ferlab.serve.app import create_app
    from tests.serve.test_server import asgi_post

    app = create_app(load_model("default-fast"))
    started = time.perf_counter()
    declared = asgi_post(app, "/api/predict", mib, declared=mib * 2**20)
    chunked = asgi_post(app, "/api/predict", mib)
    return {"seconds": time.perf_counter() - started, "peak_growth_mib": None,
            "outcome": f"declared: {declared[0]} after {declared[2]} MiB read; in chunks: {chunked[0]} after {chunked[2]} MiB"}


def in_fresh_process(case: str, *args) -> dict:
    result = subprocess.run([sys.executable, __file__, "--case", case, *map(str, args)], capture_output=True, text=True,
                            check=True, cwd=ROOT)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--side", type=int, default=5800, help="the photo's width in pixels (5800: 39 MP, under the 40 MP limit)")
    parser.add_argument("--upload-mib", type=int, default=1024)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:  # one measurement, in this fresh process
        cases = {"entries": lambda: case_entries(args.args[0], int(args.args[1])),
                 "photo": lambda: case_photo(int(args.args[0])), "upload": lambda: case_upload(int(args.args[0]))}
        print(json.dumps(cases[args.case]()))
        return
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores; each case in a fresh process")
    with tempfile.TemporaryDirectory() as folder:
        archive = empty_members_archive(Path(folder) / "empty-members.tar.gz", args.members)
        size = archive.stat().st_size / 2**20
        rows = [(f"tar.gz of {args.members:,} empty members ({size:.1f} MiB), limit {limit:,}",
                 in_fresh_process("entries", archive, limit)) for limit in (args.members, args.members - 1)]
    rows.append((f"photo {args.side} px wide, found and explained", in_fresh_process("photo", args.side)))
    rows.append((f"upload of {args.upload_mib} MiB to /api/predict", in_fresh_process("upload", args.upload_mib)))
    print("| case | seconds | peak memory growth | outcome |\n| --- | --- | --- | --- |")
    for name, figures in rows:
        growth = figures["peak_growth_mib"]
        print(f"| {name} | {figures['seconds']:.2f} | {'-' if growth is None else f'{growth:.0f} MiB'} | "
              f"{figures['outcome'].replace('|', '/')} |")


if __name__ == "__main__":
    main()
