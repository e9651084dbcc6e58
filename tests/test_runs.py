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
