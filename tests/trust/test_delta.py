"""Model deltas: encoding (publisher) and the device's rebuild, with every bad input refused."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from tuf.api.metadata import TargetFile

from edgefleet.agent.install.delta_fetch import choose_delta, delta_candidates
from edgefleet.optimize.deltas import encode_delta, tensor_ranges
from edgefleet.protocol.errors import EdgefleetError
from edgefleet.trust.delta import DeltaRejectedError, DeltaWriter, apply_delta, check_delta_use
from edgefleet.trust.errors import HashMismatchError
from edgefleet.trust.target_custom import DeltaCustom, TargetCustom, delta_target_path

PREFIX = "digits/2.0.0/medical-cart-cpu"


def _model(weights: dict[str, np.ndarray]) -> bytes:
    inits = [numpy_helper.from_array(v, k) for k, v in weights.items()]
    node = helper.make_node("MatMul", ["x", "w1"], ["h"])
    node2 = helper.make_node("MatMul", ["h", "w2"], ["y"])
    graph = helper.make_graph(
        [node, node2],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
        initializer=inits,
    )
    return helper.make_model(graph).SerializeToString()


@pytest.fixture
def models(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    w1 = rng.normal(size=(32, 64)).astype(np.float32)
    w2 = rng.normal(size=(64, 8)).astype(np.float32)
    out = {}
    for name, weights in {
        "base": {"w1": w1, "w2": w2},
        "head": {"w1": w1, "w2": w2 + np.float32(0.01)},
        "all": {"w1": w1 * np.float32(1.001), "w2": w2 * np.float32(0.999)},
    }.items():
        out[name] = tmp_path / f"{name}.onnx"
        out[name].write_bytes(_model(weights))
    return out


def _ranges(path: Path) -> list[tuple[str, int, int]]:

    class _M:
        files = [type("F", (), {"path": path.name})()]

    return tensor_ranges(path.parent, _M())[path.name]  # type: ignore[arg-type]


def _encode(base: Path, new: Path, out: Path, *, tensors: bool = True) -> DeltaCustom:
    return encode_delta(
        base,
        new,
        out,
        base_path="digits/1.0.0/medical-cart-cpu/model.onnx",
        result_path=f"{PREFIX}/model.onnx",
        base_ranges=_ranges(base) if tensors else None,
        new_ranges=_ranges(new) if tensors else None,
    )


@pytest.mark.parametrize("tensors", [True, False], ids=["onnx-tensors", "bsdiff"])
@pytest.mark.parametrize("which", ["head", "all"])
def test_a_delta_rebuilds_the_exact_file(models, tmp_path, tensors, which):
    delta = tmp_path / "d.efdelta"
    custom = _encode(models["base"], models[which], delta, tensors=tensors)
    out = apply_delta(delta, models["base"], tmp_path / "out.onnx", custom)
    assert out.read_bytes() == models[which].read_bytes()
    if which == "head" and tensors:  # w1 copied by hash, only w2's change travels
        assert delta.stat().st_size < 0.25 * models[which].stat().st_size
    assert onnx.load(str(out)).graph.initializer[0].name == "w1"


def test_unchanged_tensors_are_copied_by_hash_not_resent(models, tmp_path):
    delta = tmp_path / "d.efdelta"
    custom = _encode(models["base"], models["head"], delta)
    assert custom.encoding == "onnx-tensors"
    w1_bytes = 32 * 64 * 4
    assert delta.stat().st_size < w1_bytes / 4  # w1 (8 KiB of random floats) is not in the delta


def _fails(delta: Path, base: Path, out: Path, custom: DeltaCustom) -> EdgefleetError:
    with pytest.raises(EdgefleetError) as info:
        apply_delta(delta, base, out, custom)
    assert not out.exists()
    assert not list(out.parent.glob(".*delta-partial"))
    return info.value


def test_truncated_delta_is_refused_and_nothing_is_left(models, tmp_path):
    delta = tmp_path / "d.efdelta"
    custom = _encode(models["base"], models["all"], delta)
    data = delta.read_bytes()
    delta.write_bytes(data[: len(data) // 2])
    err = _fails(delta, models["base"], tmp_path / "out.onnx", custom)
    assert err.code == "delta_corrupt"


def test_tampered_delta_is_refused(models, tmp_path):
    delta = tmp_path / "d.efdelta"
    custom = _encode(models["base"], models["all"], delta)
    data = bytearray(delta.read_bytes())
    data[len(data) // 2] ^= 0xFF
    delta.write_bytes(bytes(data))
    err = _fails(delta, models["base"], tmp_path / "out.onnx", custom)
    assert err.code in {"delta_corrupt", "hash_mismatch", "delta_too_large"}


def test_a_delta_whose_output_would_pass_the_signed_length_is_cut_off(models, tmp_path):
    base = models["base"]
    custom = DeltaCustom(
        base_path="digits/1.0.0/medical-cart-cpu/model.onnx",
        base_sha256=hashlib.sha256(base.read_bytes()).hexdigest(),
        base_length=base.stat().st_size,
        result_path=f"{PREFIX}/model.onnx",
        result_sha256="0" * 64,
        result_length=1000,
        encoding="onnx-tensors",
    )
    delta = tmp_path / "bomb.efdelta"
    writer = DeltaWriter(delta, custom)
    writer.literal(b"\0" * 10_000_000)  # 10 MB of zeros: a few KiB compressed
    with pytest.raises(ValueError):
        writer.close()
    assert delta.stat().st_size < 100_000
    err = _fails(delta, base, tmp_path / "out.onnx", custom)
    assert err.code == "delta_too_large"
    assert err.details["expected"] == "<= 1000 bytes"


def test_a_delta_against_another_base_is_refused(models, tmp_path):
    delta = tmp_path / "d.efdelta"
    custom = _encode(models["base"], models["head"], delta)
    err = _fails(delta, models["all"], tmp_path / "out.onnx", custom)  # the device holds another file
    assert err.code == "delta_base_missing"


def test_a_header_that_disagrees_with_the_signed_fields_is_refused(models, tmp_path):
    delta = tmp_path / "d.efdelta"
    custom = _encode(models["base"], models["head"], delta)
    lying = custom.model_copy(update={"result_length": custom.result_length + 1})
    err = _fails(delta, models["base"], tmp_path / "out.onnx", lying)
    assert err.code == "delta_mismatch"


def test_a_result_with_another_hash_is_refused(models, tmp_path):
    delta = tmp_path / "d.efdelta"
    custom = _encode(models["base"], models["head"], delta)
    # The writer signs what it is told: a header naming another result's hash, with the same length.
    wrong = custom.model_copy(update={"result_sha256": "1" * 64})
    delta2 = tmp_path / "d2.efdelta"
    writer = DeltaWriter(delta2, wrong)
    writer.literal(models["head"].read_bytes())
    writer.close()
    err = _fails(delta2, models["base"], tmp_path / "out.onnx", wrong)
    assert isinstance(err, HashMismatchError)


def test_an_operation_reading_past_the_base_is_refused(models, tmp_path):
    base = models["base"]
    size = base.stat().st_size
    custom = DeltaCustom(
        base_path="digits/1.0.0/medical-cart-cpu/model.onnx",
        base_sha256=hashlib.sha256(base.read_bytes()).hexdigest(),
        base_length=size,
        result_path=f"{PREFIX}/model.onnx",
        result_sha256="0" * 64,
        result_length=100,
        encoding="bsdiff",
    )
    delta = tmp_path / "d.efdelta"
    writer = DeltaWriter(delta, custom)
    writer.copy(size - 10, 100)
    writer.close()
    assert _fails(delta, base, tmp_path / "out.onnx", custom).code == "delta_corrupt"


def _custom(**delta: object) -> DeltaCustom:
    fields: dict[str, object] = {
        "base_path": "digits/1.0.0/medical-cart-cpu/model.onnx",
        "base_sha256": "a" * 64,
        "base_length": 10,
        "result_path": f"{PREFIX}/model.onnx",
        "result_sha256": "b" * 64,
        "result_length": 20,
        "encoding": "onnx-tensors",
    }
    fields.update(delta)
    return DeltaCustom.model_validate(fields)


def test_a_chain_of_deltas_is_refused():
    chained = _custom(base_path=delta_target_path("digits/1.5.0/medical-cart-cpu", "model.onnx", "c" * 64))
    with pytest.raises(DeltaRejectedError) as info:
        check_delta_use(chained, result_path=f"{PREFIX}/model.onnx", sha256="b" * 64, length=20)
    assert info.value.code == "delta_chain"
    onto_delta = _custom(result_path=delta_target_path(PREFIX, "model.onnx", "d" * 64))
    with pytest.raises(DeltaRejectedError) as info:
        check_delta_use(onto_delta, result_path=onto_delta.result_path, sha256="b" * 64, length=20)
    assert info.value.code == "delta_chain"


def _target(delta: DeltaCustom, *, hardware_class: str = "medical-cart-cpu") -> TargetFile:
    path = delta_target_path(PREFIX, "model.onnx", delta.base_sha256)
    custom = TargetCustom(
        model="digits",
        version="2.0.0",
        hardware_class=hardware_class,
        release_counter=2,
        runtime="onnxruntime",
        manifest_sha256="e" * 64,
        delta=delta,
    ).to_custom()
    return TargetFile(
        length=5, hashes={"sha256": "f" * 64}, path=path, unrecognized_fields={"custom": custom}
    )


def _choose(candidates: list[TargetFile], held: dict[str, Path]):
    return choose_delta(
        candidates,
        held,
        hardware_class="medical-cart-cpu",
        result_path=f"{PREFIX}/model.onnx",
        sha256="b" * 64,
        length=20,
    )


def test_the_device_picks_the_delta_by_the_hash_of_what_it_holds(tmp_path):
    mine, other = _target(_custom(base_sha256="a" * 64)), _target(_custom(base_sha256="c" * 64))
    targets = {t.path: t for t in (mine, other)}
    targets[f"{PREFIX}/model.onnx"] = TargetFile(
        length=20, hashes={"sha256": "b" * 64}, path=f"{PREFIX}/model.onnx"
    )
    found = delta_candidates(targets, PREFIX, "model.onnx")
    assert [t.path for t in found] == sorted([mine.path, other.path])
    choice, reason = _choose(found, {"c" * 64: tmp_path / "held"})
    assert reason is None
    assert choice is not None
    assert choice.delta.base_sha256 == "c" * 64
    assert _choose([], {}) == (None, None)  # nothing published: a plain full download, no fallback
    assert _choose(found, {"9" * 64: tmp_path / "x"}) == (None, "delta_base_missing")


def test_a_delta_for_another_class_or_result_is_never_chosen(tmp_path):
    held = {"a" * 64: tmp_path / "held"}
    other_class = _target(_custom(), hardware_class="jetson-vision-standard")
    assert _choose([other_class], held) == (None, "invalid_target_custom")  # signed under another prefix
    assert _choose([_target(_custom(result_length=21))], held) == (None, "delta_mismatch")


def test_weights_in_constant_nodes_as_float_data_are_found_by_hash(tmp_path):
    """Paddle's exporter keeps every weight in a Constant node as packed float_data: still copied by hash."""
    rng = np.random.default_rng(1)
    backbone = rng.normal(size=(32, 64)).astype(np.float32)

    def model(head: np.ndarray) -> bytes:
        consts = []
        for name, value in (("backbone", backbone), ("head", head)):
            tensor = helper.make_tensor(name, TensorProto.FLOAT, value.shape, value.ravel().tolist())
            consts.append(helper.make_node("Constant", [], [name], value=tensor))
        nodes = [*consts, helper.make_node("MatMul", ["x", "backbone"], ["h"])]
        nodes.append(helper.make_node("MatMul", ["h", "head"], ["y"]))
        graph = helper.make_graph(
            nodes,
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 32])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
        )
        return helper.make_model(graph).SerializeToString()

    head = rng.normal(size=(64, 8)).astype(np.float32)
    base, new = tmp_path / "base.onnx", tmp_path / "new.onnx"
    base.write_bytes(model(head))
    new.write_bytes(model(head + np.float32(0.01)))
    ranges = _ranges(base)
    assert [name for name, _, _ in ranges] == ["backbone", "head"]
    delta = tmp_path / "d.efdelta"
    custom = _encode(base, new, delta)
    assert delta.stat().st_size < 0.25 * new.stat().st_size  # the 8 KiB backbone is copied, not sent
    assert apply_delta(delta, base, tmp_path / "out.onnx", custom).read_bytes() == new.read_bytes()


