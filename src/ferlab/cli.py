"""The ``ferlab`` command line: parse, call the library, print. User errors become one line on
stderr and exit code 2. Every command is a function ``cmd_NAME(args) -> int`` that tests can call."""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import sys
import time
from pathlib import Path

from ferlab.errors import FerlabError, check_local
from ferlab.labels import EMOTIONS as EMOTIONS_CHOICES

TRAIN_FLAG_HELP = "overrides the preset and config file"
SHIPPED_HELP = "run folder, checkpoint file, 'default' (the shipped model) or 'default-fast' (its faster student for CPUs)"
ANSWERS_HELP = SHIPPED_HELP.replace(" or 'default-fast'", ", 'default-fast'") + \
    ", or an ONNX graph of ferlab export (runs in onnxruntime)"


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, as for every other user error
        self.exit(2, f"ferlab: error: {message} (see '{self.prog} --help')\n")


def add_data_arguments(parser: argparse.ArgumentParser, source: bool = True) -> None:
    if source:
        parser.add_argument("--data", help="FER2013 source: fer2013.csv, train.csv/test.csv, an image folder or its "
                                           ".zip/.tar.*; default: $FERLAB_DATA, then data/fer2013, then ../shared/data/fer2013")
    parser.add_argument("--resize", action="store_true", help="resize images that are not 48x48 instead of refusing them")
    parser.add_argument("--skip-bad-rows", action="store_true", help="skip and count malformed rows/images instead of stopping")
    parser.add_argument("--no-cache", action="store_true", help="decode the source again instead of using the cache")


def whole_number(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def port_number(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (1..65535)")
    return int(text)


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="where the model runs: auto (the GPU when there is one, "
                                                         "else the CPU; default), cpu, cuda or cuda:K")


def add_layer_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--layer", help="conv layer for Grad-CAM-style methods: a name of 'ferlab summary MODEL' "
                                        "or 'last' (default: the deepest with maps at least 6x6)")


def add_tta_argument(parser: argparse.ArgumentParser) -> None:
    from ferlab.tta import TTA_POLICIES

    parser.add_argument("--tta", nargs="?", const="flip", default="none", choices=list(TTA_POLICIES),
                        help="test-time augmentation: average the logits of several views of each face "
                             "(flip: the face and its mirror image, the default for a bare --tta; flip-zoom: "
                             "also zoomed in and out by 10%%, 6 views; ten-crop: four corner and the centre "
                             "windows, each mirrored)")


def load_data(args, *, val_fraction: float = 0.1, seed: int = 0, explicit: str | None = None,
              recorded: dict | None = None):
    """The faces of --data (or ``explicit``), read with the flags, or with the reader options a
    run recorded (``recorded``: its data entry) where those ask for more."""
    from ferlab.data import find_data, load_faces

    recorded = recorded or {}
    source = find_data(explicit if explicit is not None else getattr(args, "data", None))
    started = time.perf_counter()
    faces = load_faces(source, resize=args.resize or bool(recorded.get("resize")),
                       skip_bad_rows=args.skip_bad_rows or bool(recorded.get("skip_bad_rows")),
                       val_fraction=val_fraction, seed=seed, use_cache=not args.no_cache)
    sizes = ", ".join(f"{k} {v}" for k, v in faces.split_sizes().items())
    print(f"data: {source} — {len(faces)} faces ({sizes}) in {time.perf_counter() - started:.1f}s")
    if faces.skipped:
        print(f"data: skipped {faces.skipped} bad entries (--skip-bad-rows); first: {faces.problems[0]}")
    for note in faces.notes:
        print(f"data: {source}: {note}")
    return faces


def load_data_for(args, loaded):
    """Data for a trained model: --data, else the source it was trained on if still there, else
    the usual search ($FERLAB_DATA, the default folders)."""
    recorded = loaded.checkpoint.get("data", {})
    saved = recorded.get("source")
    explicit = getattr(args, "data", None) or (saved if saved and Path(saved).exists() else None)
    return load_data(args, val_fraction=loaded.config.val_fraction, seed=loaded.config.seed, explicit=explicit,
                     recorded=recorded if explicit == saved else None)


def output_dir(args, kind: str) -> Path:
    """Where a command on a trained model writes: --out, else the run folder itself, else (for a
    checkpoint file or the shipped model) runs/<kind>-<name>, numbered on where that holds another
    model's figures. A folder holds one model's figures: --out naming another run's folder (or
    another model's outputs) is refused, as its metrics.json and eval-*.json would take this one's."""
    from ferlab.checkpoint import is_run_folder, is_shipped_name, resolve_checkpoint
    from ferlab.runs import check_owner, claim_folder, folder_owner, model_identity, writable_folder

    model = model_identity(resolve_checkpoint(args.run, getattr(args, "checkpoint", "best")),
                           str(args.run) if is_shipped_name(args.run) else None)
    if getattr(args, "out", None):
        path = Path(args.out)
        check_owner(path, model, args.run)
    elif is_run_folder(args.run):
        path = Path(args.run)
    else:
        base, number = Path("runs") / f"{kind}-{Path(str(args.run)).stem}", 1
        path = base
        while folder_owner(path) not in (None, model):  # runA/best.pt and runB/best.pt: eval-best, eval-best-2
            number += 1
            path = base.with_name(f"{base.name}-{number}")
    folder = writable_folder(path)
    claim_folder(folder, model)
    return folder


def cmd_models(args) -> int:
    from ferlab.models import build_model, count_parameters, describe_model, list_models

    names = list_models()
    width = max(len("model"), *map(len, names))  # the column fits the longest name
    print(f"{'model':<{width}} {'parameters':>12}  description")
    for name in names:
        print(f"{name:<{width}} {count_parameters(build_model(name)):>12,}  {describe_model(name)}")
    return 0


def cmd_summary(args) -> int:
    from ferlab.checkpoint import SHIPPED_MODELS, load_model
    from ferlab.models import build_model, list_models
    from ferlab.models.summary import format_summary

    if args.model in list_models():
        print(format_summary(args.model, build_model(args.model)))
    elif args.model in SHIPPED_MODELS or Path(args.model).exists():
        loaded = load_model(args.model, device="cpu", graphs=True)
        # a graph has no modules to tabulate: its contract instead
        print(loaded.describe() if loaded.is_graph else format_summary(f"{args.model} ({loaded.config.model})", loaded.model))
    else:
        raise FerlabError(f"unknown model {args.model!r}; available: {', '.join(list_models())}, "
                          f"{', '.join(map(repr, SHIPPED_MODELS))}, a run folder or a checkpoint file")
    return 0


