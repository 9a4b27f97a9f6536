"""A network as an ONNX graph, for serving it outside nncore (extra "onnx").

:func:`export_onnx` writes one ONNX model built with ``onnx.helper``:

- input ``"X"`` of the network's dtype (float32, or float64), shape ``[N, n_in]``: the raw
  features, since the standardisation (``Sub`` the mean, ``Div`` the scale) is in the graph
  when the network has one;
- per Dense layer a ``Gemm`` (``transB=1``: ``W`` is ``(n_out, n_in)``) and its activation;
  per Residual block ``Gemm``, activation, ``Gemm`` without bias, ``Add`` with the block
  input;
- for classification a ``Softmax`` (``axis=1``): output ``"probabilities"``, column k the
  probability of ``classes[k]``; for regression the output ``"predictions"``, in the
  targets' units (``Mul`` the target scale, ``Add`` the target mean) when the network
  scales its targets;
- metadata (``metadata_props``): ``"classes"`` (JSON ``{"kind", "values"}``, as model files
  store the labels; classification only), ``"task"``, ``"activations"`` (JSON, one per
  layer), ``"nncore_version"``.

Opset 17 (``OPSET``), IR version 8: what onnxruntime has run since 1.13. GELU is written as
its exact erf form ``0.5 x (1 + Erf(x / sqrt 2))`` (the ``Gelu`` operator needs opset 20),
SiLU as ``Mul(x, Sigmoid(x))``. ONNX's ``Softplus`` has no threshold: nncore (as PyTorch)
returns z itself above 20, ONNX ``log(1 + exp(z))``; they differ there by ``log1p(exp(-z))
< 2.1e-9``, below float32's resolution at 20 (about 1.9e-6), so the two agree to rounding.
"""

import json
import math
import warnings

import numpy as np

from . import __version__
from . import network as _network

__all__ = ["export_onnx", "OPSET", "IR_VERSION"]

#: The ONNX operator set the graph uses and the IR version it is written with.
OPSET = 17
IR_VERSION = 8


def _import_onnx():
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:
        raise ImportError('exporting to ONNX needs the onnx package: pip install '
                          '"nncore[onnx]"') from None
    return onnx, helper, numpy_helper


class _Graph:
    """Nodes and initializers, with fresh names."""

    def __init__(self, helper, numpy_helper, dtype):
        self.helper, self.numpy_helper, self.dtype = helper, numpy_helper, dtype
        self.nodes, self.initializers, self._count = [], [], 0

    def name(self, base):
        self._count += 1
        return f"{base}_{self._count}"

    def constant(self, base, value):
        name = self.name(base)
        array = np.ascontiguousarray(np.asarray(value, dtype=self.dtype))
        self.initializers.append(self.numpy_helper.from_array(array, name))
        return name

    def op(self, op_type, inputs, base=None, output=None, **attributes):
        output = output or self.name(base or op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, inputs, [output],
                                                name=self.name(op_type), **attributes))
        return output

    def activation(self, name, x):
        """The nodes of the activation ``name`` applied to ``x``; the output's name."""
        if name not in ACTIVATION_GRAPHS:
            raise ValueError(f"activation {name!r} has no ONNX export (add it to "
                             "nncore.onnx_export.ACTIVATION_GRAPHS)")
        return ACTIVATION_GRAPHS[name](self, x)


def _gelu(graph, x):
    # 0.5 x (1 + erf(x / sqrt 2)): opset 17 has no Gelu operator
    scaled = graph.op("Mul", [x, graph.constant("inv_sqrt2", math.sqrt(0.5))])
    one_plus = graph.op("Add", [graph.op("Erf", [scaled]), graph.constant("one", 1.0)])
    half_x = graph.op("Mul", [x, graph.constant("half", 0.5)])
    return graph.op("Mul", [half_x, one_plus], base="gelu")


#: Each activation of :data:`nncore.activations.ACTIVATIONS` as ONNX nodes:
#: ``(graph, x) -> output name`` (a test holds the two registries to the same names).
ACTIVATION_GRAPHS = {
    "identity": lambda graph, x: x,
    "tanh": lambda graph, x: graph.op("Tanh", [x]),
    "relu": lambda graph, x: graph.op("Relu", [x]),
    "sigmoid": lambda graph, x: graph.op("Sigmoid", [x]),
    "softplus": lambda graph, x: graph.op("Softplus", [x]),
    "leaky_relu": lambda graph, x: graph.op("LeakyRelu", [x], alpha=0.01),
    "elu": lambda graph, x: graph.op("Elu", [x], alpha=1.0),
    "silu": lambda graph, x: graph.op("Mul", [x, graph.op("Sigmoid", [x])], base="silu"),
    "gelu": _gelu,
}


def _dense(graph, index, layer, x):
    z = graph.op("Gemm", [x, graph.constant(f"W{index}", layer.W),
                          graph.constant(f"b{index}", layer.b)], transB=1)
    return graph.activation(layer.activation, z)


