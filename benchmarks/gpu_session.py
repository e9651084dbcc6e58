"""The next GPU sessions' work (issue 15, items 3, 5, 6 and 7), scripted and rehearsed on the CPU.

A session gets 15 minutes of device time (the machine's start, the transfers and the idle waits
count), 10 minutes a call, and a call carries at most 64 MiB. The checkout (21 MiB with the
shipped models) leaves about 41 MiB a call for data (``pack`` sizes the parts to what is left), so
a session's data travels in parts over its first calls, each made at once after the last (the
machine goes back 30 s after a call). The device has PyTorch but no Ray, Captum, LIME or dlib; no
stage needs them. Fifteen minutes hold one of two sessions; each call below is one ``run``
(``carry`` what it names), and every call begins with ``export FERLAB_CALL_START=$(date +%s);`` so
that each stage fits what is left of the call's ten minutes (``--budget``, by default: 570 s since then).

Session A, the compiled step and the `families` ensemble (items 3 and 6). Here, first
``python benchmarks/gpu_session.py pack`` (.gpu/, git-ignored: two parts and a MANIFEST), then:

    1. python3 benchmarks/gpu_session.py receive .gpu/part1                              carry .gpu/part1
    2. python3 benchmarks/gpu_session.py receive .gpu/part2 .gpu/MANIFEST &&
       python3 benchmarks/gpu_session.py speed && python3 benchmarks/gpu_session.py families
                                                                            carry .gpu/part2 .gpu/MANIFEST
    3. python3 benchmarks/gpu_session.py families        (only if call 2 ran out of time: it resumes)

``speed`` times the compiled and CUDA-graphed step beside eager and each family member alone.
``families`` fits the members' epochs (at most their presets' 150) into what is left of the call
from those speeds (printed; state it beside the figures), trains the three at once, combines them
with the TTA chosen on PublicTest, and sends the members back as fp16 checkpoints in pieces of at
most 15 MiB (``members.tar.1`` ...). Keep the pieces: session B distils them.

Session B, the distillation into `default` and `default-fast` (item 7). Here, first
``python benchmarks/gpu_session.py pack --members PIECES...`` (three parts: the archive and the
members), then ``receive .gpu/part1``, ``receive .gpu/part2``, and last ``receive .gpu/part3
.gpu/MANIFEST && distill``: both students at once, their epochs fitted likewise, each returned
as an fp16 checkpoint ready to ship. Where device time is left, one more call while the machine is
warm (or the same call, with ``distill --budget S && continue``): ``continue`` trains each student
a few epochs more from its best weights at a constant learning rate under a weight average, and
returns NAME-continued.pt beside NAME.pt (at most 8 files: the two stages' tables, logs and four
checkpoints); PublicTest chooses which of the two ships.

Session C, the presets at full schedules (item 5). ``pack``, ``receive .gpu/part1``, then
``receive .gpu/part2 .gpu/MANIFEST && sweep`` trains every variant of ``--sweep``
(benchmarks/tune-gpu-long.yaml: `best` with the EMA warm-up, weight decay 0.05 or Muon) at once at
its full 150 epochs (never shortened: what the call cannot finish resumes in the next ``sweep``
call, or with ``--sweep benchmarks/tune-gpu-long-mix.yaml`` its CutMix and erasing variants) and
ranks them by PublicTest alone (``sweep-NAME.md``). A winner goes into the preset
(``ferlab.config.PRESETS``) in a commit here; then session D: ``receive`` twice and ``seeds``
(``--presets fast best --seeds 0 1 2``: the six runs at once, resumable likewise) gives a table a
preset with mean ± std and the seeds' ensemble (``seeds-PRESET.md``). Runs trained at once count
each other's turns in their times: a preset's time is timed alone (``benchmarks/presets.py
--seeds 0``).

A stage that runs out of its budget interrupts its runs at their last checkpoint; the same stage
again resumes them. Run folders stay in ``$FERLAB_GPU_WORK`` (``/root/ferlab-gpu``) while the
machine is warm; what comes back goes to ``$OUT`` (at most 8 files a call): the tables (markdown),
the logs and histories (one tarball a stage) and the checkpoints. The rehearsal on the CPU
(``tests/test_benchmarks.py``) runs every session on the 420-face sample with one or two epochs.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import json
import math
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "benchmarks")]  # no install on the device: the checkout itself

from ferlab.config import ENSEMBLES  # noqa: E402

DEFAULT_ARCHIVE = ROOT.parent / "shared" / "data" / "fer2013" / "fer2013-images.tar.xz"
PACK = Path(os.environ.get("FERLAB_GPU_PACK", ROOT / ".gpu"))  # git-ignored: it travels only when carried
ARCHIVE = "fer2013-images.tar.xz"
MEMBERS = "members.tar"
CALL_BYTES = 64 * 2 ** 20    # what one call carries: the checkout and the data
MARGIN_BYTES = 2 * 2 ** 20   # for files the checkout gains before the call
PIECE_BYTES = 15 * 2 ** 20  # a file that comes back from $OUT: at most 16 MiB
CALL_SECONDS = 570          # a call's ten minutes, less a margin for the transfers back
RESERVE_SECONDS = 60        # what a training stage keeps back for its ensemble, tables and exports
FAMILIES = ENSEMBLES["families"]
GRACE = 30  # seconds an interrupted run gets to stop before it is killed
# The two distilled models of item 7: the shipped `default` (best's fastnet 64..512) and
# `default-fast` (the cpu preset's lean fastnet, 2,583 faces/s on the 2-core CPU), both on best's
# recipe; the teachers' soft targets on the same augmented views.
STUDENT_PRESET = "best"
STUDENTS = {"default": {"model": "fastnet"},
            "default-fast": {"model": "fastnet",
                             "model_options": {"widths": [32, 64, 128, 256], "stem": False, "pool_first": True}}}
# The `continue` stage: on the CPU, `default-fast` continued 8 epochs from its best weights at a
# quarter of its peak learning rate, held constant, with its weights averaged (decay 0.998 a step:
# about 4.5 epochs at batch 256, 112 steps an epoch) gained 0.2-0.8 points on PublicTest in each
# of three seeds (BENCHMARKS.md, 2026-12-05, fifth session); `best` also runs batches of 256.
CONTINUATION = {"epochs": 8, "lr_fraction": 0.25, "ema": 0.998}


def work() -> Path:
    return Path(os.environ.get("FERLAB_GPU_WORK", "/root/ferlab-gpu"))


def out() -> Path:
    folder = Path(os.environ.get("OUT", work() / "out"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def fail(message: str) -> None:
    """A stage that cannot go on: one line on stderr, exit code 2, as the CLI's bad input."""
    print(f"gpu_session: {message}", file=sys.stderr)
    sys.exit(2)


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        fail(f"{path}: cannot read ({error.strerror or error})")