def train_overrides(args) -> dict:
    from ferlab.config import FIELDS, parse_yaml

    overrides = {name: getattr(args, name, None) for name in FIELDS if name != "model_options"}
    if args.model_option:
        options = {}
        for item in args.model_option:
            key, sep, value = item.partition("=")
            if not sep:
                raise FerlabError(f"--model-option {item!r}: expected KEY=VALUE")
            options[key.strip()] = parse_yaml(value, f"--model-option {item!r}", lines=False)
        overrides["model_options"] = options
    return overrides


def fine_tuning(args) -> tuple[str | None, str | None, dict]:
    """(preset, config file, overrides) for resolve_config. With --init, the architecture comes
    from that model, the preset defaults to 'finetune', and images of any size are resized."""
    overrides = train_overrides(args)
    if not args.init:
        return args.preset, args.config, overrides
    from ferlab.checkpoint import read_checkpoint, resolve_checkpoint
    from ferlab.config import config_from_dict

    source = config_from_dict(read_checkpoint(resolve_checkpoint(args.init))["config"])  # no model built for this
    # options that restate the starting model's own (a student's flags given again) change nothing
    changed = {k: v for k, v in (overrides.get("model_options") or {}).items() if source.model_options.get(k, object()) != v}
    if args.model not in (None, source.model) or changed:
        raise FerlabError(f"--init {args.init} is a {source.model} {source.model_options}; its architecture cannot change"
                          + (f" (asked: {changed})" if changed else ""))
    args.resize = True
    print(f"fine-tuning {args.init} ({source.model}); faces of any size are resized to 48x48")
    return args.preset or "finetune", args.config, {**overrides, "model": source.model, "model_options": source.model_options}


def resumed_run(args):
    """(config, faces, run folder, data entry) of ``--resume RUN``: the recorded run, extended with
    --epochs if asked; any other training flag is refused by name."""
    from ferlab.lifecycle import resume_config

    changed = sorted(k for k, v in train_overrides(args).items() if v is not None and k != "epochs")
    state, config, notes = resume_config(Path(args.resume), args.epochs,
                                         changed + [f for f in ("preset", "config") if getattr(args, f)])
    run_dir, data_info = Path(args.resume), state["data"]
    print("\n".join(notes + [f"resuming {run_dir} after epoch {state['epoch']} of {config.epochs}"]))
    faces = load_data(args, val_fraction=config.val_fraction, seed=config.seed,
                      explicit=args.data or data_info["source"], recorded=data_info)
    return config, faces, run_dir, data_info


def new_run(args):
    """(config, faces, run folder, data entry) of a new run; every option is checked before
    anything is written."""
    from ferlab.config import resolve_config, smallest_view
    from ferlab.lifecycle import check_new_run_folder, start_run
    from ferlab.device import choose_device
    from ferlab.training import check_training_faces, cpu_warnings

    config = resolve_config(*fine_tuning(args))
    for warning in cpu_warnings(args.preset, config, choose_device(config.device).type):
        print(f"ferlab: warning: {warning}", file=sys.stderr)
    if config.teachers:
        from ferlab.distill import check_teachers

        # a missing or mismatched teacher fails before a run folder exists
        check_teachers(config.teachers, smallest_view(config))
    if config.init:
        from ferlab.training import read_initial_checkpoint

        read_initial_checkpoint(config)  # starting weights of another architecture fail before a run folder exists
    if args.out:
        check_new_run_folder(Path(args.out))  # a used or unwritable --out fails before the data is read
    faces = load_data(args, val_fraction=config.val_fraction, seed=config.seed)
    check_training_faces(faces)  # before the run folder: test faces alone left a folder of its config.yaml
    data_info = {"source": faces.source, "resize": args.resize, "skip_bad_rows": args.skip_bad_rows,
                 "skipped": faces.skipped, "sizes": faces.split_sizes()}
    run_dir = start_run(config, data_info, Path(args.out) if args.out else None, Path(args.runs))
    print(f"run folder: {run_dir}")
    return config, faces, run_dir, data_info


def cmd_train(args) -> int:
    from ferlab.lifecycle import train_run

    config, faces, run_dir, data_info = resumed_run(args) if args.resume else new_run(args)
    try:
        results = train_run(config, faces, run_dir, data_info=data_info, resume=bool(args.resume), progress=not args.quiet)
    except KeyboardInterrupt:
        resumable = (run_dir / "last.pt").exists()
        print(f"\ninterrupted; continue with: ferlab train --resume {run_dir}" if resumable else
              f"\ninterrupted before the first checkpoint (last.pt is written every {config.checkpoint_every} "
              "epoch(s)); nothing to resume: run the same command again", file=sys.stderr)
        return 130
    print(f"done: best epoch {results['best_epoch']}, {faces.split_title('val')} {accuracy_or_none(results.get('val_accuracy'))}, "
          f"{faces.split_title('test')} {accuracy_or_none(results.get('test_accuracy'))}, "
          f"{chosen_tta(results)}training {results['train_seconds']:.0f}s{teaching_time(results)}; run folder {run_dir}")
    return 0


def chosen_tta(results: dict) -> str:
    """The done line's words on the test-time augmentation chosen on PublicTest, unless none won."""
    if "val_tta_accuracy" not in results:
        return ""
    return (f"with {results['tta']['chosen']} TTA (chosen on the first) {results['val_tta_accuracy']:.4f} / "
            f"{accuracy_or_none(results.get('test_tta_accuracy'))}, ")


def accuracy_or_none(accuracy: float | None) -> str:
    """An accuracy for the done line, or words where the data had no faces to measure it on (it
    printed nan)."""
    return "no faces in the data" if accuracy is None else f"{accuracy:.4f}"


def teaching_time(results: dict) -> str:
    """The done line's words on training time that is not this run's own: the teachers' and the
    starting weights'."""
    parts = [(results[key], what) for key, what in (("teachers_train_seconds", "the teachers"),
                                                    ("init_train_seconds", "the starting weights")) if key in results]
    return "".join(f" (+ {seconds:.0f}s training {what})" if seconds is not None else f" (+ {what}' training, unrecorded)"
                   for seconds, what in parts)


def cmd_calibrate(args) -> int:
    from ferlab.calibration import calibrate_checkpoint, describe_calibration
    from ferlab.checkpoint import is_run_folder, load_model, resolve_checkpoint
    from ferlab.runs import check_not_an_input, check_suffix, writable_file

    source = resolve_checkpoint(args.run, args.checkpoint)
    in_place = is_run_folder(args.run)
    if args.output is None and not in_place:
        raise FerlabError(f"{args.run}: name the calibrated checkpoint to write with -o (only a run folder's "
                          "checkpoint is calibrated in place)")
    output = writable_file(Path(args.output)) if args.output else source
    check_suffix(output, ".pt", "calibrate writes a checkpoint")
    if not in_place:  # -o of default-fast's own file rewrote the shipped model with the sample's temperature
        check_not_an_input(output, [source])
    loaded = load_model(source, device=args.device)
    calibrated = calibrate_checkpoint(loaded, load_data_for(args, loaded), output)
    print(describe_calibration(calibrated.checkpoint["calibration"]))
    print(f"wrote {output}")
    return 0


