from pathlib import Path

import pytest
from profiler_testkit import make_model_dir


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return make_model_dir(tmp_path)