def tar_of(contents: dict[str, bytes]) -> bytes:
    """An uncompressed tar of name -> bytes, in memory (the archive is compressed already)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as bundle:
        for name, payload in contents.items():
            entry = tarfile.TarInfo(name)
            entry.size = len(payload)
            bundle.addfile(entry, io.BytesIO(payload))
    return buffer.getvalue()


def files_of(whole: bytes, where: str) -> dict[str, bytes]:
    """The regular files of a tar with plain names (no folders, no links: nothing is extracted
    anywhere but where this script puts it)."""
    try:
        with tarfile.open(fileobj=io.BytesIO(whole)) as bundle:
            return {entry.name: bundle.extractfile(entry).read() for entry in bundle.getmembers()
                    if entry.isfile() and re.fullmatch(r"[\w.-]+", entry.name)}
    except tarfile.TarError as error:
        fail(f"{where}: not a tar ({error})")


def split(whole: bytes, size: int) -> list[bytes]:
    """``whole`` in as few equal parts as keep each within ``size`` bytes."""
    count = max(1, -(-len(whole) // size))
    step = -(-len(whole) // count)
    return [whole[index * step:(index + 1) * step] for index in range(count)]


def pack(args) -> None:
    """Here: the session's data (the archive; with ``--members``, also the pieces session A sent
    back, joined) as one tar in parts that fit a call beside the checkout, under .gpu/
    (git-ignored), and a MANIFEST naming the parts and the whole's checksum."""
    contents = {ARCHIVE: read_bytes(args.archive)}
    if args.members:
        contents[MEMBERS] = joined_members(args.members)
    whole = tar_of(contents)
    PACK.mkdir(parents=True, exist_ok=True)
    for stale in PACK.glob("part*"):
        stale.unlink()
    names = []
    for index, part in enumerate(split(whole, args.part_bytes or CALL_BYTES - checkout_bytes() - MARGIN_BYTES)):
        names.append(f"part{index + 1}")
        (PACK / names[-1]).write_bytes(part)
    manifest = {"parts": names, "sha256": hashlib.sha256(whole).hexdigest(), "contents": list(contents)}
    (PACK / "MANIFEST").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"{', '.join(contents)} ({len(whole) / 2 ** 20:.1f} MiB) -> {PACK}/{', '.join(names)} and MANIFEST: "
          f"{len(names)} receive calls; see {Path(__file__).name}'s docstring")


