"""sniper_onnx.outputs: where --plot writes."""

import os

import pytest

from sniper_onnx.errors import SniperError
from sniper_onnx.outputs import plot_path


@pytest.mark.parametrize("given", [".", "..", "folder", "folder/"])
def test_a_plot_path_that_is_a_folder_is_refused_before_a_suffix_is_added(tmp_path, monkeypatch, given):
    """'.' became '..png', '/tmp' became '/tmp.png' beside the folder: written somewhere unasked."""
    (tmp_path / "sub" / "folder").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "sub")
    with pytest.raises(SniperError, match="is a folder; give a file path"):
        plot_path(given)
    assert sorted(os.listdir(tmp_path / "sub")) == ["folder"]


def test_a_plot_name_without_a_suffix_gets_png(tmp_path):
    assert plot_path(tmp_path / "fig") == tmp_path / "fig.png"
