"""`expand_model_folders` (profile's and predict's model arguments): each file once, however named."""

import os

import pytest
from database_testkit import conv_net

from sniper_onnx.database.collect import expand_model_folders, file_jobs
from sniper_onnx.errors import SniperError


def test_a_file_named_twice_is_one_model_where_it_first_appears(tmp_path, monkeypatch):
    """A folder plus a file in it, or a file twice, gave one profile job (and one prediction row)
    per mention: profile counted the repeats as skipped, `already in the database`."""
    folder = tmp_path / "models"
    folder.mkdir()
    a = conv_net(folder / "a.onnx")
    conv_net(folder / "b.onnx", channels=8)
    os.symlink(a, tmp_path / "link.onnx")
    monkeypatch.chdir(tmp_path)
    given = ["models/b.onnx", "models", str(a), "./models/../models/b.onnx", "link.onnx", "models/b.onnx"]
    assert expand_model_folders(given) == ["models/b.onnx", "models/a.onnx"]  # the folder named it first
    assert [job.path for job in file_jobs(given)] == ["models/b.onnx", "models/a.onnx"]
    assert [job.name for job in file_jobs(["models", "models/a.onnx"])] == ["a", "b"]


def test_distinct_files_of_one_content_and_missing_paths_stay(tmp_path):
    """Two copies are two files (a user may mean both); a missing path is left for its caller's own error,
    once."""
    conv_net(tmp_path / "a.onnx")
    (tmp_path / "copy.onnx").write_bytes((tmp_path / "a.onnx").read_bytes())
    missing = str(tmp_path / "nope.onnx")
    assert expand_model_folders([str(tmp_path / "a.onnx"), str(tmp_path / "copy.onnx"), missing, missing]) == [
        str(tmp_path / "a.onnx"), str(tmp_path / "copy.onnx"), missing]
    with pytest.raises(SniperError, match="no such model file"):
        file_jobs([missing])