def checkout_bytes() -> int:
    """What of the checkout travels with every call: tracked files and untracked ones git does not ignore."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.split(b"\0")
    paths = [ROOT / os.fsdecode(name) for name in listed if name]
    return sum(path.stat().st_size for path in paths if path.is_file())


def joined_members(pieces: list[Path]) -> bytes:
    """The pieces ``families`` sent back (members.tar.1 ...), joined in order and checked: every
    piece there, every family member inside."""
    numbered = {}
    for piece in pieces:
        match = re.fullmatch(rf"{re.escape(MEMBERS)}\.(\d+)", piece.name)
        if not match:
            fail(f"{piece}: not a piece of {MEMBERS} (named {MEMBERS}.N, as the families stage sends them back)")
        numbered[int(match[1])] = piece
    missing = sorted(set(range(1, max(numbered) + 1)) - set(numbered))
    if missing:
        fail(f"{MEMBERS}: piece(s) {', '.join(map(str, missing))} missing among {', '.join(map(str, pieces))}")
    whole = b"".join(read_bytes(numbered[number]) for number in sorted(numbered))
    inside = files_of(whole, MEMBERS)
    absent = [f"{preset}.pt" for preset in FAMILIES if f"{preset}.pt" not in inside]
    if absent:
        fail(f"{MEMBERS}: no {', '.join(absent)} in its pieces (a last piece missing?)")
    return whole


def receive(args) -> None:
    """On the device: keep each part given; once the MANIFEST and all its parts are here, join
    them, check the checksum, unpack (the archive; the members, if any) and decode the archive
    once (the later stages start from the warm cache)."""
    parts = work() / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    for path in args.parts:
        (parts / path.name).write_bytes(read_bytes(path))
    import torch

    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    print(f"device: {name}; torch {torch.__version__}; python {sys.version.split()[0]}; parts here: "
          f"{sorted(p.name for p in parts.iterdir())}")
    if not (parts / "MANIFEST").exists():
        return
    try:
        manifest = json.loads((parts / "MANIFEST").read_text())
        names, expected = list(manifest["parts"]), str(manifest["sha256"])
    except (ValueError, KeyError, TypeError) as error:
        fail(f"{parts / 'MANIFEST'}: not a manifest written by pack ({error})")
    waiting = [part for part in names if not (parts / part).exists()]
    if waiting:
        print(f"waiting for {', '.join(waiting)}: the next receive calls")
        return
    whole = b"".join((parts / part).read_bytes() for part in names)
    if hashlib.sha256(whole).hexdigest() != expected:
        fail(f"{', '.join(names)}: checksum {hashlib.sha256(whole).hexdigest()} is not the packed {expected}; "
             "pack and send the parts again")
    unpack(files_of(whole, "the joined parts"))
    from ferlab.data import load_faces

    faces = load_faces(data())
    members = sorted(p.name for p in (work() / "members").glob("*.pt"))
    print(f"checksum matches; {len(faces)} faces decoded into the cache" + (f"; members {members}" if members else ""))


def unpack(contents: dict[str, bytes]) -> None:
    if ARCHIVE not in contents:
        fail(f"the joined parts hold no {ARCHIVE}")
    (work() / ARCHIVE).write_bytes(contents[ARCHIVE])
    if MEMBERS in contents:
        folder = work() / "members"
        folder.mkdir(exist_ok=True)
        for name, payload in files_of(contents[MEMBERS], MEMBERS).items():
            (folder / name).write_bytes(payload)


def data() -> Path:
    archive = work() / ARCHIVE
    if not archive.exists():
        fail(f"{archive}: not here (a fresh machine?): make the receive calls first")
    return archive


def stage_budget(args) -> float:
    """Seconds this stage may take: ``--budget``, or what is left of the call's CALL_SECONDS since
    $FERLAB_CALL_START (the call's first second, set by its command line)."""
    if args.budget is not None:
        return args.budget
    start = os.environ.get("FERLAB_CALL_START")
    try:
        elapsed = time.time() - float(start) if start else 0.0
    except ValueError:
        fail(f"FERLAB_CALL_START={start!r}: not a time in seconds (export FERLAB_CALL_START=$(date +%s))")
    return CALL_SECONDS - elapsed


def fitted_epochs(speeds: dict[str, float], faces_per_epoch: int, seconds: float, most: int) -> int:
    """Epochs each run gets, all alike, so that the runs would fit ``seconds`` even one after
    another at their speeds alone (images/s); at once on one GPU they take no longer. At least 1,
    at most ``most`` (their presets' schedule)."""
    per_epoch = sum(faces_per_epoch / speed for speed in speeds.values())
    return max(1, min(most, math.floor(seconds / per_epoch)))


def run_together(commands: dict[str, list[str]], budget: float) -> tuple[dict[str, int], set[str], float]:
    """Each named command as a process, all at once (they share the GPU); after ``budget`` seconds
    the ones still running are interrupted (SIGINT: a run stops at its last checkpoint, resumable).
    Returns each one's exit code; the names of those interrupted (their code is 130, or -2 when
    SIGINT came before Python's own handler was in place, or -9 after the grace): not failures;
    and the seconds they took together: less than their runs' "training s" added up, each of which
    counts the others' turns on the GPU. Each one's output is in WORK/logs/NAME.log."""
    logs = work() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    started, processes = time.monotonic(), {}
    for name, command in commands.items():
        with open(logs / f"{name}.log", "a") as log:
            processes[name] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=with_checkout(),
                                               preexec_fn=interruptible)
    while any(p.poll() is None for p in processes.values()) and time.monotonic() - started < budget:
        time.sleep(1)
    interrupted = set()
    for name, process in processes.items():
        if process.poll() is None:
            interrupted.add(name)
            print(f"{name}: out of the stage's {budget:.0f} s; interrupted (it keeps its last checkpoint, if any): "
                  "call the stage again")
            process.send_signal(signal.SIGINT)
    for process in processes.values():
        try:
            process.wait(timeout=GRACE)
        except subprocess.TimeoutExpired:
            process.kill()  # its last.pt, written atomically, is still whole
    return {name: process.wait() for name, process in processes.items()}, interrupted, time.monotonic() - started


