"""Output files written whole or not at all (``ferlab.outputs``): on a full disk each command says
which file it could not write, in one line with exit code 2, and leaves neither a half-written
file in its place nor a temporary file beside it.

The commands run as a user runs them, in a process whose file-size limit (``RLIMIT_FSIZE``) makes
the operating system refuse writes past a few KiB with EFBIG, "File too large", as a full disk
refuses them with ENOSPC: torch's zip writer, onnx, Pillow, matplotlib and OpenCV's video writer
all meet the real failure."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

from ferlab.errors import FerlabError
from ferlab.outputs import write_text, written
from ferlab.photos import demo_photos

resource = pytest.importorskip("resource")  # POSIX
LIMIT = 16 * 1024  # bytes: every output below is larger, every input smaller or only read


def run_limited(argv: list[str], tmp_path) -> subprocess.CompletedProcess:
    """``ferlab argv`` in a process that may write files of ``LIMIT`` bytes at most (the signal the
    kernel sends past it is ignored, so the write fails with EFBIG instead of killing it)."""
    def limit():
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))

    environment = {**os.environ, "FERLAB_CACHE": str(tmp_path / "cache"), "MPLCONFIGDIR": str(tmp_path / "mpl")}
    return subprocess.run([sys.executable, "-m", "ferlab", *argv], capture_output=True, text=True, timeout=600,
                          preexec_fn=limit, env=environment, check=False)


def leftovers(folder) -> list[str]:
    return sorted(path.name for path in folder.rglob(".*") if path.is_file())


@pytest.mark.parametrize("kind", ["checkpoint", "onnx", "photo", "video", "submission"])
def test_a_full_disk_is_one_line_naming_the_file_and_leaves_no_part_of_it(kind, tmp_path, sample_archive):
    out = tmp_path / "out"
    out.mkdir()
    if kind == "video":
        from tests.test_video import two_faces_scene, write_video

        write_video(tmp_path / "clip.mp4", [two_faces_scene(i % 10)[::2, ::2] for i in range(12)])
    argv, failing = {
        "checkpoint": (["export", "default-fast", "-o", str(out / "model.pt")], out / "model.pt"),
        "onnx": (["export", "default-fast", "-o", str(out / "model.onnx")], out / "model.onnx"),
        "photo": (["photo", str(demo_photos()[1]), "-o", str(out)], out / "grace_hopper-annotated.png"),
        "video": (["video", str(tmp_path / "clip.mp4"), "-o", str(out), "--quiet"], out / "clip-annotated.mp4"),
        "submission": (["predict", "default-fast", str(sample_archive), "--proba", "-o", str(out / "labels.csv")],
                       out / "labels.csv"),
    }[kind]
    if kind == "submission":  # the last good submission stays in place
        (out / "labels.csv").write_text("id,label\n0,3\n")
    result = run_limited(argv, tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    why = "OpenCV wrote 12 frames and the file holds 0: is the disk full?)" if kind == "video" else "File too large)"
    assert result.stderr.splitlines()[-1] == f"ferlab: error: {failing}: cannot write it ({why}"
    assert [line for line in result.stderr.splitlines() if "error" in line.lower() or "warn" in line.lower()] == \
        result.stderr.splitlines()[-1:]  # nothing from torch, onnx, OpenCV or FFmpeg before it
    assert leftovers(out) == []
    if kind == "submission":
        assert (out / "labels.csv").read_text() == "id,label\n0,3\n"
    else:
        assert not failing.exists()


def test_written_replaces_the_file_only_once_it_is_whole(tmp_path):
    target = tmp_path / "results.json"
    write_text(target, "good\n")
    with pytest.raises(FerlabError, match=f"^{target}: cannot write it \\(No space left on device\\)$"):
        with written(target) as temporary:
            assert temporary.parent == tmp_path and temporary.suffix == ".json" and temporary != target
            temporary.write_text("half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert target.read_text() == "good\n" and sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]
    with pytest.raises(KeyError):  # any other failure also leaves the old file and nothing beside it
        with written(target) as temporary:
            temporary.write_text("half")
            raise KeyError("boom")
    assert target.read_text() == "good\n" and sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_a_figure_takes_its_format_from_the_output_not_the_temporary_file(tmp_path):
    """The temporary file's name ends in the output's suffix, or in ``.tmp`` where it has none:
    matplotlib would read that as a format. A figure without a suffix is a PNG, as before."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ferlab.outputs import save_figure

    for name, signature in (("plain", b"\x89PNG"), ("figure.jpg", b"\xff\xd8"), ("figure.SVG", b"<?xml")):
        figure = plt.figure(figsize=(1, 1))
        save_figure(figure, tmp_path / name)
        plt.close(figure)
        assert (tmp_path / name).read_bytes().startswith(signature), name
    figure = plt.figure(figsize=(1, 1))
    with pytest.raises(FerlabError, match=r"figure.xyz: cannot write a figure as .xyz; name it .png"):
        save_figure(figure, tmp_path / "figure.xyz")
    plt.close(figure)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figure.SVG", "figure.jpg", "plain"]


def test_names_are_kept_within_what_a_file_system_holds(tmp_path):
    from ferlab.outputs import within_name_limit

    assert within_name_limit("holiday") == "holiday"
    long_a, long_b = "a" * 245, "a" * 244 + "b"
    short_a, short_b = within_name_limit(long_a), within_name_limit(long_b)
    assert len(short_a.encode()) == 200 and short_a.startswith("a" * 150) and short_a != short_b  # still unique
    emoji = within_name_limit("😀" * 80)  # 320 bytes: cut between characters, never inside one
    assert len(emoji.encode()) <= 200 and emoji.split("~")[0] == "😀" * 47
    output = tmp_path / ("c" * 250 + ".png")  # the longest name allowed, with a longer temporary beside it
    with written(output) as temporary:
        temporary.write_bytes(b"x")
    assert output.read_bytes() == b"x" and len(temporary.name.encode()) <= 255 and os.listdir(tmp_path) == [output.name]


def test_a_figure_path_replaces_only_the_figure_of_the_same_source(tmp_path):
    from PIL import Image, PngImagePlugin

    from ferlab.outputs import figure_path, figure_source

    def figure(path, source):
        info = PngImagePlugin.PngInfo()
        info.add_text("Source", source)
        Image.new("L", (4, 4)).save(path, pnginfo=info)

    assert figure_path(tmp_path, "f", "a") == tmp_path / "f.png"  # nothing there yet
    figure(tmp_path / "f.png", "a")
    assert figure_path(tmp_path, "f", "a") == tmp_path / "f.png" and figure_source(tmp_path / "f.png") == "a"
    assert figure_path(tmp_path, "f", "b") == tmp_path / "f-2.png"
    Image.new("L", (4, 4)).save(tmp_path / "f-2.png")  # a PNG without a source: not ours
    (tmp_path / "f-3.png").write_text("not an image")
    os.mkfifo(tmp_path / "f-4.png")  # never opened: it would wait for a writer
    figure(tmp_path / "f-5.png", "b")
    assert figure_path(tmp_path, "f", "b") == tmp_path / "f-5.png"
    assert figure_path(tmp_path, "f", "c") == tmp_path / "f-6.png"
    assert [figure_source(tmp_path / f"f-{n}.png") for n in (2, 3, 4)] == [None, None, None]
