"""``ferlab photo`` over many files: folders expanded to their photos (what else they hold named in
a note), one distinct output name per photo, outputs that never replace a file the command did not
write, each photo's JSON record, annotated copy and (``--crops``) face crops, and the batch's
summary ``results.json``. The photo itself is read and analysed by ``ferlab.photos``."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, PngImagePlugin

from ferlab.checkpoint import LoadedModel
from ferlab.errors import FerlabError, check_local
from ferlab.faces import Detection, Photo
from ferlab.outputs import png_text, read_small_json, within_name_limit, written
from ferlab.photos import PHOTO_SUFFIXES, FaceResult, analyze, annotate, photo_note, photo_record


@dataclass(frozen=True)
class PhotoInputs:
    """What ``expand_inputs`` found: the photo files, folders that held none (``problems``: each an
    input that could not be read) and, per folder, the files of other kinds it passed over (``notes``)."""
    paths: list[Path]
    problems: list[str]
    notes: list[str]


def expand_inputs(inputs: list[str], outputs_in: Path | None = None) -> PhotoInputs:
    """Files as given; folders -> their photo files (by suffix, ``PHOTO_SUFFIXES``), sorted. A
    broken symlink, FIFO or device with a photo's name is kept, so that reading it fails with its
    name instead of vanishing; a folder's other files, and the PNGs an earlier ``ferlab photo``
    wrote into ``outputs_in`` (its output folder, read again), are counted and named in a note, and
    a folder with no photo at all is a problem, so that a folder of HEIC photos or the wrong folder
    is never 0 results without a word."""
    outputs_in = outputs_in.resolve() if outputs_in is not None else None
    paths, problems, notes = [], [], []
    for item in inputs:
        try:
            check_local(item)
        except FerlabError as problem:
            problems.append(str(problem))
            continue
        path = Path(item)
        if not path.is_dir():
            paths.append(path)
            continue
        files = sorted(p for p in path.rglob("*") if not p.is_dir())  # FIFOs and devices too: named when read
        earlier = {p for p in files if p.suffix.lower() == ".png" and p.parent.resolve() == outputs_in and marked_as_ours(p)}
        copies = sorted(earlier)
        photos = [p for p in files if p.suffix.lower() in PHOTO_SUFFIXES and p not in earlier]
        others = [p for p in files if p.suffix.lower() not in PHOTO_SUFFIXES]
        passed_over = []
        if others:
            passed_over.append(f"{len(others)} file(s) that are not photos ({examples(others)})")
        if copies:
            passed_over.append(f"{len(copies)} earlier output(s) of ferlab photo ({examples(copies)})")
        if not photos:
            problems.append(f"{item}: no photos in this folder (looked for {' '.join(PHOTO_SUFFIXES)}"
                            + (f"; passed over {' and '.join(passed_over)})" if passed_over else ")"))
        elif passed_over:
            notes.append(f"{item}: passed over {' and '.join(passed_over)}")
        paths += photos
    return PhotoInputs(paths, problems, notes)


def examples(paths: list[Path]) -> str:
    return ", ".join(p.name for p in paths[:3]) + (", ..." if len(paths) > 3 else "")


SUMMARY_NAME = "results"  # results.json: the batch's summary, which no photo's output may take


def output_names(paths: list[Path]) -> list[str]:
    """One distinct, readable output name per photo: its stem where that is unique, else its file
    name, else more of its folders (``a/x/1.jpg`` and ``b/x/1.jpg`` -> ``a-x-1.jpg``, ``b-x-1.jpg``);
    never the summary's name, and a counter as the last resort (the same file given twice)."""
    def candidate(path: Path, level: int) -> str:
        if level == 0:
            return path.stem
        parts = path.resolve().parts[1:]  # without the root "/"
        return "-".join(parts[-level:])

    names = [candidate(p, 0) for p in paths]
    for level in range(1, 64):
        counts = {}
        for name in names:
            counts[name.lower()] = counts.get(name.lower(), 0) + 1  # case-insensitive file systems too
        clashing = [i for i, n in enumerate(names) if counts[n.lower()] > 1 or n.lower() == SUMMARY_NAME]
        if not clashing:
            return [within_name_limit(name) for name in names]
        widened = [candidate(paths[i], level) for i in clashing]
        if all(names[i] == w for i, w in zip(clashing, widened)):
            break  # no more folders to tell them apart
        for i, name in zip(clashing, widened):
            names[i] = name
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name.lower()] = seen.get(name.lower(), 0) + 1
        unique.append(name if seen[name.lower()] == 1 and name.lower() != SUMMARY_NAME else f"{name}-{seen[name.lower()]}")
    return [within_name_limit(name) for name in unique]