def interruptible() -> None:
    """In a run's process before it starts: SIGINT interrupts it (a shell's background job would
    otherwise pass SIGINT on ignored, and the run would outlast the stage's budget)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def with_checkout() -> dict:
    """The environment with this checkout's ``src`` first on the path (nothing is installed there)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}


def training_command(run_dir: Path, arguments: list[str], epochs: int | None) -> list[str]:
    """`ferlab train|distill` into ``run_dir``, or `ferlab train --resume` where it has a last.pt."""
    ferlab = [sys.executable, "-m", "ferlab"]
    if (run_dir / "last.pt").exists():
        return [*ferlab, "train", "--resume", str(run_dir), "--quiet"]
    reduced = ["--epochs", str(epochs)] if epochs else []
    return [*ferlab, *arguments, "--data", str(data()), "--out", str(run_dir), "--quiet", *reduced]


def finished(run_dir: Path) -> bool:
    return (run_dir / "metrics.json").exists()


def speed(args) -> None:
    """Item 3: the compiled and CUDA-graphed training step beside eager, in one run; then each
    family member's speed alone, which ``families`` fits its epochs by."""
    steps = ["--steps", str(args.steps)] if args.steps else []
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "pipeline.py"), "--data", str(data()), "--preset",
                             "best", "--workers", "8", "--compile", *args.compile, *steps],
                            capture_output=True, text=True, timeout=max(stage_budget(args), 1))
    lines = [result.stdout + result.stderr[-3000:], projection(member_speeds(args.steps or 25))]
    (out() / "speed.txt").write_text("\n".join(lines))
    print("\n".join(lines))


