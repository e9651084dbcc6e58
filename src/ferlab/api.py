"""The public face of ferlab: load a model, then classify faces, find them in photos, explain them.

    >>> import ferlab
    >>> model = ferlab.load("default")                 # the shipped model; "default-fast"; a run folder, a checkpoint
    >>> faces = model.detect(ferlab.demo_photos()[1])  # Grace Hopper, shipped with matplotlib
    >>> model.predict(faces[0].crop).labels            # a crop: path, PIL image, array or tensor
    ['neutral']

Faces may be file paths, PIL images, NumPy arrays or tensors, one or many (see ``as_faces`` for the
rule). Every answer goes through the model's one inference path (``LoadedModel.logits``), as the
command line's does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ferlab.checkpoint import LoadedModel, load_model
from ferlab.data.images import ImageProblem, to_eight_bits
from ferlab.errors import FerlabError, brief, check_local
from ferlab.faces import DEFAULT_DETECTOR, MIN_FACE, Detection, Photo, open_photo
from ferlab.labels import EMOTIONS, IMAGE_SIZE


@dataclass(frozen=True)
class Predictions:
    """Labels and probabilities of N faces, in input order."""

    labels: list[str]            # the most likely class of each face
    probabilities: np.ndarray    # (N, 7) float32, columns in ``EMOTIONS`` order

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def confidences(self) -> np.ndarray:
        """(N,) probability of each face's label."""
        return self.probabilities.max(1)

    def as_dicts(self) -> list[dict[str, float]]:
        """One {class: probability} per face."""
        return [dict(zip(EMOTIONS, map(float, row))) for row in self.probabilities]


def as_path(value, what: str, output: bool = False) -> Path:
    """A path the API was given: '' (which pathlib reads as the current folder), what is not a
    path (None) and a URL are one FerlabError naming ``what``."""
    if isinstance(value, bytes) or not isinstance(value, (str, os.PathLike)) or not str(value):
        raise FerlabError(f"{what} {brief(value)}: give a path")
    check_local(value, what if output else "", output)
    return Path(value)


def image_to_face(image: Image.Image, where: str = "image") -> np.ndarray:
    """Any image -> (48, 48) uint8 gray, the way FER2013's faces were made: 8-bit (16-bit images
    scaled), gray by ITU-R 601 luma (PIL's "L"), resized to 48x48 with bilinear interpolation (a
    non-square image is stretched, as ``--resize`` does for data). A problem names ``where``."""
    gray = eight_bits(image, where).convert("L")
    if gray.size != (IMAGE_SIZE, IMAGE_SIZE):
        gray = gray.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
    return np.array(gray, dtype=np.uint8)  # a writable copy: torch.from_numpy shares it


def eight_bits(image: Image.Image, where: str) -> Image.Image:
    """``to_eight_bits`` for an image a caller passed in, its problem named by ``where``."""
    if image.width < 1 or image.height < 1:  # resized, it would be answered as a face of black
        raise FerlabError(f"{where}: image is {image.width}x{image.height}: it has no pixels")
    try:
        return to_eight_bits(image)
    except ImageProblem as problem:
        raise FerlabError(f"{where}: {problem}") from None


def array_to_uint8(values: np.ndarray, where: str) -> np.ndarray:
    """uint8 as is; uint16 scaled by 255/65535; integers in 0..255 as they are; floats in [0, 1]
    scaled by 255, floats in [0, 255] as they are. Anything else is refused."""
    if values.size == 0:
        raise FerlabError(f"{where}: an empty array holds no face")
    if values.dtype == np.uint8:
        return values
    if values.dtype == np.uint16:
        return np.rint(values / 257.0).astype(np.uint8)
    if values.dtype == bool or not (np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)):
        raise FerlabError(f"{where}: faces must be numbers (uint8, uint16 or float), got {values.dtype}")
    low, high = float(values.min()), float(values.max())
    if not (np.isfinite(low) and np.isfinite(high)) or low < 0 or high > 255:
        raise FerlabError(f"{where}: values must lie in [0, 1] or [0, 255], found {low:g}..{high:g}")
    scale = 255.0 if np.issubdtype(values.dtype, np.floating) and high <= 1.0 else 1.0
    return np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)


