"""nncore's Adam and AdamW against PyTorch itself (run when torch is installed).

    pip install torch==2.13.0 && pytest benchmarks/test_torch_parity.py

The test suite checks the optimizers against PyTorch's rule written out in NumPy
(``tests/test_train.py``); this checks against ``torch.optim`` directly: the same tanh MLP,
the same float64 weights, full-batch training for 20 steps with softmax cross-entropy and
with squared error; the weights must agree to 1e-10 (relative).
"""

import numpy as np
import pytest

import nncore as nc

torch = pytest.importorskip("torch")


def _torch_mlp(net):
    """A torch.nn.Sequential with the weights of the nncore MLP ``net`` (float64)."""
    modules = []
    for layer in net.layers:
        linear = torch.nn.Linear(layer.n_in, layer.n_out, dtype=torch.float64)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(np.array(layer.W, dtype=np.float64)))
            linear.bias.copy_(torch.from_numpy(np.array(layer.b, dtype=np.float64)))
        modules.append(linear)
        if layer.activation == "tanh":
            modules.append(torch.nn.Tanh())
    return torch.nn.Sequential(*modules)


def _flat(model):
    return np.concatenate([p.detach().numpy().ravel() for p in model.parameters()])


@pytest.mark.parametrize("name, weight_decay", [("Adam", 0.0), ("Adam", 0.01),
                                                ("AdamW", 0.01)])
@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "mse"])
def test_adam_matches_torch_optim(name, weight_decay, loss):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3))
    regression = loss == "mse"
    y = rng.standard_normal((40, 2)) if regression else rng.integers(0, 3, 40)
    net = nc.mlp(3, [8, 8], 2 if regression else 3, loss=loss, dtype="float64", seed=1)
    model = _torch_mlp(net)
    np.testing.assert_array_equal(_flat(model), net.params)  # same layout: W then b, per layer
    settings = {"lr": 0.05, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": weight_decay}
    net.fit(X, y, epochs=20, batch_size=len(X), shuffle=False, verbose=0,
            optimizer=getattr(nc, name)(**settings))
    optimizer = getattr(torch.optim, name)(model.parameters(), **settings)
    criterion = torch.nn.MSELoss() if regression else torch.nn.CrossEntropyLoss()
    inputs = torch.from_numpy(X)
    targets = torch.from_numpy(y) if regression else torch.from_numpy(y.astype(np.int64))
    for _ in range(20):
        optimizer.zero_grad()
        criterion(model(inputs), targets).backward()
        optimizer.step()
    expected = _flat(model)
    np.testing.assert_allclose(net.params, expected, rtol=1e-10,
                               atol=1e-10 * np.abs(expected).max())