def member_speeds(steps: int) -> dict[str, float]:
    """Each family member's training images/s alone (``steps`` timed steps), measured once while
    the machine is warm (WORK/speeds.json): by ``speed``, or else by ``families`` itself."""
    saved = work() / "speeds.json"
    if saved.exists():
        return json.loads(saved.read_text())
    from tune import throughput

    from ferlab.config import resolve_config
    from ferlab.data import load_faces

    faces = load_faces(data())
    speeds = {preset: throughput(resolve_config(preset), faces, steps) for preset in FAMILIES}
    saved.write_text(json.dumps(speeds))
    return speeds


def projection(speeds: dict[str, float]) -> str:
    """The members' speeds alone, and the epochs a whole call would give each."""
    from ferlab.config import resolve_config

    faces, most = training_faces(), min(resolve_config(preset).epochs for preset in speeds)
    lines = ["| family member | images/s alone | seconds an epoch alone |", "| --- | --- | --- |"]
    lines += [f"| {preset} | {speed:.0f} | {faces / speed:.1f} |" for preset, speed in speeds.items()]
    fits = fitted_epochs(speeds, faces, CALL_SECONDS - RESERVE_SECONDS, most)
    return "\n".join(lines + [f"a whole call ({CALL_SECONDS - RESERVE_SECONDS} s of training) fits {fits} of their "
                              f"{most} epochs each, one after another; the families stage runs them at once"])


@functools.cache  # asked by the projection and again by each stage's fit: one read of the cache
def training_faces() -> int:
    from ferlab.data import load_faces

    return len(load_faces(data()).split("train"))


def fit(stage: str, speeds: dict[str, float], args, most: int) -> tuple[int, str]:
    """The epochs every fresh run of a stage gets (``fitted_epochs`` over what is left of the
    call, less RESERVE_SECONDS; ``--epochs`` lowers the cap), and the line that says so."""
    seconds, cap = stage_budget(args) - RESERVE_SECONDS, min(most, args.epochs or most)
    epochs = fitted_epochs(speeds, training_faces(), seconds, cap)
    alone = ", ".join(f"{name} {speed:.0f}" for name, speed in speeds.items())
    note = (f"{stage}: {epochs} epochs each (their schedule: {most}) fit in {seconds:.0f} s of training at "
            f"{alone} images/s alone" + ("" if epochs == most else "; A SHORTER SCHEDULE THAN THE PRESETS'"))
    print(note)
    return epochs, note


def fresh_runs(runs: dict[str, Path]) -> list[str]:
    """The runs neither finished nor resumable: the ones whose epochs are fitted now."""
    return [name for name, run_dir in runs.items() if not finished(run_dir) and not (run_dir / "last.pt").exists()]


def families(args) -> None:
    """Item 6: the `families` ensemble's members at once, their epochs fitted to the budget, then
    the ensemble with the TTA chosen on PublicTest; the members go back in pieces for session B."""
    from ferlab.config import resolve_config

    runs = {preset: work() / "families" / preset for preset in FAMILIES}
    fresh, epochs, note = fresh_runs(runs), None, ""
    if fresh:
        speeds = member_speeds(args.steps or 25)
        epochs, note = fit("families", {preset: speeds[preset] for preset in fresh}, args,
                           min(resolve_config(preset).epochs for preset in fresh))
    todo = {preset: training_command(run_dir, ["train", "--preset", preset, "--seed", str(args.seed)], epochs)
            for preset, run_dir in runs.items() if not finished(run_dir)}
    report("families", runs, *run_together(todo, stage_budget(args) - RESERVE_SECONDS), note=note)
    if all(finished(run_dir) for run_dir in runs.values()):
        table = ensemble_table(list(runs.values()))
        with open(out() / "families.md", "a") as summary:
            summary.write("\n" + table + "\n")
        print(table)
        send_members(runs)


