"""The next GPU session's work (issue 15, items 3, 6 and 7), scripted and rehearsed on the CPU.

A session gets 30 minutes of device time, 10 minutes a call, and a call carries at most 64 MiB:
the repository (18 MB with the shipped model) and the 49 MiB archive do not fit together, so the
archive travels in two parts over the first two calls, while the machine stays warm (it is given
back 30 s after a call: make the next call at once). The device has PyTorch but no Ray, Captum,
LIME or dlib, and cannot install them; every stage here needs none of them. Here:

    python benchmarks/gpu_session.py pack       # .gpu/ (git-ignored): the two parts and the checksum

then on the device, one call per stage, in this order (``carry`` what the stage names):

    1. python3 benchmarks/gpu_session.py receive .gpu/part1                           carry .gpu/part1
    2. python3 benchmarks/gpu_session.py receive .gpu/part2 .gpu/SHA256 && python3 benchmarks/gpu_session.py speed
                                                                                      carry .gpu/part2 .gpu/SHA256
    3. python3 benchmarks/gpu_session.py families    # best + best-vgg8 + best-resnet18 at once, then their ensemble
    4. python3 benchmarks/gpu_session.py distill     # the ensemble into `default` and `default-fast`, at once

``speed`` also times each family member alone and projects its 150 epochs: if they would not fit
one call at once, give the families stage fewer ``--epochs`` (and say so beside its figures). A
stage that runs out of its ``--budget`` (570 s) interrupts its runs at their last checkpoint; the
same call again resumes them. Run folders stay in ``$FERLAB_GPU_WORK`` (``/root/ferlab-gpu``) while
the machine is warm; what comes back goes to ``$OUT``: the tables (markdown), the logs and histories
(one tarball a stage) and the distilled models as fp16 checkpoints. The rehearsal on the CPU
(``tests/test_benchmarks.py``) runs every stage on the 420-face sample with ``--epochs 1``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "benchmarks")]  # no install on the device: the checkout itself

from ferlab.config import ENSEMBLES  # noqa: E402

DEFAULT_ARCHIVE = ROOT.parent / "shared" / "data" / "fer2013" / "fer2013-images.tar.xz"
PACK = Path(os.environ.get("FERLAB_GPU_PACK", ROOT / ".gpu"))  # git-ignored: it travels only when carried
PARTS = 2
ARCHIVE = "fer2013-images.tar.xz"
FAMILIES = ENSEMBLES["families"]
GRACE = 30  # seconds an interrupted run gets to stop before it is killed
# The two distilled models of item 7: the shipped `default` (best's fastnet 64..512) and
# `default-fast` (the cpu preset's lean fastnet, 1,459-1,643 faces/s on the 2-core CPU), both on
# best's recipe; the teachers' soft targets on the same augmented views.
STUDENTS = {"default": ["--student", "fastnet", "--preset", "best"],
            "default-fast": ["--student", "fastnet", "--preset", "best", "--model-option", "widths=[32,64,128,256]",
                             "--model-option", "stem=false", "--model-option", "pool_first=true"]}


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


def sha256(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def pack(args) -> None:
    """Here: the archive as PARTS files under .gpu/ and its checksum; .gpu/ is git-ignored."""
    data = read_bytes(args.archive)
    PACK.mkdir(exist_ok=True)
    size = -(-len(data) // PARTS)
    for index in range(PARTS):
        (PACK / f"part{index + 1}").write_bytes(data[index * size:(index + 1) * size])
    (PACK / "SHA256").write_text(f"{hashlib.sha256(data).hexdigest()}  {args.archive.name}\n")
    print(f"{args.archive} ({len(data) / 2 ** 20:.1f} MiB) -> {PACK}/part1..{PARTS} and SHA256; the calls: "
          f"see {Path(__file__).name}'s docstring")


def receive(args) -> None:
    """On the device: keep each part given; with all parts and the checksum, rebuild the archive,
    check it and decode it once (the later stages start from the warm cache)."""
    parts = work() / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    for path in args.parts:
        (parts / path.name).write_bytes(read_bytes(path))
    import torch

    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    print(f"device: {name}; torch {torch.__version__}; python {sys.version.split()[0]}; parts here: "
          f"{sorted(p.name for p in parts.iterdir())}")
    if not (parts / "SHA256").exists() or not all((parts / f"part{i + 1}").exists() for i in range(PARTS)):
        return
    archive = work() / ARCHIVE
    with open(archive, "wb") as whole:
        for index in range(PARTS):
            whole.write((parts / f"part{index + 1}").read_bytes())
    expected = (parts / "SHA256").read_text().split()[0]
    if sha256(archive) != expected:
        fail(f"{archive}: checksum {sha256(archive)} is not the packed {expected}; pack and send the parts again")
    from ferlab.data import load_faces

    faces = load_faces(archive)
    print(f"{archive}: checksum matches; {len(faces)} faces decoded into the cache")


def data() -> Path:
    archive = work() / ARCHIVE
    if not archive.exists():
        fail(f"{archive}: not here (a fresh machine?): make the receive calls first")
    return archive


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
    """Item 3: the compiled and CUDA-graphed training step beside eager, in one run."""
    steps = ["--steps", str(args.steps)] if args.steps else []
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "pipeline.py"), "--data", str(data()), "--preset",
                             "best", "--workers", "8", "--compile", *args.compile, *steps],
                            capture_output=True, text=True, timeout=args.budget)
    lines = [result.stdout + result.stderr[-3000:], family_projection(args.steps or 25, args.epochs)]
    (out() / "speed.txt").write_text("\n".join(lines))
    print("\n".join(lines))


def family_projection(steps: int, epochs: int | None) -> str:
    """Each family member's training images/s alone (``steps`` timed steps) and the seconds its
    epochs would take alone: whether the families stage fits one call, or needs fewer --epochs."""
    from tune import throughput

    from ferlab.config import resolve_config
    from ferlab.data import load_faces

    faces = load_faces(data())
    lines, total = ["| family member | images/s alone | epochs | seconds alone |", "| --- | --- | --- | --- |"], 0.0
    for preset in FAMILIES:
        config = resolve_config(preset, overrides={"epochs": epochs} if epochs else {})
        speed = throughput(config, faces, steps)
        seconds = config.epochs * len(faces.split("train")) / speed
        total += seconds
        lines.append(f"| {preset} | {speed:.0f} | {config.epochs} | {seconds:.0f} |")
    return "\n".join(lines + [f"all members one after another: {total:.0f} s (the families stage runs them at once)"])


def families(args) -> None:
    """Item 6: every member of the `families` ensemble at once, then the ensemble, chosen on PublicTest."""
    runs = {preset: work() / "families" / preset for preset in FAMILIES}
    todo = {preset: training_command(run_dir, ["train", "--preset", preset, "--seed", str(args.seed)], args.epochs)
            for preset, run_dir in runs.items() if not finished(run_dir)}
    report("families", runs, *run_together(todo, args.budget))
    if all(finished(run_dir) for run_dir in runs.values()):
        table = ensemble_table(list(runs.values()))
        (out() / "families-ensemble.md").write_text(table + "\n")
        print(table)


def distill(args) -> None:
    """Item 7: the families ensemble distilled into `default` and `default-fast`, both at once;
    each best checkpoint comes back as an fp16 file ready to ship."""
    teachers = [work() / "families" / preset for preset in FAMILIES]
    if not all(finished(run_dir) for run_dir in teachers):
        fail("the families stage has not finished all its members: call it again first")
    runs = {name: work() / "distill" / name for name in STUDENTS}
    todo = {name: training_command(run_dir, ["distill", *map(str, teachers), *STUDENTS[name]], args.epochs)
            for name, run_dir in runs.items() if not finished(run_dir)}
    report("distill", runs, *run_together(todo, args.budget))
    from ferlab.checkpoint import export_checkpoint, read_checkpoint

    for name, run_dir in runs.items():
        if finished(run_dir):
            export_checkpoint(read_checkpoint(run_dir / "best.pt"), out() / f"{name}.pt")


def report(stage: str, runs: dict[str, Path], codes: dict[str, int], interrupted: set[str], wall: float) -> None:
    """The finished runs' table (benchmarks/runs_table.py) and one tarball of every run's log,
    history and metrics, under $OUT."""
    done = [run_dir for run_dir in runs.values() if finished(run_dir)]
    failed = {name: code for name, code in codes.items()
              if code != 0 and name not in interrupted and not finished(runs[name])}
    lines = [f"{stage}: {', '.join(codes) or 'nothing left to run'} together in {wall:.0f} s of wall time; exit codes "
             f"{codes}" + (f"; FAILED {failed}" if failed else "")]
    if done:
        table = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "runs_table.py"), *map(str, done)],
                               capture_output=True, text=True, env=with_checkout())
        lines.append(table.stdout + table.stderr[-2000:])
    (out() / f"{stage}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    with tarfile.open(out() / f"{stage}-runs.tar.gz", "w:gz") as bundle:
        for name, run_dir in runs.items():
            for file in ("history.csv", "metrics.json"):
                if (run_dir / file).exists():
                    bundle.add(run_dir / file, arcname=f"{name}/{file}")
            if (work() / "logs" / f"{name}.log").exists():
                bundle.add(work() / "logs" / f"{name}.log", arcname=f"{name}/train.log")


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


STAGES = {"pack": pack, "receive": receive, "speed": speed, "families": families, "distill": distill}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("parts", nargs="*", type=Path, help="receive: the parts (and SHA256) carried in this call")
    parser.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE, help="pack: the archive to send")
    parser.add_argument("--budget", type=float, default=570, help="seconds a stage may train before it interrupts")
    parser.add_argument("--epochs", type=int, help="reduced epochs (the CPU rehearsal)")
    parser.add_argument("--steps", type=int, help="speed: steps timed per pipeline (default: the script's)")
    parser.add_argument("--compile", nargs="+", default=["default", "reduce-overhead"], metavar="MODE",
                        help="speed: torch.compile modes timed beside eager")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    STAGES[args.stage](args)


if __name__ == "__main__":
    main()
