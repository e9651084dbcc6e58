"""``ferlab report RUN``: everything about a trained model in one self-contained HTML page.

The page embeds every image (base64), needs no server and no network, and every figure is also
written as a PNG in the run folder.
"""

from __future__ import annotations

import base64
import html
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import jinja2
import torch

from ferlab.checkpoint import LoadedModel
from ferlab.data.faceset import FaceSet
from ferlab.errors import FerlabError, UnknownChoice
from ferlab.explain import NotApplicable, get_spec, list_methods, methods_for
from ferlab.explain.common import check_layer, conv_layers, default_layer, layer_sides
from ferlab.explain.filters import feature_maps, shallow_middle_deep, visualize_filters
from ferlab.explain.lime_method import MAX_SAMPLES as MAX_LIME_SAMPLES
from ferlab.explain.postprocess import masked_faces
from ferlab.explain.trust import SANITY_THRESHOLD, assess, random_baseline
from ferlab.labels import EMOTIONS
from ferlab.models.summary import summarize
from ferlab.outputs import write_text
from ferlab.report.explain_figures import (plot_feature_maps, plot_filter_visualisations, plot_method_panels,
                                           plot_trust_curves)
from ferlab.report.figures import plot_history
from ferlab.runs import data_tag, evaluate_split, write_json

MAX_FILTER_STEPS = 10_000  # gradient-ascent steps per filter: 40 show its pattern
STAGES = ("explanations", "filters", "trust")  # what --skip may leave out (the evaluation is always made)


@dataclass(frozen=True)
class ReportOptions:
    trust_faces_per_class: int = 2   # the trust sample: the first faces of each class in the test split, by id
    trust_steps: int = 16            # deletion/insertion steps (each removes 1/16 of the pixels)
    lime_samples: int = 300          # perturbed images per LIME explanation in the class panels
    trust_lime_samples: int = 100    # ... in the trust table (LIME runs twice there: trained and random model)
    filter_steps: int = 40           # gradient-ascent steps per filter visualisation
    filter_lr: float = 0.1           # the ascent's step size (Adam, model-input units)
    filters: int = 16                # filters shown per layer
    mask_fraction: float = 0.2       # the masked face keeps this share of the most salient pixels
    layer: str | None = None         # the CAM methods' conv layer (None: explain.common.default_layer)
    skip: tuple[str, ...] = ()       # stages of STAGES to leave out
    progress: bool = True            # a progress bar per stage

    def __post_init__(self) -> None:
        """Each setting in range, or one FerlabError naming it, before the report's first stage
        (a trust sample of 0 faces per class failed with an IndexError after the evaluation)."""
        ranges = {"trust_faces_per_class": (1, None), "trust_steps": (1, 48 * 48), "filters": (1, None),
                  "lime_samples": (2, MAX_LIME_SAMPLES), "trust_lime_samples": (2, MAX_LIME_SAMPLES),  # the face itself first
                  "filter_steps": (1, MAX_FILTER_STEPS)}  # 1e20 steps ran on without end
        for name, (low, high) in ranges.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low or (high and value > high):
                allowed = f"{low}..{high:,}" if high else f"at least {low}"
                raise FerlabError(f"{name.replace('_', '-')} {value!r} must be a whole number, {allowed}")
        if not (isinstance(self.filter_lr, (int, float)) and 0 < self.filter_lr < math.inf):
            raise FerlabError(f"filter-lr {self.filter_lr!r} must be a positive finite number")
        if not (isinstance(self.mask_fraction, (int, float)) and 0 < self.mask_fraction <= 1):
            raise FerlabError(f"mask-fraction {self.mask_fraction!r} must lie in (0, 1]")
        if unknown := sorted(set(self.skip) - set(STAGES)):
            raise UnknownChoice(f"cannot skip {', '.join(unknown)}; stages: {', '.join(STAGES)}")

    def method_options(self, samples: int) -> dict:
        """Options offered to every method; each takes those it accepts (``MethodSpec.accepted``)."""
        return {"num_samples": samples, "layer": self.layer}


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def pick_examples(loaded: LoadedModel, test: FaceSet, probabilities: torch.Tensor) -> list[int]:
    """For each class, the correctly classified test face the model is most confident about."""
    predictions = probabilities.argmax(1)
    chosen = []
    for cls in range(len(EMOTIONS)):
        candidates = ((test.labels == cls) & (predictions == cls)).nonzero().flatten()
        if len(candidates) == 0:  # no correct face of this class: show the most probable one
            candidates = (test.labels == cls).nonzero().flatten()
        if len(candidates):
            chosen.append(int(candidates[probabilities[candidates, cls].argmax()]))
    return chosen


