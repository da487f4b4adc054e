"""`hwsim export --format onnx`: every variant is a graph onnx's full checker accepts, weights as shaped inputs,
FLOAT's weight as Add(theta, Mul(alpha, eta)), OAT's FiLM as Gemm-LeakyRelu-Gemm-LeakyRelu-Split-Mul/Add, and
slim / pruned layers at the shapes hwsim costs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

onnx = pytest.importorskip("onnx")

from hwsim.cli import main  # noqa: E402
from hwsim.cost import ModelSetting  # noqa: E402
from hwsim.shapecache import analyze  # noqa: E402

VARIANTS = {"base": (), "float": (), "oat": (), "floats-i": ("--density", "0.5"), "floats-c": ("--density", "0.5"),
            "float-slim": ("--width", "0.5"), "oat-slim": ("--width", "0.5"), "floats-slim": ("--width", "0.5")}


def export(capsys, tmp_path: Path, model: str, variant: str, *args: str):
    out = tmp_path / variant
    with pytest.raises(SystemExit) as exc:
        main(["export", model, "--variant", variant, *args, "--format", "onnx", "--out", str(out)])
    assert exc.value.code == 0, capsys.readouterr().err
    (path,) = out.glob("*.onnx")
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph, full_check=True)  # shapes inferred and consistent, opset valid
    return graph


def shapes(graph) -> dict[str, tuple[int, ...]]:
    return {i.name: tuple(d.dim_value for d in i.type.tensor_type.shape.dim) for i in graph.graph.input}


def producers(graph) -> dict[str, object]:
    return {out: node for node in graph.graph.node for out in node.output}


def weight_source(graph, conv) -> str:
    """The op that makes a Conv's weight, through Identity nodes."""
    made = producers(graph)
    name = conv.input[1]
    while name in made and made[name].op_type == "Identity":
        name = made[name].input[0]
    return made[name].op_type if name in made else name


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_passes_the_full_check(capsys, tmp_path, variant):
    graph = export(capsys, tmp_path, "small_cnn", variant, *VARIANTS[variant])
    assert not graph.graph.initializer  # weights are inputs with shapes, no tensors
    ops = Counter(n.op_type for n in graph.graph.node)
    assert ops["Conv"] == 3 and ops["Gemm"] >= 1


def test_float_weight_is_theta_plus_alpha_eta(capsys, tmp_path):
    graph = export(capsys, tmp_path, "resnet18", "float")
    made = producers(graph)
    convs = [n for n in graph.graph.node if n.op_type == "Conv"]
    assert len(convs) == 20
    inputs = shapes(graph)
    for conv in convs:
        add = made[conv.input[1]]
        assert add.op_type == "Add"
        theta, scaled = add.input
        mul = made[scaled]
        assert mul.op_type == "Mul" and theta.endswith(".weight")
        alpha, eta = mul.input
        assert alpha.endswith(".alpha") and inputs[alpha] == () and inputs[eta] == inputs[theta]
    assert inputs["layer2.0.conv1.eta"] == (128, 64, 3, 3)
    assert weight_source(graph, convs[0]) == "Add"


def test_oat_film_chain(capsys, tmp_path):
    graph = export(capsys, tmp_path, "resnet18", "oat")
    inputs = shapes(graph)
    assert inputs["lambda_encoding"] == (1, 1)  # d = 1: the raw lambda
    made = producers(graph)
    splits = [n for n in graph.graph.node if n.op_type == "Split"]
    assert len(splits) == 17  # one FiLM per body BN (stem + 16), none on the shortcuts
    for split in splits:
        chain = [made[split.input[0]]]
        while len(chain) < 4:
            chain.append(made[chain[-1].input[0]])
        assert [n.op_type for n in reversed(chain)] == ["Gemm", "LeakyRelu", "Gemm", "LeakyRelu"]
        assert chain[-1].input[0] == "lambda_encoding"
        users = [n.op_type for n in graph.graph.node if set(n.input) & set(split.output)]
        assert sorted(users) in (["Mul", "Unsqueeze"], ["Unsqueeze", "Unsqueeze"])
    ops = Counter(n.op_type for n in graph.graph.node)
    assert ops["Mul"] == ops["Add"] - 8 == 17  # FiLM affines; the 8 residual adds
    assert inputs["layer1.0.film1.mlp.0.weight"] == (128, 1)  # Linear(d, 2C), C = 64
    assert inputs["layer4.1.film2.mlp.2.weight"] == (1024, 1024)  # Linear(2C, 2C), C = 512
    assert not ops["Identity"]  # every weight its own input (torch merges inputs of equal values otherwise)


def test_slim_and_pruned_inputs_have_the_costed_shapes(capsys, tmp_path):
    graph = export(capsys, tmp_path, "resnet18", "oat-slim", "--width", "0.5")
    inputs = shapes(graph)
    assert inputs["layer1.0.conv1.weight"] == (32, 32, 3, 3)
    assert inputs["conv1.weight"] == (32, 3, 3, 3)  # the input's channels stay
    films = {name: shape for name, shape in inputs.items() if ".mlp.2.weight" in name}
    assert films and all(shape[0] == shape[1] for shape in films.values())
    assert (64, 64) in films.values()  # FiLM(d, C_a = 32) at width 0.5: Linear(2 C_a, 2 C_a)
    graph = export(capsys, tmp_path / "c", "resnet18", "floats-c", "--density", "0.5")
    inputs = shapes(graph)
    trace = analyze(ModelSetting("resnet18", "floats-c", density=0.5)).trace
    pruned = [r for r in trace.layers if r.kind == "conv" and r.c_in_eff < r.c_in]
    assert pruned
    for record in trace.layers:
        if record.kind == "conv":  # the weight input has the channels the tracer found computing
            assert inputs[f"{record.name}.weight"][1] == record.c_in_eff
    assert Counter(n.op_type for n in graph.graph.node)["Gather"] == len(pruned)


def test_user_model(capsys, tmp_path):
    example = Path(__file__).resolve().parent.parent / "examples" / "my_net.py"
    graph = export(capsys, tmp_path, f"{example}:build", "float", "--input-size", "3,32,32")
    inputs = shapes(graph)
    assert inputs["input"] == (1, 3, 32, 32) and inputs["features.3.eta"] == (64, 32, 3, 3)


def test_an_export_torch_cannot_do_is_one_line_on_stderr_and_nothing_on_stdout(capfd, tmp_path):
    """small_cnn at 28 x 28 pools a 7 x 7 map adaptively to 4 x 4, which torch's ONNX exporter refuses; it dumped
    its whole IR graph (about 50 lines) to fd 1 before the error, so the user saw a page instead of one line."""
    out = tmp_path / "mnist"
    with pytest.raises(SystemExit) as exc:
        main(["export", "small_cnn", "--dataset", "mnist", "--format", "onnx", "--out", str(out)])
    captured = capfd.readouterr()
    assert exc.value.code == 2 and captured.out == "" and not out.exists()
    assert captured.err.count("\n") == 1 and "torch cannot export this model to ONNX" in captured.err