def send_members(runs: dict[str, Path]) -> None:
    """Each member's best checkpoint in fp16, in one tar, in pieces of at most PIECE_BYTES under
    $OUT (members.tar.1 ...): what session B's ``pack --members`` takes."""
    from ferlab.checkpoint import export_checkpoint, read_checkpoint

    folder = work() / "members"
    folder.mkdir(exist_ok=True)
    for preset, run_dir in runs.items():
        export_checkpoint(read_checkpoint(run_dir / "best.pt"), folder / f"{preset}.pt")
    whole = tar_of({f"{preset}.pt": (folder / f"{preset}.pt").read_bytes() for preset in runs})
    pieces = split(whole, PIECE_BYTES)
    for number, piece in enumerate(pieces, start=1):
        (out() / f"{MEMBERS}.{number}").write_bytes(piece)
    print(f"members: {len(whole) / 2 ** 20:.1f} MiB in {len(pieces)} pieces ({MEMBERS}.1..{len(pieces)}): keep them")


def distill(args) -> None:
    """Item 7: the families ensemble distilled into `default` and `default-fast`, both at once,
    their epochs fitted to the budget; each best checkpoint comes back as an fp16 file ready to ship."""
    from ferlab.config import resolve_config

    train_students("distill", args, resolve_config(STUDENT_PRESET).epochs, lambda name: [])


def continue_students(args) -> None:
    """After ``distill``, on the same warm machine: each student continued from its best weights
    at a constant CONTINUATION learning rate, answering with the running average of its weights
    (the recipe that lifted the CPU's `default-fast` on PublicTest); back as NAME-continued.pt.
    Which of the two files ships is chosen on PublicTest from the two stages' tables."""
    starts = {name: work() / "distill" / name for name in STUDENTS}
    unfinished = [name for name, run_dir in starts.items() if not finished(run_dir)]
    if unfinished:
        fail(f"continue: the distill stage has not finished {', '.join(unfinished)} on this machine: run it first")
    train_students("continue", args, CONTINUATION["epochs"], lambda name: continuation_arguments(starts[name]),
                   suffix="-continued")


def continuation_arguments(start: Path) -> list[str]:
    """``ferlab distill``'s flags that continue ``start`` as CONTINUATION says."""
    from ferlab.config import resolve_config

    lr = resolve_config(STUDENT_PRESET).lr * CONTINUATION["lr_fraction"]
    return ["--init", str(start), "--schedule", "none", "--lr", f"{lr:g}", "--ema", str(CONTINUATION["ema"])]


def train_students(stage: str, args, most: int, extra: Callable[[str], list[str]], suffix: str = "") -> None:
    """Every student of STUDENTS distilled at once from the teachers into WORK/STAGE/NAME (with
    ``extra(name)``'s flags), their epochs (at most ``most``) fitted to the budget; each finished
    one's best checkpoint goes to $OUT as NAME+SUFFIX.pt in fp16."""
    from ferlab.checkpoint import export_checkpoint, read_checkpoint

    teachers = teacher_sources()
    runs = {name: work() / stage / name for name in STUDENTS}
    fresh, epochs, note = fresh_runs(runs), None, ""
    if fresh:
        speeds = {name: student_speed(name, teachers, args.steps or 25) for name in fresh}
        epochs, note = fit(stage, speeds, args, most)
    todo = {name: training_command(run_dir, ["distill", *teachers, *student_arguments(name), *extra(name)], epochs)
            for name, run_dir in runs.items() if not finished(run_dir)}
    report(stage, runs, *run_together(todo, stage_budget(args) - RESERVE_SECONDS), note=note)
    for name, run_dir in runs.items():
        if finished(run_dir):
            export_checkpoint(read_checkpoint(run_dir / "best.pt"), out() / f"{name}{suffix}.pt")


def teacher_sources() -> list[str]:
    """The members session A sent back (received into WORK/members), else the families trained here."""
    received = [work() / "members" / f"{preset}.pt" for preset in FAMILIES]
    if all(path.exists() for path in received):
        return list(map(str, received))
    trained = [work() / "families" / preset for preset in FAMILIES]
    if all(finished(run_dir) for run_dir in trained):
        return list(map(str, trained))
    fail("no teachers: neither session A's members (pack --members, then receive) nor a finished families stage here")


def student_arguments(name: str) -> list[str]:
    """``ferlab distill``'s flags for a student of STUDENTS."""
    spec = STUDENTS[name]
    options = [flag for key, value in spec.get("model_options", {}).items()
               for flag in ("--model-option", f"{key}={json.dumps(value)}")]
    return ["--student", spec["model"], "--preset", STUDENT_PRESET, *options]