def trust_sample(test: FaceSet, per_class: int) -> torch.Tensor:
    order = sorted(range(len(test)), key=lambda i: test.ids[i])
    picked: dict[int, list[int]] = {c: [] for c in range(len(EMOTIONS))}
    for i in order:
        label = int(test.labels[i])
        if len(picked[label]) < per_class:
            picked[label].append(i)
    return torch.tensor([i for c in picked for i in picked[c]])


def fill_text(loaded: LoadedModel) -> str:
    """What hidden pixels become (``LoadedModel.mean_gray``), in words for the page."""
    units = {"standardize": "0 after standardisation", "rescale": f"{loaded.mean_gray:.3f} on the model's 0..1 scale",
             "none": f"pixel value {loaded.mean_gray:.1f} of 255"}[loaded.normalization.kind]
    return f"the training-set mean gray level ({units})"


class Stages:
    """Timed stages with a progress bar each (tqdm, on stderr); ``timings`` collects the seconds."""

    def __init__(self, progress: bool, log: Callable[[str], None]):
        self.progress, self.log, self.timings = progress, log, {}

    def run(self, stage: str, items: dict[str, Callable[[], object]]) -> dict[str, object]:
        """Call each of ``items`` (label -> function) under one bar; their results by label."""
        from ferlab.progress import progress_bar

        self.log(f"report: {stage}")
        results = {}
        with progress_bar(total=len(items), desc=stage, unit="step", leave=False, show=self.progress) as bar:
            for label, function in items.items():
                bar.set_postfix_str(label)
                started = time.perf_counter()
                results[label] = function()
                self.timings[label] = self.timings.get(label, 0.0) + time.perf_counter() - started
                bar.update()
        return results


def report_split(faces: FaceSet, log: Callable[[str], None]) -> str:
    """PrivateTest ("test") where the data has it labelled; else the held-out split ("val"), e.g. for
    a run trained on the course's train.csv, which has no PrivateTest."""
    test = faces.split("test")
    if len(test) and test.labelled:
        return "test"
    log(f"report: {faces.source} has no labelled test split; reporting on the held-out {faces.split_title('val')}")
    return "val"


def report_methods(model: torch.nn.Module) -> tuple[list[str], dict[str, str]]:
    """The explanation methods the report runs on ``model``, and a note on those it leaves out: an
    ONNX graph gives no gradients, so only the gradient-free methods explain it."""
    methods = methods_for(model)
    left_out = [get_spec(name).title for name in list_methods() if name not in methods]
    return methods, ({", ".join(left_out): "need gradients, and an ONNX graph gives answers only"} if left_out else {})


def explanation_panels(loaded: LoadedModel, faces_u8: torch.Tensor, targets: torch.Tensor, options: ReportOptions,
                       stages: Stages) -> tuple[dict, dict[str, str]]:
    """Every registered method's maps of ``faces_u8`` as figure panels (title -> (maps, display)),
    the saliency-masked faces after saliency; and a note for each method that does not apply."""
    offered = options.method_options(options.lime_samples)

    def attempt(name: str):
        try:
            return loaded.explain(name, faces_u8, targets, **get_spec(name).accepted(offered))
        except NotApplicable as error:
            return error

    methods, notes = report_methods(loaded.model)
    maps = stages.run("explaining one face per class", {name: partial(attempt, name) for name in methods})
    panels = {}
    for name, result in maps.items():
        spec = get_spec(name)
        if isinstance(result, NotApplicable):
            notes[spec.title], result = str(result), None
        panels[spec.title + (" (red: for, blue: against)" if spec.display == "signed" else "")] = (result, spec.display)
        if name == "saliency" and result is not None:
            panels[f"masked (top {options.mask_fraction:.0%})"] = (masked_faces(faces_u8, result, options.mask_fraction), "gray")
    return panels, notes