CHANNELS = (1, 2, 3, 4)  # gray, gray and alpha, RGB, RGBA: a last axis this short is colour, never a width


def photo_array(photo) -> np.ndarray:
    """A photo given as an array -> (H, W, 3) uint8 RGB: (H, W) gray, or (H, W, C) with C in
    ``CHANNELS``; values as ``array_to_uint8`` takes them. Anything else is one FerlabError."""
    if not isinstance(photo, np.ndarray):
        raise FerlabError(f"photo: cannot read a photo from a {type(photo).__name__}; give a path, bytes, "
                          "a PIL image or an (H, W, 3) array")
    values = array_to_uint8(photo, "photo")
    if values.ndim == 3 and values.shape[2] == 1:
        values = values[..., 0]
    if values.ndim not in (2, 3) or (values.ndim == 3 and values.shape[2] not in CHANNELS):
        raise FerlabError(f"photo: an array of shape {tuple(photo.shape)}; expected (H, W) or (H, W, C), C 1 to 4")
    return np.asarray(Image.fromarray(np.ascontiguousarray(values)).convert("RGB"))


def array_images(values: np.ndarray, where: str, channels_first: bool) -> list[np.ndarray]:
    """An array as a list of (H, W) or (H, W, C) images, C in ``CHANNELS``. NumPy arrays are
    images: (H, W), (H, W, C), or batches (N, H, W) and (N, H, W, C); a last axis of 1 to 4 is
    colour (a gray (48, 48, 1) array was read as 48 faces 1 pixel wide). Tensors follow PyTorch:
    (H, W), (N, H, W) or (N, C, H, W); see ``tensor_layout_problem`` for what is refused."""
    if channels_first:
        if problem := tensor_layout_problem(values.shape):
            raise FerlabError(f"{where}: a tensor of shape {tuple(values.shape)} {problem}")
        if values.ndim == 4:
            values = values.transpose(0, 2, 3, 1)
    if values.ndim == 2 or (values.ndim == 3 and values.shape[-1] in CHANNELS):
        values = values[None]
    if values.ndim == 3:
        return list(values)
    if values.ndim == 4 and values.shape[-1] in CHANNELS:
        return list(values[..., 0] if values.shape[-1] == 1 else values)
    layout = "(H, W), (N, H, W) or (N, C, H, W)" if channels_first else "(H, W), (H, W, C), (N, H, W) or (N, H, W, C)"
    raise FerlabError(f"{where}: a face array of shape {tuple(values.shape)}; expected {layout}, C 1 to 4")


def tensor_layout_problem(shape: tuple[int, ...]) -> str | None:
    """Why a tensor's shape cannot be read as PyTorch lays out images, or None. torchvision reads a
    3-D tensor as one (C, H, W) image, ferlab as (N, H, W) faces: where both readings fit (3 or 4
    planes) it asks, and a last axis of 1 to 4 is an (H, W, C) image's colour, not N faces."""
    if len(shape) == 3 and shape[-1] in CHANNELS:
        return "is laid out (H, W, C); PyTorch tensors are (N, C, H, W): permute it, or pass the NumPy array"
    if len(shape) == 3 and shape[0] in (3, 4):
        return (f"is {shape[0]} gray faces (N, H, W) or one colour image (C, H, W), as torchvision reads it; "
                f"give ({shape[0]}, 1, H, W) for faces or (1, {shape[0]}, H, W) for one image")
    if len(shape) == 4 and shape[1] not in CHANNELS:
        return f"has {shape[1]} channels; expected (N, C, H, W), C 1 to 4"
    return None