def test_external_data_tensors_are_located_and_reused_by_hash(tmp_path):
    """A model whose weights live in an external-data file: the data file's delta is tensor-aware too."""
    rng = np.random.default_rng(2)
    backbone = rng.normal(size=(64, 256)).astype(np.float32)
    head = rng.normal(size=(256, 8)).astype(np.float32)
    dirs = {}
    for name, h in (("base", head), ("new", head + np.float32(0.01))):
        d = tmp_path / name
        d.mkdir()
        model = onnx.load_from_string(_model({"w1": backbone, "w2": h}))
        onnx.save(model, str(d / "model.onnx"), save_as_external_data=True, location="model.onnx.data",
                  size_threshold=0)  # fmt: skip
        dirs[name] = d

    class _Files:
        files = [type("F", (), {"path": "model.onnx"})(), type("F", (), {"path": "model.onnx.data"})()]

    ranges = {name: tensor_ranges(d, _Files()) for name, d in dirs.items()}  # type: ignore[arg-type]
    assert [r[0] for r in ranges["new"]["model.onnx.data"]] == ["w1", "w2"]
    delta = tmp_path / "data.efdelta"
    custom = encode_delta(
        dirs["base"] / "model.onnx.data",
        dirs["new"] / "model.onnx.data",
        delta,
        base_path="digits/1.0.0/medical-cart-cpu/model.onnx.data",
        result_path=f"{PREFIX}/model.onnx.data",
        base_ranges=ranges["base"]["model.onnx.data"],
        new_ranges=ranges["new"]["model.onnx.data"],
    )
    full = (dirs["new"] / "model.onnx.data").read_bytes()
    assert delta.stat().st_size < 0.15 * len(full)  # the 64 KiB backbone is copied by hash
    out = apply_delta(delta, dirs["base"] / "model.onnx.data", tmp_path / "out.data", custom)
    assert out.read_bytes() == full
