"""The readers under hostile and ordinary input: peak memory of reading a zip bomb, and the time
to read the full image archive (strict tar reading, checksums and caps included).

    python benchmarks/readers.py [--archive ../shared/data/fer2013/fer2013-images.tar.xz]

Each measurement runs in a fresh process (peak RSS is per process); the baseline is the same
process after importing the readers and reading nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "fer2013" / "fer2013-images.tar.xz"
READ = """
import resource, sys, time
from ferlab.data import read_image_folder
from ferlab.errors import DataError
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
started = time.perf_counter()
if sys.argv[1] != "-":
    try:
        faces = len(read_image_folder(sys.argv[1], skip_bad_rows=True))
    except DataError as error:
        faces = str(error)
print(baseline, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, time.perf_counter() - started)
"""


def measure(path: str) -> tuple[float, float, float]:
    """(baseline MB, peak MB, seconds) of reading ``path`` in a fresh process."""
    out = subprocess.run([sys.executable, "-c", READ, path], capture_output=True, text=True, check=True).stdout
    baseline, peak, seconds = map(float, out.split())
    return baseline, peak, seconds


def zip_bomb(folder: Path, member_gib: float = 1.35) -> Path:
    """A zip of about 1.4 MB whose one face-named member inflates to ``member_gib`` GiB of zeros."""
    path = folder / "bomb.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("fer/train/happy/Training_1.png", "w", force_zip64=True) as member:
            block = bytes(2 ** 20)
            for _ in range(int(member_gib * 1024)):
                member.write(block)
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--archive", default=str(ARCHIVE))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        bomb = zip_bomb(Path(folder))
        rows = [("nothing read (baseline)", "-", measure("-")),
                (f"zip bomb ({bomb.stat().st_size / 1e6:.1f} MB, 1.35 GiB member)", str(bomb), measure(str(bomb))),
                (f"full archive ({Path(args.archive).name})", args.archive, measure(args.archive))]
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; {time.strftime('%Y-%m-%d')}\n")
    print("| input | peak RSS (MB) | seconds |\n| --- | --- | --- |")
    for label, _, (baseline, peak, seconds) in rows:
        print(f"| {label} | {peak:.0f} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