def cmd_evaluate(args) -> int:
    from ferlab.checkpoint import load_model
    from ferlab.runs import data_tag, evaluate_split, evaluation_entry, evaluation_name, read_json, write_json

    loaded = load_model(args.run, args.checkpoint, args.device, graphs=True)
    loaded.check_tta(args.tta)  # before the data is read
    run_dir = output_dir(args, "eval")
    faces = load_data_for(args, loaded)
    tag = data_tag(faces.source, loaded.checkpoint.get("data", {}).get("source"))
    splits = ("val", "test") if args.split == "both" else (args.split,)
    summary = read_json(run_dir / "metrics.json")
    for split in splits:
        result = evaluate_split(loaded, faces, split, run_dir, tta=args.tta, tag=tag, progress=True)
        if not tag:  # the model's own data: the keys a run's metrics.json has always had
            summary[f"{split}_accuracy" if args.tta == "none" else f"{split}_tta_{args.tta}_accuracy"] = result["accuracy"]
        summary.setdefault("evaluations", {})[result["name"]] = evaluation_entry(result)
        print(result["report"])
    write_json(run_dir / "metrics.json", summary)
    names = ", ".join(f"eval-{evaluation_name(split, args.tta, tag)}.json" for split in splits)
    print(f"wrote {names} with their confusion-*.png and misclassified-*.png to {run_dir}")
    return 0


def predict_inputs(args) -> tuple[list[str], list, int]:
    """Ids and (N, 48, 48) faces of every input (FER2013 data, or face images and folders of them),
    and how many inputs (image files, folders without one) could not be read (each named on stderr)."""
    from ferlab.api import file_notes, read_face_files, stretched_note
    from ferlab.data import is_data_source
    from ferlab.photo_batch import expand_inputs

    if args.split != "all" and all(Path(item).exists() and not is_data_source(Path(item)) for item in args.inputs):
        raise FerlabError(f"--split {args.split}: the inputs are face images, which belong to no split; "
                          "--split picks faces of a FER2013 source")  # it was passed over without a word
    ids, batches, failed, stretched, noted = [], [], 0, [], []
    for item in args.inputs:
        if is_data_source(Path(item)):
            faces = load_data(args, explicit=item)
            faces = faces if args.split == "all" else faces.split(args.split)
            ids, batches = ids + list(faces.ids), batches + [faces.images]
            continue
        found = expand_inputs([item])
        read = read_face_files(found.paths)
        failed += say_problems(found.problems + read.problems, found.notes)
        ids, batches = ids + read.ids, batches + [read.faces]
        stretched, noted = stretched + read.stretched, noted + read.notes
    say_problems([], stretched_note(stretched) + file_notes(noted))
    return ids, batches, failed


def say_problems(problems: list[str], notes: list[str] = ()) -> int:
    """Each input that could not be read as one error line, and each note, on stderr; returns
    how many could not be read."""
    for problem in problems:
        print(f"ferlab: error: {problem}", file=sys.stderr)
    for note in notes:
        print(f"ferlab: note: {note}", file=sys.stderr)
    return len(problems)


def cmd_predict(args) -> int:
    import torch

    from ferlab.checkpoint import load_model
    from ferlab.runs import check_not_an_input, check_suffix, writable_file, write_submission

    output = writable_file(Path(args.output))
    check_not_an_input(output, args.inputs)
    check_suffix(output, ".csv", "predict writes a CSV (id,label)")
    loaded = load_model(args.run, args.checkpoint, args.device, graphs=True)
    loaded.check_tta(args.tta)  # before the inputs are read
    ids, batches, failed = predict_inputs(args)
    if not ids:  # a typo must not replace yesterday's submission with an empty one
        raise FerlabError(f"{output}: not written: " + ("no input could be read" if failed else
                          "the inputs hold no faces" + (f" in the {args.split} split" if args.split != "all" else "")))
    probabilities = loaded.probabilities(torch.cat(batches), tta=args.tta, progress="labelling")  # calibrated, as everywhere
    write_submission(output, ids, probabilities.argmax(1), probabilities if args.proba else None)
    print(f"wrote {len(ids)} predictions to {output}" + (f"; {failed} input(s) could not be read" if failed else ""))
    return 2 if failed else 0


def cmd_ensemble(args) -> int:
    from ferlab.checkpoint import check_distinct_models, load_model, resolve_checkpoint, save_checkpoint
    from ferlab.ensemble import ensemble_payload, evaluate_ensemble
    from ferlab.runs import (check_not_an_input, check_owner, check_suffix, claim_folder, ensemble_identity, new_run_dir,
                             writable_file, writable_folder)

    if len(args.runs) < 2:
        raise FerlabError("an ensemble needs at least two runs")
    check_distinct_models(args.runs, "members of an ensemble")
    output = writable_file(Path(args.output)) if args.output else None
    if output:
        check_not_an_input(output, [resolve_checkpoint(run) for run in args.runs])
        check_suffix(output, ".pt", "ensemble -o writes one checkpoint of its members")
    members = [load_model(run, device=args.device, graphs=True) for run in args.runs]
    graphs = [str(run) for run, member in zip(args.runs, members) if member.is_graph]
    if output and graphs:  # ensemble.pt holds its members' weights; a graph's stay inside onnxruntime
        raise FerlabError(f"{graphs[0]}: -o writes the members' weights into one model, and an ONNX graph's cannot be "
                          "read out; give the checkpoints it was exported from (the evaluation takes graphs)")
    identity = ensemble_identity(args.runs)
    if args.out:
        check_owner(Path(args.out), identity, "this ensemble")
    faces = load_data_for(args, members[0])
    out = writable_folder(Path(args.out)) if args.out else new_run_dir(Path("runs"), "ensemble")
    claim_folder(out, identity)
    summary = evaluate_ensemble(dict(zip(map(str, args.runs), members)), faces, out,
                                fit=args.weights == "fit", tta=args.tta, log=print)
    weights = summary["weights"]
    if output:
        save_checkpoint(output, ensemble_payload(dict(zip(map(str, args.runs), members)),
                                                 [1.0] * len(members) if weights == "equal" else weights))
        print(f"wrote {output}: one model that every command and ferlab.load accept")
    described = "equal weights" if weights == "equal" else \
        "weights fitted on PublicTest: " + ", ".join(f"{w:.2f}" for w in weights)
    print(f"ensemble of {len(members)} ({described}): PublicTest {summary['val_accuracy']:.4f}, "
          f"PrivateTest {summary['test_accuracy']:.4f}; wrote {out}")
    return 0