def tensor_values(tensor: torch.Tensor, where: str) -> np.ndarray:
    """A tensor's values as a NumPy array: floats NumPy has no type for (bfloat16, float8) as
    float32, which holds them exactly; a tensor holding no plain values here is one line."""
    unread = ("a meta tensor holds no values" if tensor.is_meta else
              "a nested tensor; give one tensor per shape, or a list" if tensor.is_nested else
              "a quantized tensor; give tensor.dequantize()" if tensor.is_quantized else
              f"a {str(tensor.layout).removeprefix('torch.')} tensor; give tensor.to_dense()"
              if tensor.layout != torch.strided else None)
    if unread:
        raise FerlabError(f"{where}: {unread}")
    tensor = tensor.detach().cpu()
    if tensor.is_floating_point() and tensor.dtype not in (torch.float16, torch.float32, torch.float64):
        tensor = tensor.float()
    return tensor.numpy()


def turn_note(image: Image.Image) -> str | None:
    """Why a PIL image may be found sideways, or None: its EXIF says to turn it (a phone's photo,
    opened with ``Image.open``). A photo's path is read upright, as a viewer shows it; an image is
    taken as it is, since PIL's own ``rotate`` keeps the tag and turning by it again would undo that."""
    orientation = image.getexif().get(0x0112)  # EXIF Orientation: 1 is upright
    if orientation in (None, 1) or not isinstance(orientation, int):
        return None
    return (f"its EXIF orientation ({orientation}) says to turn it, and a PIL image is taken as it is (a path is "
            "read upright): pass ImageOps.exif_transpose(image) to look at it as a viewer shows it")


def as_faces(faces, where: str = "faces") -> torch.Tensor:
    """Faces in any form -> (N, 48, 48) uint8: a path, an image file's bytes, a PIL image, a NumPy array or a
    tensor, or a list of them. Each image is converted by ``image_to_face``; values by ``array_to_uint8``."""
    if isinstance(faces, (list, tuple)):
        if not faces:
            raise FerlabError(f"{where}: an empty list holds no face")
        return torch.cat([as_faces(item, f"{where}[{i}]") for i, item in enumerate(faces)])
    if isinstance(faces, (str, os.PathLike)):
        return file_face(open_photo(as_path(faces, where)), str(faces))
    if isinstance(faces, (bytes, bytearray)):  # a file's bytes, as detect takes them (an upload, a download)
        return file_face(open_photo(bytes(faces), where), where)
    if isinstance(faces, Image.Image):
        face = image_to_face(faces, where)  # a 0x0 image is refused before its shape is looked at
        warn_if_stretched(faces.size, where)
        return torch.from_numpy(face)[None]
    if isinstance(faces, torch.Tensor):
        return as_faces_from_array(tensor_values(faces, where), where, channels_first=True)
    if isinstance(faces, np.ndarray):
        return as_faces_from_array(faces, where, channels_first=False)
    raise FerlabError(f"{where}: cannot read a face from a {type(faces).__name__}; give a path, a file's bytes, "
                      "a PIL image, a NumPy array or a tensor")


def file_face(photo: Photo, where: str) -> torch.Tensor:
    """An image file read as a photo is (``open_photo``: upright, its first frame) as one
    (1, 48, 48) face, with a warning for what its reader should know (``Photo.note``, a photo
    stretched as a face)."""
    if photo.note:
        import warnings

        warnings.warn(f"{where}: {photo.note}", stacklevel=user_frame())
    warn_if_stretched((photo.rgb.shape[1], photo.rgb.shape[0]), where)
    return torch.from_numpy(image_to_face(Image.fromarray(photo.rgb)))[None]


def warn_if_stretched(size: tuple[int, int], where: str, count: int = 1) -> None:
    """A warning where ``count`` images of ``size`` (width, height) are not shaped as face crops: a
    photo given as a face gave one label of its squeezed pixels without a word."""
    import warnings

    from ferlab.photos import nearly_square

    if not nearly_square(*size):
        note = stretched_note([f"{where} {size[0]}x{size[1]}"], count=count)[0]
        warnings.warn(note.replace("ferlab photo", "Model.detect"), stacklevel=user_frame())


