"""Checkpoints are validated on load: whatever is inconsistent is one line naming the file, never a
traceback and never a model used half-loaded (issue 11: defect 8)."""

from __future__ import annotations

import re

import pytest
import torch

from ferlab.checkpoint import export_checkpoint, load_model, read_checkpoint, save_checkpoint, shipped_model_path
from ferlab.cli import main
from ferlab.errors import FerlabError
from ferlab.tta import TTA_POLICIES


@pytest.fixture(scope="module")
def payload():
    return torch.load(shipped_model_path(), weights_only=True)


def damaged(payload: dict, change) -> dict:
    copy = {**payload, "config": dict(payload["config"]), "model": dict(payload["model"]),
            "normalization": dict(payload["normalization"])}
    change(copy)
    return copy


def first_weight(payload: dict) -> str:
    return next(iter(payload["model"]))


CASES = {
    "unknown architecture": (lambda p: p["config"].update(model="transformer"), "unknown model 'transformer'"),
    "wrong shape": (lambda p: p["model"].update({first_weight(p): torch.zeros(3, 3)}), "has shape (3, 3)"),
    "missing weight": (lambda p: p["model"].pop(first_weight(p)), "weights do not match model 'fastnet': missing"),
    "extra weight": (lambda p: p["model"].update(extra=torch.zeros(1)), "unexpected extra"),
    "weight of the wrong type": (lambda p: p["model"].update({first_weight(p): [1.0, 2.0]}), "is a list, not a tensor"),
    "weight of NaNs": (lambda p: p["model"].update({first_weight(p): torch.full_like(p["model"][first_weight(p)], float("nan"))}),
                       "holds NaN or infinite values"),
    "one infinite weight": (lambda p: p["model"].update({first_weight(p): p["model"][first_weight(p)].clone().index_fill_(0, torch.tensor([1]), float("inf"))}),
                            "holds NaN or infinite values"),
    "integer weight": (lambda p: p["model"].update({first_weight(p): p["model"][first_weight(p)].long()}), "torch.int64"),
    "unknown normalisation": (lambda p: p["normalization"].update(kind="whiten"), "unknown normalization kind 'whiten'"),
    "zero std": (lambda p: p["normalization"].update(std=0.0), "std positive"),
    "config value of the wrong type": (lambda p: p["config"].update(epochs="many"), "epochs must be int"),
    "missing config": (lambda p: p.pop("config"), "missing or malformed 'config' entry"),
    "foreign classes": (lambda p: p.update(classes=["cat", "dog"]), "classes ['cat', 'dog'] differ"),
    "bad temperature": (lambda p: p.update(calibration={"temperature": -1.0}), "calibration temperature -1.0"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_an_inconsistent_checkpoint_is_one_line_naming_the_file(tmp_path, payload, case, capsys):
    change, message = CASES[case]
    path = tmp_path / "model.pt"
    save_checkpoint(path, {k: v for k, v in damaged(payload, change).items() if k not in ("format", "version")})
    with pytest.raises(FerlabError, match=rf"^{path}: .*{__import__('re').escape(message)}"):
        load_model(path)
    code = main(["evaluate", str(path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith(f"ferlab: error: {path}: ") and "\n" not in err


@pytest.mark.parametrize("damage, message", [
    (lambda whole: b"", "not a zip archive"),  # empty
    (lambda whole: b"junk\n", "not a zip archive"),  # another kind of file
    (lambda whole: whole[: len(whole) // 2], "not a zip archive"),  # cut off in transfer: no central directory
    (lambda whole: whole[:4096] + bytes(len(whole) - 8192) + whole[-4096:], "not a readable checkpoint"),  # tensors zeroed
])
def test_a_damaged_checkpoint_file_is_one_short_line_naming_it(tmp_path, damage, message, capsys):
    path = tmp_path / "model.pt"
    path.write_bytes(damage(shipped_model_path().read_bytes()))
    with pytest.raises(FerlabError, match=rf"^{path}: .*{message}"):
        read_checkpoint(path)
    code = main(["evaluate", str(path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith(f"ferlab: error: {path}: ") and "\n" not in err and len(err) < 300, err


def test_weights_saved_by_other_code_are_named_for_what_they_are(tmp_path):
    """A state_dict (bare, or under "model" / "state_dict" as other trainers nest it) was "not a
    ferlab checkpoint"; a whole pickled model was torch's paragraph of advice cut at 120 characters,
    terminal escape codes and all."""
    from ferlab.models import build_model

    model = build_model("fastnet")
    weights_alone = "not a ferlab checkpoint (weights alone, a state_dict: ferlab's checkpoints also record"
    for name, saved in (("bare.pt", model.state_dict()), ("nested.ckpt", {"state_dict": model.state_dict(), "epoch": 3})):
        torch.save(saved, tmp_path / name)
        with pytest.raises(FerlabError, match=rf"^{tmp_path / name}: {re.escape(weights_alone)}"):
            read_checkpoint(tmp_path / name)
    torch.save({"accuracy": 0.7}, tmp_path / "other.pt")
    with pytest.raises(FerlabError, match=rf"^{tmp_path / 'other.pt'}: not a ferlab checkpoint$"):
        read_checkpoint(tmp_path / "other.pt")
    torch.save(model, tmp_path / "whole.pt")
    with pytest.raises(FerlabError) as error:
        read_checkpoint(tmp_path / "whole.pt")
    assert str(error.value) == (f"{tmp_path / 'whole.pt'}: refused by torch.load(weights_only=True); it holds more than "
                                "plain tensors and containers (a pickled ferlab.models.layers.FeaturesHead: a whole model "
                                "saved with torch.save(model), or another object)")


def test_a_checkpoint_that_would_unpack_to_more_than_it_holds_is_refused_before_loading(tmp_path, monkeypatch, capsys):
    import zipfile

    import ferlab.checkpoint

    deflated = tmp_path / "deflated.pt"  # torch.load inflates such members: 15 MiB of zeros became a 1 GiB tensor
    with zipfile.ZipFile(shipped_model_path()) as source, zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as target:
        for member in source.infolist():
            target.writestr(member.filename, source.read(member.filename))
    with pytest.raises(FerlabError, match=rf"^{deflated}: \d+ compressed members \(.*\); torch.save stores members uncompressed"):
        read_checkpoint(deflated)
    code = main(["evaluate", str(deflated), "--out", str(tmp_path / "out")])
    assert code == 2 and "compressed members" in capsys.readouterr().err
    monkeypatch.setattr(ferlab.checkpoint, "MAX_CHECKPOINT_BYTES", 2**20)
    with pytest.raises(FerlabError, match=r"unpacks to 15 MiB, over the limit of 1 MiB for a checkpoint$"):
        read_checkpoint(shipped_model_path())


def test_an_onnx_graph_given_as_a_model_says_where_it_runs(tmp_path, capsys):
    """Another producer's graph: evaluate, report and ensemble (which run ferlab's own graphs,
    tests/test_graph.py) say it is not one; calibrate, which needs the PyTorch model, says what runs
    a graph at all."""
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x08\x12\x07pytorch")  # the start of an ONNX ModelProto: ir_version, producer
    for command, said in (("evaluate", "not a graph that ferlab export wrote"), ("report", "not a graph that ferlab export wrote"),
                          ("ensemble", "not a graph that ferlab export wrote"), ("calibrate", "an ONNX graph gives answers only")):
        code = main([command, str(path), *(["default"] if command == "ensemble" else []), "--out", str(tmp_path / "out.pt")])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.startswith(f"ferlab: error: {path}: {said}") and "\n" not in err, err


def test_a_fifo_or_device_given_as_a_model_or_data_is_named_not_read(tmp_path, capsys):
    """Reading a FIFO would block for ever; it and a device are named as what they are, not as a
    missing checkpoint or an unknown data format."""
    import os

    model, data = tmp_path / "model.pt", tmp_path / "fer2013.csv"
    os.mkfifo(model)
    os.mkfifo(data)
    for argv, named in ((["evaluate", str(model)], model), (["evaluate", "default", "--data", str(data)], data),
                        (["evaluate", "default", "--data", "/dev/zero"], "/dev/zero")):
        code = main([*argv, "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err == f"ferlab: error: {named}: not a regular file (a device, socket or FIFO)"


def test_an_exported_checkpoint_cannot_be_resumed(tmp_path, payload, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    export_checkpoint(payload, run_dir / "last.pt")
    with pytest.raises(FerlabError, match="an exported checkpoint .* cannot be resumed"):
        read_checkpoint(run_dir / "last.pt", for_resume=True)
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 2
    assert "cannot be resumed; start a new run" in capsys.readouterr().err
    assert main(["train", "--resume", str(run_dir / "last.pt"), "--quiet"]) == 2
    assert "expected a run folder" in capsys.readouterr().err


def test_the_shipped_model_passes_its_own_checks(payload):
    assert load_model("default").config.model == payload["config"]["model"]


def test_logits_by_policy_equal_each_policys_own_inference_bit_for_bit(sample_faces):
    loaded, faces = load_model("default"), sample_faces.split("val").images[:40]
    shared = loaded.logits_by_policy(faces, list(TTA_POLICIES))
    for policy in TTA_POLICIES:
        assert torch.equal(shared[policy], loaded.logits(faces, policy)), policy
