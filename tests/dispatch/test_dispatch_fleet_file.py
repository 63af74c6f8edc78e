"""Fleet-file checks that must give one clear line, not an error from deep inside Dask."""

from __future__ import annotations

import pytest
from dispatch_testkit import fleet_dict, matmul_chain

from sniper_onnx.dispatch import fleet_from_dict
from sniper_onnx.errors import SniperError


@pytest.mark.parametrize("scheduler", ["notaurl", 18786, "tcp://host", "tcp://host:99999", "http://h:1"])
def test_a_bad_scheduler_address_is_one_line(tmp_path, scheduler):
    data = fleet_dict({"m": matmul_chain(tmp_path / "m.onnx", rows=4, width=8)}, engine="dask", scheduler=scheduler)
    with pytest.raises(SniperError, match="scheduler .* must be an address tcp://HOST:PORT"):
        fleet_from_dict(data)


@pytest.mark.parametrize("scheduler", ["tcp://127.0.0.1:8786", "jetson-0.lan:8786", "tcp://[::1]:8786"])
def test_good_scheduler_addresses_pass(tmp_path, scheduler):
    data = fleet_dict({"m": matmul_chain(tmp_path / "m.onnx", rows=4, width=8)}, engine="dask", scheduler=scheduler)
    assert fleet_from_dict(data).scheduler == scheduler