WRITTEN_BY = "ferlab photo"  # the Software text of every PNG it writes: how a rerun knows the file is its own
CROP_NAME = re.compile(r"(?P<name>.+)-face\d+\.png")  # a face's crop: NAME-face1.png, NAME-face2.png, ...


def output_paths(out: Path, names: list[str], earlier_crops: dict[str, list[Path]]) -> list[Path]:
    """Every file ``process_photos`` writes for photos of ``names`` that can be named before their
    faces are found: the summary, each photo's pair, and the ``earlier_crops`` already there (each
    replaced, or removed as left over)."""
    planned = [out / f"{SUMMARY_NAME}.json", *(out / f"{name}{end}" for name in names for end in (".json", "-annotated.png"))]
    return planned + [crop for found in earlier_crops.values() for crop in found]


def crops_in(out: Path, names: list[str]) -> dict[str, list[Path]]:
    """The face crops already in ``out`` (``NAME-faceK.png``, from any run) of each of ``names`` that has some."""
    found: dict[str, list[Path]] = {}
    wanted = set(names)
    for file in sorted(os.listdir(out)) if out.is_dir() else []:
        if (match := CROP_NAME.fullmatch(file)) and match["name"] in wanted:
            found.setdefault(match["name"], []).append(out / file)
    return found


def check_replaceable(out: Path, paths: list[Path], names: list[str], earlier_crops: dict[str, list[Path]]) -> None:
    """Before any work: a FerlabError naming the first output that would replace a file this
    command did not write there: an input photo, or a file of an output's name that is none of
    ours (a LabelMe annotation ``x.json`` beside ``x.png``, another tool's ``results.json``)."""
    inputs = {path.resolve() for path in paths}
    listed = listed_outputs(out / f"{SUMMARY_NAME}.json")
    for target in output_paths(out, names, earlier_crops):
        if target.resolve() in inputs:
            raise FerlabError(f"{target}: is one of the photos to read and would be replaced by an output; "
                              "choose another output folder (-o)")
        if target.exists() and target.name not in listed and not written_here(target):
            raise FerlabError(f"{target}: exists and is not an output of ferlab photo, which would replace it; "
                              "choose another output folder (-o) or move the file")


def listed_outputs(summary: Path) -> set[str]:
    """The file names an earlier run's summary lists (itself included), or none where it is not one."""
    record = read_small_json(summary)
    if not (isinstance(record, dict) and isinstance(record.get("photos"), list) and "model" in record):
        return set()
    names = {name for photo in record["photos"] if isinstance(photo, dict)
             for name in photo.get("outputs", []) if isinstance(name, str)}
    return names | {summary.name}


def written_here(path: Path) -> bool:
    """Whether a file is one ``ferlab photo`` writes: a photo's JSON record, or one of its PNGs."""
    if path.suffix == ".json":
        record = read_small_json(path)
        return isinstance(record, dict) and {"image", "faces", "outputs"} <= set(record)
    return marked_as_ours(path)


def marked_as_ours(path: Path) -> bool:
    """Whether a file is a PNG ``ferlab photo`` wrote, an annotated copy or a face's crop (marked
    as ours; read up to its first pixels only)."""
    return png_text(path, "Software") == WRITTEN_BY


def save_marked(image: Image.Image, path: Path) -> None:
    """``image`` as a PNG at ``path``, marked as written by ``ferlab photo`` (see ``marked_as_ours``)."""
    mark = PngImagePlugin.PngInfo()
    mark.add_text("Software", WRITTEN_BY)
    with written(path) as temporary:
        image.save(temporary, format="PNG", pnginfo=mark)