def layer_variants(model: torch.nn.Module, options: ReportOptions) -> list[tuple[str, str | None]]:
    """(label, layer) pairs the trust table measures for CAM methods: the chosen layer, and the
    deepest one beside it when they differ, so the default's choice is shown, not asserted."""
    layers = [name for name, _ in conv_layers(model)]
    if not layers:
        return [("", options.layer)]
    sides = layer_sides(model)
    chosen = options.layer if options.layer is not None else default_layer(model, sides)
    chosen = layers[-1] if chosen == "last" else str(chosen)
    variants = [(f" (layer {chosen}, {sides[chosen]}x{sides[chosen]})", chosen)] if chosen in sides else [("", chosen)]
    if chosen != layers[-1]:
        variants.append((f" (last layer {layers[-1]}, {sides[layers[-1]]}x{sides[layers[-1]]})", layers[-1]))
    return variants


def trust_jobs(options: ReportOptions, methods: list[str], variants: list[tuple[str, str | None]],
               fill: float) -> dict[str, tuple[str, dict]]:
    """Row title -> (method, options) for the trust table: each of ``methods``, and the CAM heat
    maps (methods that take a ``layer`` and are drawn as heat) at each of ``variants``
    (``layer_variants``); methods that hide pixels hide them with ``fill``."""
    offered, jobs = {**options.method_options(options.trust_lime_samples), "fill": fill}, {}
    for name in methods:
        spec = get_spec(name)
        compared = "layer" in spec.options and spec.display == "heat"
        for suffix, layer in (variants if compared else [("", None)]):
            jobs[spec.title + suffix] = (name, spec.accepted({**offered, "layer": layer}))
    return jobs


def trust_results(loaded: LoadedModel, test: FaceSet, options: ReportOptions, stages: Stages,
                  variants: list[tuple[str, str | None]]) -> dict:
    """The trust table's rows (``TrustResult`` per row title), the mean curves per row for the
    figure, how deleted pixels are filled, and the sample's size."""
    sample = trust_sample(test, options.trust_faces_per_class)
    inputs, targets = loaded.normalization.apply(test.images[sample]), test.labels[sample]
    fill, model = loaded.mean_gray, loaded.model
    with loaded.threads():
        baseline = random_baseline(model, inputs, targets, fill=fill, steps=options.trust_steps)
        jobs = {title: partial(assess, method, model, inputs, targets, name=title, fill=fill, options=accepted,
                               baseline=baseline, steps=options.trust_steps)
                for title, (method, accepted) in trust_jobs(options, methods_for(model), variants, fill).items()}
        results = stages.run("measuring trust", jobs)
    curves = {title: r.curves for title, r in results.items() if r.curves is not None}
    return {"results": list(results.values()), "curves": {**curves, "random order": baseline},
            "fill": fill_text(loaded), "faces": len(sample), "steps": options.trust_steps}


def filter_figures(loaded: LoadedModel, face: torch.Tensor, run_dir: Path, options: ReportOptions,
                   stages: Stages) -> None:
    """filters.png (inputs that maximise a shallow, a middle and a deep layer's filters) and
    feature-maps.png (those layers' outputs for one (48, 48) uint8 face); nothing for a model
    without conv layers."""
    model, layers = loaded.model, shallow_middle_deep(loaded.model)
    if not layers:
        return
    filters = stages.run(f"visualising filters ({options.filter_steps} gradient-ascent steps per layer)", {
        f"layer {name}": partial(visualize_filters, model, name, options.filters, options.filter_steps, options.filter_lr)
        for name in layers})
    plot_filter_visualisations(filters, run_dir / "filters.png",
                               "inputs that maximise each filter's mean activation (shallow, middle, deep)")
    inputs = loaded.normalization.apply(face[None])
    activations = {f"layer {name}": feature_maps(model, inputs, name)[0] for name in layers}
    plot_feature_maps(face, activations, run_dir / "feature-maps.png")