def user_frame() -> int:
    """The ``stacklevel`` of the first caller outside ferlab (``Model.predict``'s, however deep the
    list of faces it was given), so a warning points at the user's line."""
    import sys

    frame, level = sys._getframe(1), 1  # the caller of this function is level 1
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] == "ferlab":
        frame, level = frame.f_back, level + 1
    return level


def as_faces_from_array(values: np.ndarray, where: str, channels_first: bool) -> torch.Tensor:
    values = array_to_uint8(values, where)
    given = array_images(values, where, channels_first)
    if given and given[0].shape == (IMAGE_SIZE, IMAGE_SIZE):  # gray 48x48 already: image_to_face is the identity
        return torch.from_numpy(np.stack(given))  # (the whole PrivateTest took 0.21 s through Pillow, a face at a time)
    images = [image_to_face(Image.fromarray(np.ascontiguousarray(image))) for image in given]
    if given:  # one warning for the whole array: its images share one shape
        warn_if_stretched((given[0].shape[1], given[0].shape[0]), where, len(given))
    return torch.from_numpy(np.stack(images))


@dataclass(frozen=True)
class FaceFiles:
    """Face images read from files: the faces that could be read, their ids (the paths), and one
    line per file that could not."""

    ids: list[str]
    faces: torch.Tensor    # (N, 48, 48) uint8
    problems: list[str]
    stretched: list[str] = ()  # "NAME WxH" of each image not shaped as a face crop: a photo, stretched to 48x48
    notes: list[str] = ()      # "NAME: note" of each image read with a ``Decoded.note`` (first frame, dark pixels)


def stretched_note(stretched: list[str], shown: int = 3, count: int | None = None) -> list[str]:
    """A line on the ``count`` (default: as many as named) images that do not look like face crops
    (``FaceFiles.stretched``), the first ``shown`` named; none where there are none."""
    if not stretched:
        return []
    names = ", ".join(stretched[:shown]) + (", ..." if len(stretched) > shown else "")
    return [f"{count or len(stretched)} image(s) not shaped as a face crop, each stretched to 48x48 as one face "
            f"({names}); ferlab photo finds the faces in photos"]


def file_notes(notes: list[str], shown: int = 3) -> list[str]:
    """``FaceFiles.notes`` for a terminal: the first ``shown`` as they are, the rest counted (a
    folder of a thousand animated GIFs would otherwise print a thousand lines)."""
    more = len(notes) - shown
    return notes[:shown] + ([f"... and {more} more image(s) with a note like these"] if more > 0 else [])


def read_face_files(paths: list[Path]) -> FaceFiles:
    """Each file as one face crop (``image_to_face``); a file that cannot be read is named in
    ``problems`` and the rest are still read. Images far from square are named in ``stretched``."""
    from ferlab.photos import nearly_square

    ids, faces, problems, stretched, notes = [], [], [], [], []
    for path in paths:
        try:
            photo = open_photo(path)
            faces.append(image_to_face(Image.fromarray(photo.rgb)))
            ids.append(str(path))
        except FerlabError as error:
            problems.append(str(error))
            continue
        height, width = photo.rgb.shape[:2]
        if not nearly_square(width, height):  # a group photo gave one label of its squeezed pixels without a word
            stretched.append(f"{path} {width}x{height}")
        if photo.note:
            notes.append(f"{path}: {photo.note}")
    stacked = torch.from_numpy(np.stack(faces)) if faces else torch.zeros(0, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.uint8)
    return FaceFiles(ids, stacked, problems, stretched, notes)