def cmd_export(args) -> int:
    from ferlab.checkpoint import read_checkpoint, resolve_checkpoint
    from ferlab.export import export_format, export_model
    from ferlab.runs import check_not_an_input, writable_file

    output = Path(args.output)
    export_format(output)  # before any work: the format follows the suffix
    writable_file(output)
    check_not_an_input(output, [resolve_checkpoint(args.run, args.checkpoint)])
    if args.int8:
        return export_int8_command(args, output)
    given = [flag for flag, value in (("--calibration-faces", args.calibration_faces), ("--data", args.data),
                                      ("--resize", args.resize), ("--skip-bad-rows", args.skip_bad_rows),
                                      ("--no-cache", args.no_cache)) if value]
    if given:  # a float export reads no faces: they were passed over without a word
        raise FerlabError(f"{given[0]}: only --int8 reads faces (to calibrate and check the 8-bit graph); "
                          "a float export reads none")
    kind = export_model(read_checkpoint(resolve_checkpoint(args.run, args.checkpoint)), output)
    described = {".pt": "ferlab checkpoint, float16 weights", ".onnx": "ONNX: uint8 faces in, logits and probabilities out"}
    print(f"wrote {output} ({output.stat().st_size / 2**20:.1f} MiB, {described[kind]})")
    return 0


def export_int8_command(args, output: Path) -> int:
    from ferlab.checkpoint import load_model
    from ferlab.export import export_int8

    if output.suffix.lower() != ".onnx":
        raise FerlabError(f"{output}: --int8 writes an ONNX graph; name the file *.onnx")
    loaded = load_model(args.run, args.checkpoint, "cpu")
    options = {"calibration_faces": args.calibration_faces} if args.calibration_faces else {}
    faces = load_data_for(args, loaded)
    print(f"quantising {args.run} to int8: export, calibration on Training faces, then both graphs on "
          f"{faces.split_sizes()['val']:,} PublicTest faces (seconds to a minute on a CPU)", flush=True)
    check = export_int8(loaded.checkpoint, output, faces, **options)
    print(f"wrote {output} ({output.stat().st_size / 2**20:.1f} MiB, ONNX int8: uint8 faces in, logits and "
          f"probabilities out); {check.describe()}")
    return 0


def cmd_photo(args) -> int:
    from ferlab.checkpoint import load_model
    from ferlab.photo_batch import expand_inputs, process_photos
    from ferlab.photos import check_map_request, demo_photos
    from ferlab.runs import check_owner, writable_folder

    if not args.inputs and not args.demo:
        raise FerlabError("give photos or folders to read, or --demo")
    check_owner(Path(args.output))  # a photo named metrics.jpg would replace a run's metrics.json
    out = writable_folder(Path(args.output))
    loaded = load_model(args.model, device=args.device, graphs=True)
    check_map_request(loaded, args.explain, args.layer)  # a wrong --layer is one line before the first photo
    loaded.check_tta(args.tta)  # a policy the model cannot take is one line, not an error per photo
    found = expand_inputs(args.inputs, outputs_in=out)
    say_problems([], found.notes)
    summary = process_photos(loaded, (demo_photos() if args.demo else []) + found.paths, out, model_name=str(args.model),
                             explain=args.explain, tta=args.tta, mode=args.mode, layer=args.layer,
                             detection=detection_of(args), warn=lambda message: say_problems([message]),
                             unread=found.problems, progress=not args.quiet, crops=args.crops)
    failed = summary["failed"]
    print(f"wrote {len(summary['photos'])} results to {out}" + (f"; {failed} input(s) could not be read" if failed else ""))
    return 2 if failed else 0


def cmd_video(args) -> int:
    from ferlab.checkpoint import load_model
    from ferlab.photos import check_map_request
    from ferlab.video import VideoOptions, describe_summary, frames_lost, process_video

    options = VideoOptions(detect_every=args.detect_every, smoothing=args.smoothing, detection=detection_of(args),
                           tta=args.tta, explain=args.explain, layer=args.layer)
    loaded = load_model(args.model, device=args.device, graphs=True)
    loaded.check_tta(args.tta)
    check_map_request(loaded, args.explain, args.layer)  # one line before the first frame
    summary = process_video(loaded, Path(args.input), Path(args.output), options, progress=not args.quiet)
    print(describe_summary(summary))
    print(f"wrote {', '.join(summary['outputs'])} to {args.output}")
    problem = frames_lost(summary)
    if problem:
        print(f"ferlab: error: {problem}", file=sys.stderr)
    return 2 if problem else 0


def cmd_serve(args) -> int:
    import uvicorn

    from ferlab.checkpoint import load_model
    from ferlab.explain.common import check_layer
    from ferlab.serve.app import create_app
    from ferlab.serve.listen import open_listener, page_url, reachable_from_elsewhere

    loaded = load_model(args.model, device=args.device, graphs=True)
    check_layer(loaded.model, args.layer)  # not a 500 on every request with Grad-CAM
    live = {} if args.min_face is None else {"live_min_face": args.min_face}  # else the camera's own minimum
    # the app before the port: a bad --min-face is one line, not a "serving" line and then an error
    app = create_app(loaded, str(args.model), args.tta, layer=args.layer, detection=detection_of(args), **live)
    listener = open_listener(args.host, args.port)
    if reachable_from_elsewhere(args.host):
        print(f"warning: --host {args.host}: other machines can reach this page", file=sys.stderr)
    print(f"ferlab: serving {args.model} on {page_url(args.host, args.port)} (Ctrl-C stops)")
    config = uvicorn.Config(app, log_level="warning")
    uvicorn.Server(config).run(sockets=[listener])
    return 0


def cmd_experiment(args) -> int:
    import platform

    import torch

    from ferlab.experiments import (check_publish_folder, check_results_folder, list_experiments, load_experiment,
                                    publish, run_experiment, seed_list)
    from ferlab.runs import writable_folder

    if args.name == "list":
        for name in list_experiments():
            print(f"{name:<14} {load_experiment(name).question}")
        return 0
    experiment = load_experiment(args.name)
    seeds = seed_list(args.seeds)
    out = writable_folder(Path(args.out) if args.out else Path("runs") / "experiments" / f"{experiment.name}-{args.budget}")
    check_results_folder(out, experiment)  # before the data is read; run_experiment checks it again
    if args.publish:  # hours of training must not end on an unwritable folder, or one holding another RESULTS.md
        check_publish_folder(writable_folder(Path(args.publish)))
    faces = load_data(args)
    if args.ray or args.address:
        from ferlab.scale import ray_session

        with ray_session(args.address):
            results = run_experiment(experiment, faces, out, seeds=seeds, budget=args.budget, progress=False, runner="ray")
    else:
        results = run_experiment(experiment, faces, out, seeds=seeds, budget=args.budget, progress=not args.quiet)
    print((out / "results.md").read_text())
    if args.publish:
        device = torch.cuda.get_device_name() if torch.cuda.is_available() else \
            f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
        print(f"published to {publish(out, results, Path(args.publish), device)}")
    return 0


