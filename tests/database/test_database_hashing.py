import onnx
from database_testkit import conv_net

from sniper_onnx.database.hashing import structure_hash


def _hash(path):
    return structure_hash(onnx.load(str(path)))


def test_weights_and_tensor_names_do_not_change_the_hash(tmp_path):
    base = _hash(conv_net(tmp_path / "a.onnx", seed=0))
    assert _hash(conv_net(tmp_path / "b.onnx", seed=1)) == base
    assert _hash(conv_net(tmp_path / "c.onnx", input_name="image")) == base


def test_structure_changes_the_hash(tmp_path):
    base = _hash(conv_net(tmp_path / "a.onnx"))
    assert _hash(conv_net(tmp_path / "b.onnx", kernel=5)) != base
    assert _hash(conv_net(tmp_path / "c.onnx", channels=8)) != base


def test_weightless_skeleton_hashes_like_the_full_model(tmp_path):
    model = onnx.load(str(conv_net(tmp_path / "a.onnx")))
    skeleton = onnx.ModelProto()
    skeleton.CopyFrom(model)
    for tensor in skeleton.graph.initializer:
        tensor.ClearField("raw_data")
    assert structure_hash(skeleton) == structure_hash(model)