def _residual(graph, index, layer, x):
    z = graph.op("Gemm", [x, graph.constant(f"W1_{index}", layer.W1),
                          graph.constant(f"b1_{index}", layer.b1)], transB=1)
    h = graph.activation(layer.activation, z)
    branch = graph.op("Gemm", [h, graph.constant(f"W2_{index}", layer.W2)], transB=1)
    return graph.op("Add", [x, branch], base="residual")


#: The activations whose ONNX operator onnxruntime's CPU provider has no float64 kernel
#: for: a float64 graph with them is valid ONNX but does not load there (export warns).
NO_FLOAT64_IN_ONNXRUNTIME = {"elu": "Elu", "gelu": "Erf", "softplus": "Softplus"}


#: Each layer kind of :data:`nncore.layers.LAYERS` as ONNX nodes:
#: ``(graph, index, layer, x) -> output name``.
LAYER_GRAPHS = {"dense": _dense, "residual": _residual}


def _network_of(model):
    """``model`` if it is a Network, a fitted :mod:`nncore.sklearn` estimator's
    ``network_`` (which holds its labels and target scaling), else a TypeError."""
    network = getattr(model, "network_", model)
    if not isinstance(network, _network.Network):
        raise TypeError(f"export_onnx needs an nncore Network (or a fitted NNClassifier or "
                        f"NNRegressor), got {type(model).__name__}")
    return network


def to_onnx(network):
    """The network (or a fitted estimator's ``network_``) as an ``onnx.ModelProto``
    (checked with ``onnx.checker``)."""
    onnx, helper, numpy_helper = _import_onnx()
    network = _network_of(network)
    dtype = np.dtype(network.dtype)
    elem = helper.np_dtype_to_tensor_dtype(dtype)
    graph = _Graph(helper, numpy_helper, dtype)
    x = "X"
    if network.input_mean is not None:
        x = graph.op("Sub", [x, graph.constant("input_mean", network.input_mean)],
                     base="centred")
        x = graph.op("Div", [x, graph.constant("input_scale", network.input_scale)],
                     base="standardized")
    for index, layer in enumerate(network.layers):
        if layer.kind not in LAYER_GRAPHS:
            raise ValueError(f"layer kind {layer.kind!r} has no ONNX export (add it to "
                             "nncore.onnx_export.LAYER_GRAPHS)")
        x = LAYER_GRAPHS[layer.kind](graph, index, layer, x)
    metadata = {"nncore_version": __version__, "task": network.task,
                "activations": json.dumps([layer.activation for layer in network.layers])}
    if network.task == "classification":
        output = "probabilities"
        graph.op("Softmax", [x], output=output, axis=1)
        metadata["classes"] = json.dumps(_network._classes_to_json(network.classes))
    else:
        output = "predictions"
        if network.target_mean is not None:
            x = graph.op("Mul", [x, graph.constant("target_scale", network.target_scale)])
            graph.op("Add", [x, graph.constant("target_mean", network.target_mean)],
                     output=output)
        else:
            graph.op("Identity", [x], output=output)
    onnx_graph = helper.make_graph(
        graph.nodes, "nncore_network",
        [helper.make_tensor_value_info("X", elem, ["N", network.n_in])],
        [helper.make_tensor_value_info(output, elem, ["N", network.n_outputs])],
        initializer=graph.initializers)
    model = helper.make_model(onnx_graph, producer_name="nncore", producer_version=__version__,
                              opset_imports=[helper.make_opsetid("", OPSET)],
                              ir_version=IR_VERSION)
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model, full_check=True)
    return model


def export_onnx(network, path):
    """Write ``network`` (or a fitted NNClassifier's or NNRegressor's ``network_``) as an
    ONNX model to ``path`` (see the module's description of the graph); returns the path.
    A float64 network with an activation in :data:`NO_FLOAT64_IN_ONNXRUNTIME` (ELU, GELU,
    softplus) is written with a UserWarning naming it: onnxruntime's CPU provider cannot
    load that graph."""
    onnx, _, _ = _import_onnx()
    network = _network_of(network)
    model = to_onnx(network)
    if np.dtype(network.dtype) == np.float64:
        unserved = sorted({layer.activation for layer in network.layers}
                          & NO_FLOAT64_IN_ONNXRUNTIME.keys())
        if unserved:
            operators = ", ".join(NO_FLOAT64_IN_ONNXRUNTIME[name] for name in unserved)
            warnings.warn(f"a float64 network with {' and '.join(unserved)} exports to a graph "
                          f"onnxruntime cannot load (its CPU provider has no float64 "
                          f"{operators}); to serve it there, export a float32 network "
                          f"(dtype='float32', nncore train --dtype float32)", UserWarning,
                          stacklevel=2)
    onnx.save_model(model, str(path))
    return path
