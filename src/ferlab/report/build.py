"""``ferlab report RUN``: everything about a trained model in one self-contained HTML page.

The page embeds every image (base64), needs no server and no network, and every figure is also
written as a PNG in the run folder.
"""

from __future__ import annotations

import base64
import html
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jinja2
import torch

from ferlab.checkpoint import LoadedModel, read_checkpoint
from ferlab.data.faceset import FaceSet
from ferlab.explain import NotApplicable, explain, method_title
from ferlab.explain.filters import feature_maps, shallow_middle_deep, visualize_filters
from ferlab.explain.postprocess import masked_faces
from ferlab.explain.trust import SANITY_THRESHOLD, assess, random_baseline
from ferlab.labels import EMOTIONS
from ferlab.models.summary import summarize
from ferlab.report.explain_figures import (plot_feature_maps, plot_filter_visualisations, plot_method_panels,
                                           plot_trust_curves)
from ferlab.report.figures import plot_history
from ferlab.runs import data_tag, evaluate_split, write_json

# The methods of the per-class panels and of the trust table, in display order.
ATTRIBUTION_METHODS = ("saliency", "gradcam", "hirescam", "guided_gradcam", "lime")


@dataclass(frozen=True)
class ReportOptions:
    trust_faces_per_class: int = 2   # the trust sample: the first faces of each class in the test split, by id
    lime_samples: int = 1000         # perturbed images per LIME explanation in the class panels
    trust_lime_samples: int = 250    # ... in the trust table (LIME runs twice there: trained and random model)
    filter_steps: int = 200          # gradient-ascent steps per filter visualisation
    filters: int = 32                # filters shown per layer
    mask_fraction: float = 0.2       # the masked face keeps this share of the most salient pixels


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


def deletion_fill(loaded: LoadedModel, inputs: torch.Tensor) -> tuple[float, str]:
    if loaded.normalization.kind == "standardize":
        return 0.0, "the training-set mean gray level (0 after standardisation)"
    return float(inputs.mean()), "the mean gray level of the trust sample"


