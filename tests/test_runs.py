"""Run and output folders (``ferlab.runs``)."""

from __future__ import annotations

import pytest

from ferlab.errors import FerlabError
from ferlab.runs import OWNER_FILE, make_folder, removed_if_left_empty


def test_a_failure_removes_only_the_folders_it_made_and_left_empty(tmp_path):
    (tmp_path / "there").mkdir()
    with pytest.raises(FerlabError), removed_if_left_empty():
        make_folder(tmp_path / "there" / "a" / "b")       # a and b made; "there" was there
        make_folder(tmp_path / "claimed")
        (tmp_path / "claimed" / OWNER_FILE).write_text("default\n")  # only the claim: empty
        make_folder(tmp_path / "written")
        (tmp_path / "written" / "results.json").write_text("{}")     # an output: kept
        raise FerlabError("an input could not be read")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["there", "written"]
    assert list((tmp_path / "there").iterdir()) == []


def test_success_and_folders_made_outside_a_command_are_left_alone(tmp_path):
    with removed_if_left_empty():
        make_folder(tmp_path / "ok")
    make_folder(tmp_path / "outside")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok", "outside"]


def test_a_folder_no_model_claims_may_hold_other_files_but_none_of_a_figures_name(tmp_path, capsys, sample_archive):
    """evaluate -o of a folder holding the user's metrics.json was a JSONDecodeError (a valid one
    would have been merged into); an ensemble now claims its --out, so it writes there again."""
    from ferlab.cli import main
    from ferlab.runs import check_owner

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine\n")
    check_owner(mine, "some model")  # other files: free to write beside
    (mine / "metrics.json").write_text("mine\n")
    with pytest.raises(FerlabError, match=r"metrics.json: not written by ferlab for a model, and would be replaced"):
        check_owner(mine, "some model")
    assert main(["evaluate", "default-fast", "--data", str(sample_archive), "-o", str(mine)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"ferlab: error: {mine / 'metrics.json'}: not written by ferlab for a model, and would be replaced; choose another output folder")
    assert sorted(p.name for p in mine.iterdir()) == ["metrics.json", "notes.txt"]
    out = tmp_path / "ensemble"
    for members in (["default", "default-fast"], ["default-fast", "default"]):  # in any order, the same ensemble
        assert main(["ensemble", *members, "--data", str(sample_archive), "--out", str(out)]) == 0
    assert (out / OWNER_FILE).read_text() == "ensemble of default, default-fast\n"
    assert main(["evaluate", "default", "--data", str(sample_archive), "-o", str(out)]) == 2
    assert "holds the figures of ensemble of default, default-fast, not of default" in capsys.readouterr().err