def write_photo_outputs(out: Path, name: str, photo: Photo, faces: list[FaceResult], source: str, crops: bool,
                        earlier_crops: list[Path] = (), note: str | None = None) -> dict:
    """One photo's outputs in ``out``: with ``crops`` each face's 48x48 crop as the model saw it
    (``NAME-faceK.png``, named in the face's ``crop``; ``earlier_crops`` of faces no longer found
    are removed), the annotated copy, then its JSON record (``note``: ``photo_note``), which is returned."""
    from ferlab.runs import write_json

    record = photo_record(source, photo.rgb, faces, note)
    crop_names = [f"{name}-face{k}.png" for k in range(1, len(faces) + 1)] if crops else []
    for face, entry, crop_name in zip(faces, record["faces"], crop_names):
        save_marked(Image.fromarray(face.crop), out / crop_name)
        entry["crop"] = crop_name
    for stale in earlier_crops:  # ours: checked before any work
        if stale.name not in crop_names:
            stale.unlink(missing_ok=True)
    save_marked(annotate(photo.rgb, faces), out / f"{name}-annotated.png")
    record["outputs"] = [f"{name}.json", f"{name}-annotated.png", *crop_names]
    write_json(out / f"{name}.json", record)
    return record


def describe_faces(path, faces: list[FaceResult], note: str | None = None) -> str:
    """One line per photo for the command line: its faces' labels and confidences, and its note."""
    summary = ", ".join(f"{f.label} {f.confidence:.2f}" for f in faces) or "no face found"
    if faces and faces[0].found_by == "whole image":
        summary += " (the whole image as one face crop)"
    return f"{path}: {len(faces)} face{'s' if len(faces) != 1 else ''}: {summary}" + (f" ({note})" if note else "")


def process_photos(loaded: LoadedModel, paths: list[Path], out: Path, *, model_name: str, explain: bool = False,
                   tta: str = "none", mode: str = "auto", layer: str | None = None, detection: Detection = Detection(),
                   log=print, warn=print, unread: list[str] = (), progress: bool = False, crops: bool = False) -> dict:
    """``ferlab photo``: each photo's JSON record and annotated copy in ``out`` (names unique per
    input, see ``output_names``), with ``crops`` its faces' crops (``write_photo_outputs``), then
    the summary ``results.json``, which is returned. A photo
    that cannot be read is reported through ``warn`` and counted, as are the ``unread`` inputs
    found before (``PhotoInputs.problems``); the rest still run. ``progress``: a bar with the
    rate and time left on stderr when it is a terminal, the ``log`` and ``warn`` lines above it."""
    from ferlab.faces import PhotoError, open_photo
    from ferlab.progress import progress_bar
    from ferlab.runs import write_json

    paths = list(dict.fromkeys(paths))  # each file once
    names = output_names(paths)
    earlier_crops = crops_in(out, names) if crops else {}  # with crops: each replaced or removed
    check_replaceable(out, paths, names, earlier_crops)
    for problem in unread:
        warn(problem)
    records, problems = [], list(unread)

    def summary(complete: bool) -> dict:
        return {"model": model_name, "explained_by": loaded.overlay_method if explain else None, "photos": records,
                "failed": len(problems), "problems": problems,  # each input not read, and why
                "complete": complete}  # False: stopped (Ctrl-C) after the photos listed

    try:  # piped or logged, stderr keeps one line per unreadable photo
        with progress_bar(total=len(paths), unit="photo", show=progress and len(paths) > 1) as bar:
            for path, name in zip(paths, names):
                try:
                    photo = open_photo(path)
                except PhotoError as error:
                    say, line = warn, str(error)
                    problems.append(line)
                else:
                    faces = analyze(loaded, photo.rgb, explain=explain, tta=tta, mode=mode, layer=layer, detection=detection)
                    note = photo_note(photo, faces, detection)
                    records.append(write_photo_outputs(out, name, photo, faces, str(path), crops,
                                                       earlier_crops.get(name, []), note))
                    say, line = log, describe_faces(path, faces, note)
                with bar.external_write_mode():  # the line goes above the bar, not through it
                    say(line)
                bar.update()
    except KeyboardInterrupt:  # Ctrl-C in a long batch: the photos done keep their summary
        if records:
            write_json(out / f"{SUMMARY_NAME}.json", summary(complete=False))
        raise
    if problems and not records:  # a typo must not replace the last run's summary with an empty one
        raise FerlabError(f"{out / SUMMARY_NAME}.json: not written: no input could be read")
    complete = summary(complete=True)
    write_json(out / f"{SUMMARY_NAME}.json", complete)
    return complete