def build_report(run_dir: Path, loaded: LoadedModel, faces: FaceSet, options: ReportOptions = ReportOptions(),
                 log: Callable[[str], None] = print) -> Path:
    check_layer(loaded.model, options.layer)  # before the evaluation, not after it
    stages, started = Stages(options.progress, log), time.perf_counter()
    split = report_split(faces, log)
    tag = data_tag(faces.source, loaded.checkpoint.get("data", {}).get("source"))  # other data: its own eval file
    evaluation = stages.run(f"evaluating on {faces.split_title(split)}", {
        "evaluation": partial(evaluate_split, loaded, faces, split, run_dir, tag=tag)})["evaluation"]
    history = loaded.checkpoint.get("history", [])  # the whole run's (best.pt keeps it since training ends)
    if history:
        plot_history(history, run_dir / "curves.png", f"{loaded.config.model} ({run_dir.name})")
    test, probabilities = faces.split(split), evaluation.pop("probabilities")
    examples = pick_examples(loaded, test, probabilities)
    notes = {}
    if "explanations" not in options.skip:
        targets = test.labels[examples]
        panels, notes = explanation_panels(loaded, test.images[examples], targets, options, stages)
        captions = [f"{EMOTIONS[int(t)]} ({float(probabilities[i, t]):.2f})" for i, t in zip(examples, targets)]
        plot_method_panels(test.images[examples], captions, panels, run_dir / "explanations.png",
                           f"one correctly classified {faces.split_title(split)} face per class (model confidence)")
    if "filters" not in options.skip:
        happy = examples[EMOTIONS.index("happy")] if len(examples) == len(EMOTIONS) else examples[0]
        filter_figures(loaded, test.images[happy], run_dir, options, stages)
    variants = layer_variants(loaded.model, options)
    trust = trust_results(loaded, test, options, stages, variants) if "trust" not in options.skip else None
    if trust:
        plot_trust_curves(trust["curves"], run_dir / "trust-curves.png")
    stages.timings["total"] = time.perf_counter() - started
    cam_layer = variants[0][0].strip(" ()") or "none (no conv layers)"
    path = write_page(run_dir, loaded, evaluation, history, notes, trust, stages.timings, cam_layer)
    log(f"report: wrote {path} in {stages.timings['total']:.0f}s")
    return path


def trust_rows(trust: dict) -> list[dict]:
    return [{"method": r.method, "deletion": r.deletion_auc, "insertion": r.insertion_auc,
             "random_deletion": r.random_deletion_auc, "random_insertion": r.random_insertion_auc,
             "rho": r.randomization_rho, "passes": r.passes_sanity and not r.note, "checked": not r.unchecked,
             "verdict": r.verdict()}
            for r in trust["results"]]


def json_numbers(row: dict) -> dict:
    """``row`` with NaN (a method that does not apply, a check not made) as null: strict JSON."""
    return {key: None if isinstance(value, float) and math.isnan(value) else value for key, value in row.items()}


def write_page(run_dir: Path, loaded: LoadedModel, evaluation: dict, history: list, notes: dict, trust: dict | None,
               timings: dict, cam_layer: str) -> Path:
    """report.html (every figure embedded), trust.json and report-timings.json."""
    graph = loaded.describe() if loaded.is_graph else None  # no modules to tabulate
    rows, total = ([], 0) if graph else summarize(loaded.model)
    trust_table = trust_rows(trust) if trust else []
    if trust:
        write_json(run_dir / "trust.json", {"faces": trust["faces"], "fill": trust["fill"], "threshold": SANITY_THRESHOLD,
                                            "methods": [json_numbers(row) for row in trust_table]})
    write_json(run_dir / "report-timings.json", {k: round(v, 2) for k, v in timings.items()})
    evaluated = evaluation["name"]  # test, or test-on-<data> for other data than the model's
    files = {"curves": "curves", "confusion": f"confusion-{evaluated}", "misclassified": f"misclassified-{evaluated}",
             "reliability": f"reliability-{evaluated}",
             **{name: name for name in ("explanations", "filters", "feature-maps", "trust-curves")}}
    figures = {name: data_uri(run_dir / f"{file}.png") for name, file in files.items() if (run_dir / f"{file}.png").exists()}
    environment = jinja2.Environment(loader=jinja2.PackageLoader("ferlab.report", "templates"),
                                     autoescape=jinja2.select_autoescape(["html"]))
    page = environment.get_template("report.html").render(
        run=run_dir.name, model=loaded.config.model, config=loaded.config, parameters=total, graph=graph,
        summary_rows=rows, evaluation=evaluation, history=history, best_epoch=loaded.checkpoint.get("epoch"),
        figures=figures, notes=notes, trust_rows=trust_table, trust_faces=trust["faces"] if trust else 0,
        fill_text=trust["fill"] if trust else "", trust_steps=trust["steps"] if trust else 0, threshold=SANITY_THRESHOLD, timings=timings, emotions=EMOTIONS,
        methods=[get_spec(name) for name in methods_for(loaded.model)], cam_layer=cam_layer,
        generated=time.strftime("%Y-%m-%d %H:%M"),
        escape=html.escape)
    path = run_dir / "report.html"
    write_text(path, page)
    return path