def build_report(run_dir: Path, loaded: LoadedModel, faces: FaceSet, options: ReportOptions = ReportOptions(),
                 log: Callable[[str], None] = print) -> Path:
    model, norm = loaded.model, loaded.normalization
    timings: dict[str, float] = {}
    started_all = time.perf_counter()

    def timed(label: str, function, *args, **kwargs):
        started = time.perf_counter()
        value = function(*args, **kwargs)
        timings[label] = timings.get(label, 0.0) + time.perf_counter() - started
        return value

    log("report: evaluating on PrivateTest")
    test = faces.split("test")
    tag = data_tag(faces.source, loaded.checkpoint.get("data", {}).get("source"))  # other data: its own eval file
    evaluation = timed("evaluation", evaluate_split, loaded, faces, "test", run_dir, tag=tag)
    last = run_dir / "last.pt"  # the whole history; best.pt's ends at the best epoch
    history = read_checkpoint(last)["history"] if last.exists() else loaded.checkpoint.get("history", [])
    if history:
        plot_history(history, run_dir / "curves.png", f"{loaded.config.model} ({run_dir.name})")
    probabilities = evaluation.pop("probabilities")

    log("report: explaining one face per class")
    examples = pick_examples(loaded, test, probabilities)
    faces_u8 = test.images[examples]
    inputs = norm.apply(faces_u8)
    targets = test.labels[examples]
    captions = [f"{EMOTIONS[int(t)]} ({float(probabilities[i, t]):.2f})" for i, t in zip(examples, targets)]
    maps: dict[str, torch.Tensor | None] = {}
    notes: dict[str, str] = {}
    for method in ATTRIBUTION_METHODS:
        extra = {"num_samples": options.lime_samples} if method == "lime" else {}
        try:
            maps[method] = timed(method, explain, method, model, inputs, targets, **extra)
        except NotApplicable as error:
            maps[method], notes[method] = None, str(error)
    masked = masked_faces(faces_u8, maps["saliency"], options.mask_fraction)
    panels = {
        "saliency": (maps["saliency"], "fine"),
        f"masked (top {options.mask_fraction:.0%})": (masked, "gray"),
        "Grad-CAM": (maps["gradcam"], "heat"),
        "HiResCAM": (maps["hirescam"], "heat"),
        "Guided Grad-CAM": (maps["guided_gradcam"], "fine"),
        "LIME (red: for, blue: against)": (maps["lime"], "signed"),
    }
    plot_method_panels(faces_u8, captions, panels, run_dir / "explanations.png",
                       "one correctly classified PrivateTest face per class (model confidence)")

    log(f"report: visualising filters ({options.filter_steps} gradient-ascent steps per layer)")
    layers = shallow_middle_deep(model)
    filters = {f"layer {name}": timed("filter visualisation", visualize_filters, model, name, options.filters,
                                      options.filter_steps) for name in layers}
    if filters:
        plot_filter_visualisations(filters, run_dir / "filters.png",
                                   "inputs that maximise each filter's mean activation (shallow, middle, deep)")
        happy = examples[EMOTIONS.index("happy")] if len(examples) == len(EMOTIONS) else examples[0]
        activations = {f"layer {name}": timed("feature maps", feature_maps, model, norm.apply(test.images[[happy]]), name)[0]
                       for name in layers}
        plot_feature_maps(test.images[happy], activations, run_dir / "feature-maps.png")

    log("report: measuring trust (deletion/insertion, randomisation check)")
    sample = trust_sample(test, options.trust_faces_per_class)
    trust_inputs, trust_targets = norm.apply(test.images[sample]), test.labels[sample]
    fill, fill_text = deletion_fill(loaded, trust_inputs)
    baseline = timed("trust: random order", random_baseline, model, trust_inputs, trust_targets, fill=fill)
    trust = []
    for method in ATTRIBUTION_METHODS:
        extra = {"num_samples": options.trust_lime_samples} if method == "lime" else {}
        trust.append(timed(f"trust: {method}", assess, method, model, trust_inputs, trust_targets, name=method, fill=fill,
                           options=extra, baseline=baseline))
    curves = {method_title(r.method): r.curves for r in trust if r.curves is not None}
    curves["random order"] = baseline
    plot_trust_curves(curves, run_dir / "trust-curves.png")
    timings["total"] = time.perf_counter() - started_all

    rows, total = summarize(model)
    trust_rows = [{"method": method_title(r.method), "deletion": r.deletion_auc, "insertion": r.insertion_auc,
                   "random_deletion": r.random_deletion_auc, "random_insertion": r.random_insertion_auc,
                   "rho": r.randomization_rho, "passes": r.passes_sanity and not r.note, "verdict": r.verdict()}
                  for r in trust]
    write_json(run_dir / "trust.json", {"faces": len(sample), "fill": fill_text, "threshold": SANITY_THRESHOLD,
                                        "methods": trust_rows})
    write_json(run_dir / "report-timings.json", {k: round(v, 2) for k, v in timings.items()})
    evaluated = evaluation["name"]  # test, or test-on-<data> for other data than the model's
    files = {"curves": "curves", "confusion-test": f"confusion-{evaluated}", "misclassified-test": f"misclassified-{evaluated}",
             "reliability-test": f"reliability-{evaluated}",
             **{name: name for name in ("explanations", "filters", "feature-maps", "trust-curves")}}
    figures = {name: data_uri(run_dir / f"{file}.png") for name, file in files.items() if (run_dir / f"{file}.png").exists()}
    environment = jinja2.Environment(loader=jinja2.PackageLoader("ferlab.report", "templates"),
                                     autoescape=jinja2.select_autoescape(["html"]))
    page = environment.get_template("report.html").render(
        run=run_dir.name, model=loaded.config.model, config=loaded.config, parameters=total,
        summary_rows=rows, evaluation=evaluation, history=history, figures=figures, notes=notes,
        trust_rows=trust_rows, trust_faces=len(sample), fill_text=fill_text, threshold=SANITY_THRESHOLD,
        timings=timings, emotions=EMOTIONS, generated=time.strftime("%Y-%m-%d %H:%M"), escape=html.escape)
    path = run_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    log(f"report: wrote {path} in {timings['total']:.0f}s")
    return path
