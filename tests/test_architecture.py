"""How nncore's modules sit on each other, and the contracts between its parts.

- The two backends are twins by construction: the same public functions with the same
  signatures, and the same status codes and activation codes as the compiled kernels.
- Imports point one way, function-level imports included: every module has a layer, and a
  module imports only modules of lower layers (so there is no cycle), and the NumPy
  reference never reaches the compiled module.
- Every registry entry is complete: each activation has a kernel code, each layer kind its
  backend functions and step slots, each optimizer and architecture its description.
"""

import ast
import inspect
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nncore
from nncore import _kernels, activations, layers, losses, network, ops, optim, reference, status

PACKAGE = Path(nncore.__file__).parent

#: Each module's layer, bottom (0) first: a module may import only modules of lower layers.
#: This is the layering README.md describes ("Layout").
LAYERS = {
    # the bottom: imports nothing of nncore but the package's version
    "__init__": 0, "_validation": 0, "status": 0, "plots": 0, "results": 0, "parallel": 0,
    "_kernels": 0,
    "_backend": 1, "activations": 1, "losses": 1, "datasets": 1, "modelfile": 1,
    "provenance": 1,
    "reference": 2, "ops": 2,
    "layers": 3, "optim": 3,
    "train": 4,
    "network": 5,
    "onnx_export": 6,
    "check.figures": 1, "check.taylor": 2, "check.transpose": 2, "check.least_squares": 6,
    "check.catalogue": 7,
    "check": 8,
    "search": 9, "report": 9, "sklearn": 9,
    "experiments": 10,
    "cli": 11,
}