def student_speed(name: str, teachers: list[str], steps: int) -> float:
    """A student's training images/s alone, its teachers' forward passes included."""
    from tune import throughput

    from ferlab.config import resolve_config
    from ferlab.data import load_faces

    config = resolve_config(STUDENT_PRESET, overrides={**STUDENTS[name], "teachers": teachers})
    return throughput(config, load_faces(data()), steps)


def runs_table(run_dirs: list[Path]) -> str:
    table = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "runs_table.py"), *map(str, run_dirs)],
                           capture_output=True, text=True, env=with_checkout())
    return table.stdout + table.stderr[-2000:]


def report(stage: str, runs: dict[str, Path], codes: dict[str, int], interrupted: set[str], wall: float,
           note: str = "", table: Callable[[list[Path]], str] = runs_table) -> None:
    """The finished runs' table (``table``; by default runs_table.py's) and one tarball of
    every run's log, history and metrics, under $OUT."""
    done = [run_dir for run_dir in runs.values() if finished(run_dir)]
    failed = {name: code for name, code in codes.items()
              if code != 0 and name not in interrupted and not finished(runs[name])}
    lines = [f"{stage}: {', '.join(codes) or 'nothing left to run'} together in {wall:.0f} s of wall time; exit codes "
             f"{codes}" + (f"; FAILED {failed}" if failed else ""), *([note] if note else [])]
    if done:
        lines.append(table(done))
    (out() / f"{stage}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    with tarfile.open(out() / f"{stage}-runs.tar.gz", "w:gz") as bundle:
        for name, run_dir in runs.items():
            for file in ("history.csv", "metrics.json"):
                if (run_dir / file).exists():
                    bundle.add(run_dir / file, arcname=f"{name}/{file}")
            if (work() / "logs" / f"{name}.log").exists():
                bundle.add(work() / "logs" / f"{name}.log", arcname=f"{name}/train.log")


def sweep(args) -> None:
    """Item 5's choice: every variant of a sweep file (benchmarks/tune-gpu-long.yaml, say) trained
    at once at its full schedule, never shortened: a run still going when the call's time is up is
    interrupted at its last checkpoint and resumes when the stage is called again. The table ranks
    them by PublicTest alone (PrivateTest is not read here), with the TTA each chose there."""
    from ferlab.errors import FerlabError
    from ferlab.sweep import read_sweep, trial_folder, trial_overrides

    try:
        plan = read_sweep(args.sweep)
    except FerlabError as error:
        fail(str(error))
    if plan.random:
        fail(f"{args.sweep}: a random search draws its trials in Ray Tune (ferlab tune); give variants or a grid")
    folder = work() / "sweep" / args.sweep.stem
    preset = ["--preset", plan.preset] if plan.preset else []
    runs, todo = {}, {}
    for index in range(len(plan.trials)):
        label, overrides, prefix = trial_overrides(plan, index)
        run_dir = runs[label] = trial_folder(folder, prefix, label)
        config = folder / f"{prefix}.yaml"  # the variant's overrides as a config file for `ferlab train --config`
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(yaml.safe_dump(json.loads(json.dumps(overrides))))
        if not finished(run_dir):
            todo[label] = training_command(run_dir, ["train", *preset, "--config", str(config), "--seed", str(args.seed)],
                                           args.epochs)
    stage = f"sweep-{args.sweep.stem}"
    report(stage, runs, *run_together(todo, stage_budget(args) - RESERVE_SECONDS), note=SHARED_GPU, table=public_table)


def seeds(args) -> None:
    """Item 5's measurement: each preset of ``--presets`` at each seed of ``--seeds``, all at once at
    their full schedules (resumable like ``sweep``); a table per preset with mean ± std
    (benchmarks/runs_table.py) and its seeds combined as an ensemble."""
    plan = {f"{preset}-seed{seed}": (preset, seed) for preset in args.presets for seed in args.seeds}
    runs = {name: work() / "seeds" / name for name in plan}
    todo = {name: training_command(runs[name], ["train", "--preset", preset, "--seed", str(seed)], args.epochs)
            for name, (preset, seed) in plan.items() if not finished(runs[name])}
    codes, interrupted, wall = run_together(todo, stage_budget(args) - RESERVE_SECONDS)
    for preset in args.presets:
        mine = {name: runs[name] for name, (of, _) in plan.items() if of == preset}
        report(f"seeds-{preset}", mine, {name: code for name, code in codes.items() if name in mine}, interrupted, wall,
               note=SHARED_GPU)
        if len(mine) > 1 and all(finished(run_dir) for run_dir in mine.values()):
            with open(out() / f"seeds-{preset}.md", "a") as summary:
                summary.write("\n" + ensemble_table(list(mine.values())) + "\n")


# What a table of runs trained at once says of their times.
SHARED_GPU = ("the runs shared one GPU: each one's training seconds count the others' turns; a preset's time is "
              "measured alone (benchmarks/presets.py)")


def public_table(run_dirs: list[Path]) -> str:
    """Runs ranked by their best PublicTest accuracy with the TTA each chose there; PrivateTest is
    not read."""
    rows = []
    for run_dir in run_dirs:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        chosen = metrics.get("tta", {}).get("chosen", "none")
        rows.append((metrics.get("val_tta_accuracy", metrics["val_accuracy"]), metrics["val_accuracy"], chosen,
                     f"{metrics['best_epoch']}/{metrics['epochs']}", run_dir.name))
    lines = ["| run | epoch chosen | PublicTest % | TTA chosen | PublicTest % with it |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {name} | {epoch} | {100 * plain:.2f} | {tta} | {100 * best:.2f} |"
              for best, plain, tta, epoch, name in sorted(rows, reverse=True)]
    return "\n".join(lines)


def ensemble_table(run_dirs: list[Path]) -> str:
    """The members' probabilities combined, with every policy, the one chosen on PublicTest
    reported on PrivateTest (benchmarks/presets.py's rows)."""
    from presets import SPLITS, TTAS, ensemble_row, key, probabilities_of

    from ferlab.checkpoint import load_model
    from ferlab.data import load_faces

    faces = load_faces(data())
    labels = {split: faces.split(split).labels for split in SPLITS}
    row = ensemble_row([{"wall": 0.0, "labels": labels, "probabilities": probabilities_of(load_model(run_dir), faces)}
                        for run_dir in run_dirs])
    names = ", ".join(d.name for d in run_dirs)
    cells = " | ".join(f"{100 * row[key('test', tta)]:.2f} / {100 * row[key('val', tta)]:.2f}" for tta in TTAS)
    return ("| ensemble (equal weights) | TTA chosen on PublicTest | PrivateTest % with it | "
            + " | ".join(f"{tta}: PrivateTest / PublicTest %" for tta in TTAS) + " |\n"
            + "| --- " * (3 + len(TTAS)) + "|\n"
            + f"| {names} | {row['tta']} | {100 * row['test_chosen']:.2f} | {cells} |")


STAGES = {"pack": pack, "receive": receive, "speed": speed, "families": families, "distill": distill,
          "continue": continue_students, "sweep": sweep, "seeds": seeds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("parts", nargs="*", type=Path, help="receive: the parts (and MANIFEST) carried in this call")
    parser.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE, help="pack: the archive to send")
    parser.add_argument("--part-bytes", type=int, help="pack: the most data one call carries (default: 64 MiB less "
                                                       "the checkout and a 2 MiB margin)")
    parser.add_argument("--members", nargs="+", type=Path, metavar="PIECE",
                        help="pack (session B): the pieces members.tar.N that the families stage sent back")
    parser.add_argument("--budget", type=float, help=f"seconds the stage may take (default: what is left of "
                                                     f"{CALL_SECONDS} s since $FERLAB_CALL_START)")
    parser.add_argument("--epochs", type=int, help="at most this many epochs (the CPU rehearsal: 1)")
    parser.add_argument("--steps", type=int, help="steps timed per speed measurement (default: the scripts')")
    parser.add_argument("--compile", nargs="+", default=["default", "reduce-overhead"], metavar="MODE",
                        help="speed: torch.compile modes timed beside eager")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sweep", type=Path, default=ROOT / "benchmarks" / "tune-gpu-long.yaml",
                        help="sweep: the sweep file whose variants are trained (its preset and variants)")
    parser.add_argument("--presets", nargs="+", default=["fast", "best"], help="seeds: the presets measured")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds: the seeds of each")
    args = parser.parse_args()
    STAGES[args.stage](args)


if __name__ == "__main__":
    main()