def cmd_tune(args) -> int:
    from ferlab.runs import writable_folder
    from ferlab.scale import ray_session, require_ray
    from ferlab.sweep import check_results_folder, describe, read_sweep, run_sweep, run_sweep_locally

    sweep = read_sweep(Path(args.sweep))  # a bad sweep is one line before anything starts
    if args.local is not None and args.address:
        raise FerlabError("--local trains here without Ray; --address joins a Ray cluster: give one of them")
    if args.local is None:
        require_ray()
    out = writable_folder(Path(args.out) if args.out else Path("runs") / "tune" / Path(args.sweep).stem)
    check_results_folder(out)  # before the data is read; the sweep checks it again
    faces = load_data(args)
    if args.local is not None:
        rows = run_sweep_locally(sweep, faces, out, parallel=args.local)
    else:
        with ray_session(args.address):
            rows = run_sweep(sweep, faces, out)
    print((out / "table.md").read_text())
    print(f"{describe(rows)}; wrote {out / 'table.md'} and {out / 'results.json'}")
    return 2 if rows and all(r["error"] for r in rows) else 0


def cmd_report(args) -> int:
    from ferlab.checkpoint import load_model
    from ferlab.report.build import ReportOptions, build_report

    given = {name: getattr(args, name) for name in ("lime_samples", "filter_steps", "trust_faces_per_class", "layer")
             if getattr(args, name) is not None}
    skip = tuple(filter(None, map(str.strip, (args.skip or "").split(","))))
    options = ReportOptions(**given, progress=not args.quiet, skip=skip)  # checked before the model and data load
    loaded = load_model(args.run, device=args.device, graphs=True)
    run_dir = output_dir(args, "report")
    faces = load_data_for(args, loaded)
    build_report(run_dir, loaded, faces, options)
    return 0


def explain_inputs(args, loaded) -> tuple:
    """(N, 48, 48) uint8 faces and their names: --image files, or --index faces of --split."""
    from ferlab.api import file_notes, read_face_files, stretched_note

    if args.image:  # the API's conversion: gray, bilinear 48x48
        read = read_face_files([Path(p) for p in args.image])
        if read.problems:
            raise FerlabError(read.problems[0])
        say_problems([], stretched_note(read.stretched) + file_notes(read.notes))
        return read.faces, [Path(p).stem for p in args.image]
    faces = load_data_for(args, loaded).split(args.split)
    bad = [i for i in args.index if not 0 <= i < len(faces)]
    if bad:
        raise FerlabError(f"--index {bad[0]} is out of range: the {args.split} split has {len(faces)} faces")
    return faces.images[args.index], [f"{args.split}{i}" for i in args.index]


def explain_source(args, method: str, options: dict) -> str:
    """What ``ferlab explain``'s figure in a run folder shows (the faces by full path or split and
    index, the method, target and options), written into it: how a rerun tells its own figure from
    another of the same name."""
    faces = [str(Path(p).resolve()) for p in args.image] if args.image else [f"{args.split}{i}" for i in args.index]
    return json.dumps({"faces": faces, "method": method, "target": args.target, "options": options}, sort_keys=True)


# ``ferlab explain``'s flags -> the explanation methods' options (``ferlab.explain``).
EXPLAIN_OPTIONS = {"layer": "layer", "samples": "num_samples", "window": "window", "stride": "stride"}


def explain_options(args, methods: list[str]) -> dict:
    """The options the command line set, by the methods' names for them; a flag none of
    ``methods`` takes (``--window`` for Grad-CAM) is one line naming the methods that do."""
    from ferlab.explain import get_spec, list_methods

    options = {option: getattr(args, flag) for flag, option in EXPLAIN_OPTIONS.items() if getattr(args, flag) is not None}
    for flag, option in EXPLAIN_OPTIONS.items():
        if option in options and not any(option in get_spec(method).options for method in methods):
            takers = [method for method in list_methods() if option in get_spec(method).options]
            chosen = ", ".join(methods) + ("" if args.method else " (the default --method)")
            raise FerlabError(f"--{flag} is an option of {', '.join(takers)}; {chosen} "
                              f"{'takes' if len(methods) == 1 else 'take'} no {option}")
    return options


def cmd_explain(args) -> int:
    from ferlab.checkpoint import load_model
    from ferlab.explain import list_methods, methods_for
    from ferlab.explain.common import check_layer
    from ferlab.outputs import check_figure_name, figure_path, within_name_limit
    from ferlab.report.explain_figures import explain_faces_figure
    from ferlab.runs import check_not_an_input, writable_file

    if args.method not in (*list_methods(), "all", None):
        raise FerlabError(f"unknown explanation method {args.method!r}; available: {', '.join(list_methods())} or all")
    loaded = load_model(args.run, device=args.device, graphs=True)
    method = args.method or loaded.overlay_method
    methods = methods_for(loaded.model) if method == "all" else [method]
    options = explain_options(args, methods)  # a flag no method takes, or a layer the model lacks: one line before the work
    check_layer(loaded.model, args.layer)
    output = writable_file(Path(args.output)) if args.output else None  # checked before the work
    if output:
        check_figure_name(output)
        if args.image:
            check_not_an_input(output, args.image)
    run_dir = None if output else output_dir(args, "explain")  # a named file needs no folder of its own
    faces, names = explain_inputs(args, loaded)
    source = None if output else explain_source(args, method, options)
    # a.png then b/a.png: explain-gradcam-a.png, explain-gradcam-a-2.png; the same command again replaces its own
    output = output or figure_path(run_dir, f"explain-{method}-{within_name_limit('-'.join(names)[:60], 180)}", source)
    # one method that cannot explain the model raises NotApplicable (one line, exit 2); of several, those are named
    left_out = explain_faces_figure(loaded, faces, names, methods, args.target, output, options, source)
    for title, why in left_out.items():
        print(f"left out {title}: {why}")
    print(f"wrote {output}")
    return 0


def describe_presets() -> str:
    from ferlab.config import ENSEMBLES, PRESETS

    import textwrap

    lines = ["presets (flags and --config override them; BENCHMARKS.md has their measured accuracy and time):"]
    for name, values in PRESETS.items():
        text = ", ".join(f"{k}={v}" for k, v in values.items())
        lines.append(textwrap.fill(text, width=100, initial_indent=f"  {name:<13} ", subsequent_indent=" " * 16))
    lines.append("ensembles of presets (train each member, then 'ferlab ensemble RUN...'):")
    lines += [f"  {name:<13} {' + '.join(members)}" for name, members in ENSEMBLES.items()]
    return "\n".join(lines)