def _module_name(path):
    relative = path.relative_to(PACKAGE).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def _known(name):
    """The module a dotted name inside nncore refers to (``check.taylor.gradient_test`` is
    the module ``check.taylor``), or None for a name that is no module."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in LAYERS:
            return candidate
        parts.pop()
    return None


def _imports(path):
    """The nncore modules a source file imports, at its top or inside functions."""
    module = _module_name(path)
    parts = [] if module == "__init__" else module.split(".")
    package = parts if path.name == "__init__.py" else parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[:len(package) - (node.level - 1)]
            if node.module:
                base = [*base, *node.module.split(".")]
            for alias in node.names:
                # "from .x import y": y is a submodule or a name of x; "from . import y":
                # y is a submodule or a name of the package itself
                target = _known(".".join([*base, alias.name]))
                found.add(target or _known(".".join(base)) or "__init__")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("nncore"):
            found.add(_known(node.module[len("nncore."):]) or "__init__")
        elif isinstance(node, ast.Import):
            found |= {_known(alias.name[len("nncore."):]) or "__init__"
                      for alias in node.names if alias.name.startswith("nncore.")}
    found.discard(module)
    return found


def _graph():
    graph = {_module_name(path): _imports(path) for path in PACKAGE.rglob("*.py")
             if "data" not in path.relative_to(PACKAGE).parts}
    graph["_kernels"] = set()  # compiled: it imports nothing of nncore (see _kernels.pyx)
    return graph


def test_every_module_has_a_layer():
    assert set(_graph()) == set(LAYERS)


def test_modules_import_only_lower_layers_so_there_is_no_cycle():
    for module, imported in sorted(_graph().items()):
        for other in sorted(imported):
            assert LAYERS[other] < LAYERS[module], (
                f"{module} (layer {LAYERS[module]}) imports {other} (layer {LAYERS[other]})")


def test_the_import_walk_sees_function_level_imports(tmp_path, monkeypatch):
    # a copy of layers.py that imports the network inside a function: the walk must see it,
    # and the layer rule must refuse it
    fake = tmp_path / "nncore"
    fake.mkdir()
    (fake / "layers.py").write_text((PACKAGE / "layers.py").read_text(encoding="utf-8")
                                    + "\n\ndef _upward():\n    from .network import Network\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    imported = _imports(fake / "layers.py")
    assert "network" in imported and LAYERS["network"] > LAYERS["layers"]


def _closure(graph, start):
    seen, todo = set(), [start]
    while todo:
        module = todo.pop()
        for other in graph[module] - seen:
            seen.add(other)
            todo.append(other)
    return seen


def test_the_reference_never_reaches_the_compiled_module():
    reached = _closure(_graph(), "reference")
    assert "_kernels" not in reached and "ops" not in reached, reached
    # and at run time too
    code = ("import sys, nncore.reference, nncore.activations, nncore.status, nncore.losses\n"
            "assert 'nncore._kernels' not in sys.modules and 'nncore.ops' not in sys.modules, "
            "sorted(m for m in sys.modules if m.startswith('nncore'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert result.returncode == 0, result.stderr


# --- the backend contract ----------------------------------------------------------------------

def _public_functions(module):
    return {name: value for name, value in vars(module).items()
            if inspect.isfunction(value) and value.__module__ == module.__name__
            and not name.startswith("_")}


def test_ops_and_reference_expose_the_same_functions_with_the_same_signatures():
    from nncore._backend import FUNCTIONS

    assert ops.__all__ == reference.__all__
    kernels, oracle = _public_functions(ops), _public_functions(reference)
    assert set(kernels) == set(oracle) == set(FUNCTIONS) == set(ops.__all__) - {"ACTIVATIONS"}
    for name in sorted(kernels):
        assert inspect.signature(kernels[name]) == inspect.signature(oracle[name]), name
    assert ops.ACTIVATIONS == reference.ACTIVATIONS == activations.names()


def test_the_twin_check_can_fail():
    def linear_forward(X, W, b, activation="relu", out=None, cache=None):  # other default
        pass

    assert inspect.signature(linear_forward) != inspect.signature(reference.linear_forward)


def test_status_codes_are_the_kernels():
    assert status.UPDATE_NOT_FINITE == _kernels.UPDATE_NOT_FINITE
    assert status.OK == -1 and status.UPDATE_NOT_FINITE < -1  # rows of bad labels are >= 0


def test_every_fused_step_layer_kind_is_known_to_both_backends():
    from nncore._validation import STEP_SHAPES
    from nncore.reference import _STEP_FUNCTIONS

    assert set(STEP_SHAPES) == set(_kernels.LAYER_KIND_CODES) == set(_STEP_FUNCTIONS)
    assert {cls.kind for cls in layers.LAYERS.values()} == set(STEP_SHAPES)


def test_every_loss_is_one_the_fused_step_computes():
    assert set(losses.LOSSES) == set(_kernels.LOSS_CODES)
    for entry in losses.LOSSES.values():
        assert entry.function in ops.__all__ and entry.task in losses.TASKS


def test_every_fused_step_update_kind_is_known_to_both_backends_and_the_optimizers():
    from nncore._validation import UPDATE_KINDS
    from nncore.reference import _UPDATES

    assert set(UPDATE_KINDS) == set(_kernels.UPDATE_KIND_CODES) == set(_UPDATES)
    for cls in optim.OPTIMIZERS.values():
        # each optimizer's state is its update kind's, in the order the fused step takes it
        assert cls.state_names == UPDATE_KINDS[cls.update_kind]["state"], cls.name
        settings = UPDATE_KINDS[cls.update_kind]["settings"]
        assert set(cls(lr=0.1).step_update()) == {"kind", *settings}, cls.name


def test_every_activation_and_layer_kind_has_an_onnx_export():
    from nncore.onnx_export import ACTIVATION_GRAPHS, LAYER_GRAPHS

    assert set(ACTIVATION_GRAPHS) == set(activations.ACTIVATIONS)
    assert set(LAYER_GRAPHS) == set(layers.LAYERS)


def test_every_activation_has_its_kernel_code():
    assert {name: entry.code for name, entry in activations.ACTIVATIONS.items()} \
        == _kernels.ACTIVATION_CODES


# --- the registries ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", activations.names())
def test_activation_entries_are_complete(name):
    entry = activations.ACTIVATIONS[name]
    assert entry.saved in ("output", "input") and entry.init in ("glorot", "he")
    assert entry.description
    Z = np.linspace(-3, 3, 13)
    A = entry.function(Z)
    saved = Z if entry.keeps_input else A
    away = np.abs(Z) > 0.1  # the derivative against a central difference, off any kink
    step = 1e-6
    numeric = (entry.function(Z + step) - entry.function(Z - step)) / (2 * step)
    np.testing.assert_allclose(entry.derivative(saved)[away], numeric[away], rtol=1e-6,
                               atol=1e-9)


@pytest.mark.parametrize("kind", sorted(layers.LAYERS))
def test_layer_kinds_are_complete(kind):
    cls = layers.LAYERS[kind]
    assert cls.kind == kind and cls.description and cls.config_keys
    for name in cls.functions:
        assert name in ops.__all__ and name in reference.__all__
    point = cls.check_point(np.random.default_rng(0), "tanh")
    assert list(point)[0] == "X"
    # the check point's parameters are the layer's, in the layer's order
    n_in = point["X"].shape[1]
    config = {"dense": {"n_in": n_in, "n_out": point[list(point)[1]].shape[0]},
              "residual": {"width": n_in, "hidden": point[list(point)[1]].shape[0]}}[kind]
    layer = cls(**config, activation="tanh")
    assert list(layer.param_shapes) == list(point)[1:]
    assert [layer.param_shapes[name] for name in layer.param_shapes] == \
        [point[name].shape for name in list(point)[1:]]
    assert set(layer.step_slots.values()) == set(layer.param_shapes)
    assert layers.layer_from_spec(layer.describe()).describe() == layer.describe()


def test_optimizers_losses_and_architectures_are_registered_with_descriptions():
    assert optim.OPTIMIZERS["sgd"] is optim.SGD
    assert optim.OPTIMIZERS["adam"] is optim.Adam and optim.OPTIMIZERS["adamw"] is optim.AdamW
    for registry in (optim.OPTIMIZERS, losses.LOSSES, network.ARCHITECTURES):
        for name, entry in registry.items():
            assert entry.name == name and entry.description, name
    for name in network.ARCHITECTURES:
        net = network.build(3, 4, seed=0, architecture=name, width=5, depth=1)
        assert net.n_params == network.count_params(3, 4, name, width=5, depth=1)


def test_an_activation_that_needs_its_input_works_without_touching_the_layers(monkeypatch):
    """SiLU z sigmoid(z) is not monotone, so its output cannot give act'(z): the entry says
    "input". Registered under another name for this test only (the reference's math, no
    kernel code), it runs through the layers and whole networks unchanged, and its
    derivative checks pass: the caches keep Z where the entry asks."""
    from scipy.special import expit

    from nncore import check

    entry = activations.Activation(
        name="silu_test", code=-1, function=lambda Z: Z * expit(Z),
        derivative=lambda Z: expit(Z) * (1 + Z * (1 - expit(Z))), saved="input",
        init="glorot", kinked=False, description="SiLU, for this test")
    monkeypatch.setitem(activations.ACTIVATIONS, entry.name, entry)
    rng = np.random.default_rng(0)
    for layer_class in layers.LAYERS.values():
        point = layer_class.check_point(rng, entry.name)
        forward = getattr(reference, layer_class.functions[0])
        out, cache = forward(*point.values(), entry.name)
        assert cache.saved is not out and not np.shares_memory(cache.saved, out)
        backward = getattr(reference, layer_class.functions[1])
        jvp = getattr(reference, layer_class.functions[2])
        X = point["X"]
        zeros = [np.zeros_like(value) for value in list(point.values())[1:]]
        result = check.jacobian_test(lambda X_: forward(X_, *list(point.values())[1:],
                                                        entry.name)[0],
                                     X, lambda v: jvp(cache, v, *zeros))
        assert result.passed, result
        transpose = check.jacobian_transpose_test(lambda v: jvp(cache, v, *zeros),
                                                  lambda u: backward(u, cache)[0], X)
        assert transpose.passed, transpose
    net = network.build(2, 3, seed=0, architecture="resnet", width=4, depth=2,
                        activation=entry.name, dtype="float64", backend="reference")
    X = rng.standard_normal((16, 2))
    y = rng.integers(0, 3, 16)
    history = net.fit(X, y, epochs=5, batch_size=8, verbose=0)
    assert history["loss"][-1] < history["loss"][0]