class Model:
    """A trained model, ready to use. Create it with ``ferlab.load``.

    ``tta`` is the test-time augmentation every answer uses (``none``, ``flip``, ``flip-zoom``)."""

    classes = EMOTIONS

    def __init__(self, loaded: LoadedModel, name: str = "", tta: str = "none"):
        self.loaded, self.name, self.tta = loaded, name, loaded.check_tta(tta)

    def __repr__(self) -> str:
        return f"ferlab.Model({self.name!r}, architecture={self.loaded.config.model!r}, tta={self.tta!r})"

    def predict(self, faces) -> Predictions:
        """Labels and probabilities of face crops (one or many; any form ``as_faces`` takes: paths, image
        files' bytes, PIL images, arrays, tensors)."""
        probabilities = self.loaded.probabilities(as_faces(faces), tta=self.tta).numpy()
        return Predictions([EMOTIONS[i] for i in probabilities.argmax(1)], probabilities)

    @property
    def network(self) -> torch.nn.Module:
        """The model's own PyTorch module (not a copy), in eval mode, for code of your own (Captum,
        a training loop, ``torch.export``): ``inputs(faces)`` -> (N, 7) float32 logits, in
        ``classes`` order; ``softmax(logits / temperature)`` gives ``predict``'s probabilities.
        ``predict`` runs it in the precision it was trained in (bf16 where the CPU or GPU has it),
        so its logits may differ from a float32 call's by up to about 0.1 (the shipped models: the
        same label for 99.8% of faces, BENCHMARKS.md); float32 runs at about half its speed on a
        bf16 CPU (``torch.autocast("cpu", dtype=torch.bfloat16)`` gives it back). An ensemble's module
        gives the log of its members' weighted calibrated probabilities."""
        self.check_module("network")
        return self.loaded.model

    def inputs(self, faces) -> torch.Tensor:
        """Faces in any form ``predict`` takes -> the (N, 1, 48, 48) float32 tensor ``network``
        takes: converted as ``predict`` converts them, then normalised as the model was trained
        (``standardize``: the training set's mean and std), on the module's device."""
        self.check_module("inputs")
        device = next(self.loaded.model.parameters()).device
        return self.loaded.normalization.apply(as_faces(faces)).to(device)

    @property
    def temperature(self) -> float:
        """The calibration temperature fitted on PublicTest (1 for a model never calibrated)."""
        return self.loaded.temperature

    def check_module(self, what: str) -> None:
        if self.loaded.is_graph:
            raise FerlabError(f"{self.name}: an ONNX graph runs in onnxruntime and has no PyTorch module ({what}); "
                              "load the checkpoint it was exported from")

    def detect(self, photo, explain: bool = False, layer: str | None = None, min_face: float = MIN_FACE,
               detector: str = DEFAULT_DETECTOR) -> list:
        """Every face in a photo (a path, its bytes, a PIL image or an (H, W[, C]) array), largest first: its
        box and detector score, label, probabilities, the 48x48 crop the model saw (of the region
        ``seen``: the box and a margin), and with ``explain`` its map ``cam`` (over ``seen``):
        Grad-CAM (at conv ``layer``; default: the deepest with maps at least 6x6), or occlusion
        where Grad-CAM does not apply (an ONNX graph, an ensemble, a dnn).
        ``min_face``: the smallest face, in pixels or (under 1) a fraction of the shorter side;
        ``detector``: ``haar`` (OpenCV) or ``hog`` (dlib). An animated or multi-page image gives
        its first frame's faces and a warning saying so (``video`` reads every frame). A path is
        read upright (turned as its EXIF says); a PIL image is taken as it is, with a warning where
        its EXIF says to turn it (``ImageOps.exif_transpose`` does)."""
        import warnings

        from ferlab.photos import analyze, check_map_request

        check_map_request(self.loaded, explain, layer)
        detection = Detection(detector, min_face)
        where = photo if isinstance(photo, (str, os.PathLike)) else "photo"
        if isinstance(photo, (str, os.PathLike, bytes)):
            opened = open_photo(photo if isinstance(photo, bytes) else as_path(photo, "photo"))
            if opened.note:
                warnings.warn(f"{where}: {opened.note}", stacklevel=2)
            rgb = opened.rgb
        elif isinstance(photo, Image.Image):
            if note := turn_note(photo):
                warnings.warn(f"photo: {note}", stacklevel=2)
            rgb = np.asarray(eight_bits(photo, "photo").convert("RGB"))
        else:
            rgb = photo_array(photo)
        faces = analyze(self.loaded, rgb, explain=explain, tta=self.tta, layer=layer, detection=detection)
        if not faces and (why := detection.rules_out_faces(rgb.shape)):
            warnings.warn(f"{where}: {why}", stacklevel=2)
        return faces

    def video(self, path: str | os.PathLike, output: str | os.PathLike = "video-results", *, detect_every: int = 1,
              smoothing: float = 0.6, min_face: float = MIN_FACE, detector: str = DEFAULT_DETECTOR,
              explain: bool = False, layer: str | None = None, progress: bool = False) -> dict:
        """``ferlab video`` in one call: every face followed through a video file, its
        probabilities smoothed over time. Writes the annotated video, the per-frame CSV, the
        timeline plot and the summary into ``output``; returns the summary (frames, fps, each
        face's frames, time on screen, mean probabilities and top emotion). ``explain`` lays each
        face's Grad-CAM (at ``layer``), or occlusion where Grad-CAM does not apply, over it in the
        annotated video. A video that decodes fewer frames than it announces (damaged or cut off)
        gives its results and a warning."""
        import warnings

        from ferlab.photos import check_map_request
        from ferlab.video import VideoOptions, frames_lost, process_video

        options = VideoOptions(detect_every=detect_every, smoothing=smoothing,
                               detection=Detection(detector, min_face), tta=self.tta, explain=explain, layer=layer)
        check_map_request(self.loaded, explain, layer)  # before the first frame
        summary = process_video(self.loaded, as_path(path, "video"), as_path(output, "output", output=True), options,
                                progress=progress)
        if problem := frames_lost(summary):
            warnings.warn(problem, stacklevel=2)
        return summary

    def explain(self, faces, method: str = "gradcam", target: str | int | None = None, **options) -> np.ndarray:
        """Raw (N, 48, 48) float32 maps of an explanation method (``ferlab.explain.list_methods()``)
        for the predicted class, or ``target`` (a class name or index) for every face. ``options``
        go to the method, e.g. ``layer="12"`` for Grad-CAM (default: the deepest conv layer with
        maps at least 6x6), ``num_samples`` for LIME or ``window`` for occlusion. An ONNX graph is
        explained by the methods that need no gradients (``ferlab.explain.gradient_free_methods()``)."""
        faces = as_faces(faces)
        if isinstance(target, str):
            if target not in EMOTIONS:
                raise FerlabError(f"unknown class {target!r}; classes: {', '.join(EMOTIONS)}")
            target = EMOTIONS.index(target)
        elif target is not None and (isinstance(target, bool) or not isinstance(target, (int, np.integer))
                                     or not 0 <= target < len(EMOTIONS)):
            raise FerlabError(f"target {target!r} is not a class index 0..{len(EMOTIONS) - 1} or name "
                              f"({', '.join(EMOTIONS)})")
        return self.loaded.explain(method, faces, target, **options)[:, 0].numpy()


def load(model: str | os.PathLike = "default", *, checkpoint: str = "best", tta: str = "none",
         device: str = "auto") -> Model:
    """A model by name or path: ``"default"`` (shipped with ferlab), ``"default-fast"`` (its student
    for CPUs; the figures of both are on their cards), a run folder (its
    ``best.pt``, or ``last.pt`` with ``checkpoint="last"``) or a checkpoint file; on ``device``
    (``auto``: the GPU when there is one, else the CPU; or ``cpu``, ``cuda``, ``cuda:1``). An ONNX
    graph of ``ferlab export`` (``model.onnx``, float32 or ``--int8``) runs in onnxruntime on the
    CPU: ``predict``, ``detect`` and ``video`` as for a checkpoint, ``explain`` with the methods
    that need no gradients (LIME, occlusion; ``detect(explain=True)`` overlays occlusion)."""
    return Model(load_model(model, checkpoint, device, graphs=True), str(model), tta)