def add_models_command(commands) -> None:
    commands.add_parser("models", help="list the registered models with parameter counts").set_defaults(func=cmd_models)


def add_summary_command(commands) -> None:
    summary = commands.add_parser("summary", help="a model's layer table: output shapes, parameters, mult-adds, sizes "
                                                  "(an ONNX graph: its contract, precision and operators)")
    summary.add_argument("model", help="a registered model (see 'ferlab models'), 'default', 'default-fast', "
                                       "a run folder, a checkpoint or an ONNX graph of ferlab export")
    summary.set_defaults(func=cmd_summary)


def add_train_command(commands) -> None:
    train = commands.add_parser("train", help="train a model and leave a run folder", epilog=describe_presets(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("--resume", metavar="RUN", help="continue an interrupted run folder from its last.pt")
    add_training_options(train)
    train.set_defaults(func=cmd_train)


def add_distill_command(commands) -> None:
    distill = commands.add_parser(
        "distill", help="train a student on one or more teachers' soft targets (knowledge distillation)",
        description="Train STUDENT on the true labels blended with the mean softened probabilities of the "
                    "teachers on the same augmented views; the epoch is chosen on PublicTest as in train.",
        epilog=describe_presets(), formatter_class=argparse.RawDescriptionHelpFormatter)
    distill.add_argument("teachers", nargs="+", metavar="TEACHER", help="run folder, checkpoint, 'default' or 'default-fast'")
    distill.add_argument("--student", dest="model", required=True, metavar="MODEL",
                         help="the student: a model of 'ferlab models'")
    add_training_options(distill, skip=("model",))
    distill.set_defaults(func=cmd_train, resume=None)


def add_training_options(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """What train and distill share: presets, config files, run folders and a flag for every
    TrainConfig key (lists and mappings have their own flags)."""
    from ferlab.config import CHOICES, FIELDS, PRESETS

    parser.add_argument("--preset", choices=sorted(PRESETS), help="named starting recipe (cpu: the main job's)")
    parser.add_argument("--config", help="YAML or TOML file of TrainConfig keys (unknown keys are errors)")
    parser.add_argument("-o", "--out", help="run folder to write (default: RUNS/<model>-<time>)")
    parser.add_argument("--runs", default="runs", help="where new run folders go")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--model-option", action="append", metavar="KEY=VALUE", help="model option, e.g. dropout=0.4")
    add_data_arguments(parser)
    for name, spec in FIELDS.items():
        if spec.default is dataclasses.MISSING or name in skip:  # model_options, teachers
            continue
        flag = f"--{name.replace('_', '-')}"
        kind = type(spec.default)
        if kind is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None,
                                help=f"default {'on' if spec.default else 'off'}; {TRAIN_FLAG_HELP}")
        else:
            extra = "; a model of 'ferlab models'" if name == "model" else ""
            parser.add_argument(flag, dest=name, type=kind, choices=CHOICES.get(name), default=None,
                                help=f"default {spec.default if spec.default != '' else 'none'}{extra}; {TRAIN_FLAG_HELP}")


def add_evaluate_command(commands) -> None:
    evaluate = commands.add_parser("evaluate", help="metrics, confusion matrix and misclassified faces of a run")
    evaluate.add_argument("run", help=ANSWERS_HELP)
    evaluate.add_argument("--split", choices=("train", "val", "test", "both"), default="test",
                          help="test = PrivateTest, val = PublicTest, both = val and test")
    add_tta_argument(evaluate)
    evaluate.add_argument("--checkpoint", choices=("best", "last"), default="best")
    evaluate.add_argument("-o", "--out", help="folder for the results (default: the run folder; runs/eval-<name> for a file)")
    add_data_arguments(evaluate)
    add_device_argument(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)

def add_predict_command(commands) -> None:
    predict = commands.add_parser("predict", help="label faces: a CSV of id,label (Kaggle's format), --proba adds "
                                                  "the seven probabilities")
    predict.add_argument("run", help=ANSWERS_HELP)
    predict.add_argument("inputs", nargs="+", help="faces to label: the course's test.csv or any FER2013 source, or "
                                                   "face crops (image files, folders of them; any size, made gray 48x48)")
    predict.add_argument("-o", "--output", default="submission.csv")
    predict.add_argument("--proba", action="store_true", help="also write each class's probability")
    predict.add_argument("--split", choices=("all", "train", "val", "test"), default="all")
    add_tta_argument(predict)
    predict.add_argument("--checkpoint", choices=("best", "last"), default="best")
    add_data_arguments(predict, source=False)
    add_device_argument(predict)
    predict.set_defaults(func=cmd_predict)

def add_calibrate_command(commands) -> None:
    calibrate = commands.add_parser("calibrate", help="fit a temperature on PublicTest so probabilities are calibrated "
                                                      "(ECE before and after); train does it for every run")
    calibrate.add_argument("run", help="run folder (calibrated in place), checkpoint file, 'default' or "
                                       "'default-fast' (with -o)")
    calibrate.add_argument("-o", "--output", help="calibrated checkpoint to write (default: the run's own)")
    calibrate.add_argument("--checkpoint", choices=("best", "last"), default="best")
    add_data_arguments(calibrate)
    add_device_argument(calibrate)
    calibrate.set_defaults(func=cmd_calibrate)

def add_ensemble_command(commands) -> None:
    ensemble = commands.add_parser("ensemble", help="combine runs' probabilities and evaluate the combination")
    ensemble.add_argument("runs", nargs="+", help="run folders, checkpoint files or ONNX graphs of ferlab export "
                                                   "(graphs are evaluated, not written into -o)")
    ensemble.add_argument("--weights", choices=("equal", "fit"), default="equal",
                          help="fit: weights that minimise the log-loss on PublicTest")
    add_tta_argument(ensemble)
    ensemble.add_argument("--out", help="folder for the ensemble's evaluation (default: runs/ensemble-<time>)")
    ensemble.add_argument("-o", "--output", help="also write the ensemble as one model file (e.g. ensemble.pt) that "
                                                 "every command and ferlab.load accept")
    add_data_arguments(ensemble)
    add_device_argument(ensemble)
    ensemble.set_defaults(func=cmd_ensemble)

def add_export_command(commands) -> None:
    export = commands.add_parser("export", help="write the model for use elsewhere: .pt (float16 ferlab checkpoint) "
                                                "or .onnx (runs in onnxruntime; normalisation inside)")
    export.add_argument("run", help=SHIPPED_HELP)
    export.add_argument("-o", "--output", required=True, help="model.pt or model.onnx: the suffix picks the format")
    export.add_argument("--checkpoint", choices=("best", "last"), default="best")
    export.add_argument("--int8", action="store_true",
                        help="ONNX only: quantise to 8 bits (onnxruntime, static), calibrated on Training faces of "
                             "--data and checked beside float32 on PublicTest as it is written")
    export.add_argument("--calibration-faces", type=whole_number,
                        help="how many Training faces set the int8 activation ranges (default 512)")
    add_data_arguments(export)
    export.set_defaults(func=cmd_export)

def add_photo_command(commands) -> None:
    photo = commands.add_parser("photo", help="find the faces in photos and classify them (JSON + annotated copies)")
    photo.add_argument("inputs", nargs="*", help="photo files or folders")
    photo.add_argument("--model", default="default", help=ANSWERS_HELP)
    photo.add_argument("-o", "--output", default="photo-results", help="folder for the JSON and annotated images")
    photo.add_argument("--explain", action="store_true", help="overlay Grad-CAM on each face (occlusion where Grad-CAM "
                                                               "does not apply: an ONNX graph, an ensemble, a dnn)")
    photo.add_argument("--quiet", action="store_true", help="no progress bar")
    photo.add_argument("--crops", action="store_true",
                       help="also write each face's 48x48 gray crop as the model saw it (NAME-faceK.png), which "
                            "predict and explain --image take as faces")
    photo.add_argument("--mode", choices=("auto", "detect", "crop"), default="auto",
                       help="detect: find faces; crop: each image is one face crop; auto (default): detect, and take a "
                            "small, nearly square image with no face found (a crop) as one face")
    photo.add_argument("--demo", action="store_true", help="also run on sample photos that ship with installed packages")
    add_layer_argument(photo)
    add_detection_arguments(photo)
    add_tta_argument(photo)
    add_device_argument(photo)
    photo.set_defaults(func=cmd_photo)

def detection_of(args):
    from ferlab.faces import DEFAULT_DETECTOR, MIN_FACE, Detection

    return Detection(args.detector or DEFAULT_DETECTOR, MIN_FACE if args.min_face is None else args.min_face)


def add_detection_arguments(parser: argparse.ArgumentParser) -> None:
    # Defaults are ferlab.faces' (None here, so that --help needs no import; tests/test_cli.py checks the text).
    parser.add_argument("--detector", choices=("hog", "haar"),
                        help="face detector: hog (dlib; the default) or haar (OpenCV); BENCHMARKS.md compares them")
    parser.add_argument("--min-face", type=float, metavar="SIZE",
                        help="the smallest face to detect: pixels (1 or more) or a fraction of the shorter side "
                             "(under 1; default 0.05, which keeps texture in large photos from being taken for faces)")


def add_video_command(commands) -> None:
    video = commands.add_parser("video", help="faces and emotions through a video: annotated video, per-frame CSV, "
                                              "timeline plot, per-face summary")
    video.add_argument("input", help="a video file OpenCV can read (mp4, avi, mkv, mov, webm, ...) or an animated "
                                        "GIF, PNG, WebP or AVIF")
    video.add_argument("--model", default="default", help=ANSWERS_HELP)
    video.add_argument("-o", "--output", default="video-results", help="folder for the results")
    video.add_argument("--detect-every", type=int, default=1, metavar="K",
                       help="detect faces every K frames, carrying the boxes in between (default 1)")
    video.add_argument("--smoothing", type=float, default=0.6,
                       help="weight of each face's previous probabilities in its moving average, 0 to <1 (default 0.6)")
    video.add_argument("--explain", action="store_true", help="overlay each face's Grad-CAM (occlusion where it does not "
                                                               "apply) in the annotated video, for the label shown")
    add_layer_argument(video)
    add_detection_arguments(video)
    add_tta_argument(video)
    video.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device_argument(video)
    video.set_defaults(func=cmd_video)


def add_serve_command(commands) -> None:
    serve = commands.add_parser("serve", help="a local web page: drop photos or use the camera, see faces, "
                                              "expressions and Grad-CAM")
    serve.add_argument("--model", default="default", help=ANSWERS_HELP + "; a graph's page shows occlusion for Grad-CAM")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    serve.add_argument("--port", type=port_number, default=8000, help="TCP port, 1..65535 (default 8000)")
    add_layer_argument(serve)
    add_detection_arguments(serve)
    add_tta_argument(serve)
    add_device_argument(serve)
    serve.set_defaults(func=cmd_serve)

def add_experiment_command(commands) -> None:
    experiment = commands.add_parser("experiment", help="answer one of the assignment's questions with a table over seeds")
    experiment.add_argument("name", help="cnn-vs-dnn, normalization, augmentation, architectures, confusions, "
                                         "a path to a YAML definition, or 'list'")
    experiment.add_argument("--seeds", type=int, default=2, help="runs per arm (seeds 0..K-1)")
    experiment.add_argument("--budget", choices=("cpu", "gpu"), default="cpu", help="the definition's epochs/data for it")
    experiment.add_argument("-o", "--out", help="folder for runs and results (default: runs/experiments/NAME-BUDGET)")
    experiment.add_argument("--publish", metavar="DIR", help="copy the table and plots to DIR and rebuild DIR/RESULTS.md")
    experiment.add_argument("--quiet", action="store_true", help="no progress bars")
    experiment.add_argument("--ray", action="store_true", help="run the arms and seeds as Ray tasks: on this machine, "
                                                               "or on a cluster with --address or RAY_ADDRESS")
    experiment.add_argument("--address", help="a running Ray cluster to join (host:port, or 'auto'); implies --ray")
    add_data_arguments(experiment)
    experiment.set_defaults(func=cmd_experiment)

def add_tune_command(commands) -> None:
    tune = commands.add_parser("tune", help="choose a recipe on PublicTest: variants, a grid or a random search on "
                                            "Ray Tune, optional ASHA early stopping (needs ferlab[ray])")
    tune.add_argument("sweep", help="a sweep YAML: preset, and variants, grid or random (see ferlab.sweep)")
    tune.add_argument("-o", "--out", help="folder for the table, results.json and each trial's run folder "
                                    "(default: runs/tune/<sweep name>)")
    tune.add_argument("--address", help="a running Ray cluster to join (host:port or 'auto'; default: RAY_ADDRESS, "
                                        "else Ray starts here)")
    tune.add_argument("--local", type=int, metavar="N", help="without Ray: train N trials at a time as processes on "
                                                             "this machine (variants and grids; they share its GPU)")
    add_data_arguments(tune)
    tune.set_defaults(func=cmd_tune)


def add_report_command(commands) -> None:
    report = commands.add_parser("report", help="write a self-contained report.html with explanations and trust checks")
    report.add_argument("run", help=ANSWERS_HELP + "; a graph's report has the gradient-free explanations only")
    report.add_argument("-o", "--out", help="folder for report.html and its figures (default: the run folder)")
    report.add_argument("--lime-samples", type=int, help="perturbations per LIME explanation (default 300)")
    report.add_argument("--filter-steps", type=int, help="gradient-ascent steps per filter (default 40)")
    report.add_argument("--trust-faces-per-class", type=int, help="faces per class in the trust sample (default 2)")
    add_layer_argument(report)
    report.add_argument("--skip", metavar="STAGES", help="comma-separated stages to leave out: explanations, filters, trust")
    report.add_argument("--quiet", action="store_true", help="no progress bars")
    add_data_arguments(report)
    add_device_argument(report)
    report.set_defaults(func=cmd_report)

def add_explain_command(commands) -> None:
    explain = commands.add_parser("explain", help="one explanation method's figure for chosen faces")
    explain.add_argument("run", help="run folder, checkpoint file, or an ONNX graph of ferlab export "
                                     "(gradient-free methods: lime, occlusion)")
    explain.add_argument("--method", help="saliency, gradcam, hirescam, guided_gradcam, lime or occlusion (the "
                                          "explanation registry's methods), or all: every method that applies, side "
                                          "by side (default: what photos and the page lay over faces, gradcam, or "
                                          "occlusion for a model without gradients or a single conv layer)")
    chosen = explain.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--image", nargs="+", action="extend", help="face image file(s); converted to 48x48 gray")
    chosen.add_argument("--index", type=int, nargs="+", action="extend", help="face index(es) in --split")
    explain.add_argument("--split", choices=("train", "val", "test"), default="test")
    explain.add_argument("--target", choices=EMOTIONS_CHOICES, help="class to explain (default: the predicted one)")
    explain.add_argument("-o", "--output", help="figure to write: .png, .jpg, .svg or .pdf (default: in the run folder)")
    add_layer_argument(explain)
    explain.add_argument("--samples", type=int, metavar="N", help="LIME's perturbed copies of each face (default 1000)")
    explain.add_argument("--window", type=int, metavar="PIXELS", help="occlusion's square patch (default 8)")
    explain.add_argument("--stride", type=int, metavar="PIXELS", help="occlusion's step between patches (default 4)")
    add_data_arguments(explain)
    add_device_argument(explain)
    explain.set_defaults(func=cmd_explain)

# Each adds one subcommand, in the order --help lists them.
COMMANDS = [add_models_command, add_summary_command, add_train_command, add_distill_command, add_evaluate_command, add_predict_command,
            add_calibrate_command, add_ensemble_command, add_export_command, add_photo_command, add_video_command, add_serve_command,
            add_experiment_command, add_tune_command, add_report_command, add_explain_command]


def build_parser() -> argparse.ArgumentParser:
    """The whole command line. Builds without importing PyTorch, so --help answers at once: names
    a registry holds (models, explanation methods) are checked when the command runs."""
    from ferlab import __version__

    parser = Parser(prog="ferlab", description="Train, evaluate and explain facial-expression classifiers on FER2013.")
    parser.add_argument("--version", action="version", version=f"ferlab {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for add_command in COMMANDS:
        add_command(commands)
    return parser


def parse_arguments(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``parser.parse_args``, with an unknown argument named by its command's parser: argparse
    pointed ``ferlab summary fastnet --model-option x`` at 'ferlab --help'."""
    args, unknown = parser.parse_known_args(argv)
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    command = commands.choices.get(getattr(args, "command", None))
    if command is not None and (model := misplaced_model(command, args, unknown, sys.argv[1:] if argv is None else argv)):
        command.error(f"{model} names a model: give it as --model {model}")
    if unknown:
        command.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def misplaced_model(command: argparse.ArgumentParser, args: argparse.Namespace, unknown: list[str],
                    argv: list[str]) -> str | None:
    """A model given where ``photo``, ``video`` and ``serve`` take inputs (``ferlab serve
    default-fast``, ``ferlab video default-fast clip.mp4``): those take it as ``--model``, and it
    was an unrecognised argument, or a photo or video that could not be read (a run folder's
    figures were taken for photos)."""
    takes_model = any("--model" in action.option_strings and (action.help or "").startswith(ANSWERS_HELP)
                      for action in command._actions)  # train's --model is an architecture
    if not takes_model or any(token == "--model" or token.startswith("--model=") for token in argv):
        return None
    from ferlab.checkpoint import is_shipped_name

    given = [*unknown]
    for action in command._actions:
        if not action.option_strings and action.dest != "help":
            value = getattr(args, action.dest, None)
            given += value if isinstance(value, list) else [value] if isinstance(value, str) else []
    for token in given:
        path = Path(token)
        if is_shipped_name(token) or (path.suffix.lower() in (".pt", ".onnx") and path.is_file()) \
                or (path / "best.pt").is_file():
            return token
    return None


OUTPUT_FLAGS = {"out": "--out", "output": "-o", "publish": "--publish"}  # dest -> the flag a message names
# Not checked here: a Ray cluster's address may be ray://host:port (--host is checked where it binds);
# a batch's inputs (photo, predict) are each named as one problem while the rest still run
NOT_FILES = {"address", "host", "inputs"}


def check_no_urls(args) -> None:
    """One line for a URL given as any file or folder of the command: pathlib read
    "https://host/a.jpg" as "https:/host/a.jpg" ("No such file"), and an output URL made a local
    folder "https:". ferlab works offline on local files (``check_local``)."""
    for dest, value in vars(args).items():
        if dest not in NOT_FILES:
            for item in value if isinstance(value, list) else [value]:
                check_local(item, OUTPUT_FLAGS.get(dest, ""), output=dest in OUTPUT_FLAGS)


def main(argv: list[str] | None = None) -> int:
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # `ferlab train > log` shows each epoch as it ends
    try:
        args = parse_arguments(build_parser(), argv)
    except SystemExit as exit_:  # argparse: --help (0) or a usage error (2, already printed)
        return int(exit_.code or 0)
    from ferlab.distributed import is_main_process, quiet_unless_main

    quiet_unless_main()  # under torchrun: one log and one error line, rank 0's
    try:
        from ferlab.runs import removed_if_left_empty

        check_no_urls(args)
        with removed_if_left_empty():  # a failed command leaves no empty output folder behind
            return args.func(args)
    except FerlabError as error:
        if is_main_process():
            print(f"ferlab: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nferlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `ferlab summary vgg | head -3`: the reader left; stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 141  # 128 + SIGPIPE, what a shell reports for a program stopped by a closed pipe
    except OSError as error:  # the file system said no: a read-only folder, a full disk, a folder named as a file
        where = f"{error.filename}: " if error.filename else ""
        print(f"ferlab: error: {where}{error.strerror or error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
