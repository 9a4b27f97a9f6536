"""Training speed against every peer, in one run: nncore vs JAX, PyTorch and scikit-learn.

    python benchmarks/peers.py              # S, M, R, L on one thread, L2 on two; Markdown
    python benchmarks/peers.py --quick      # fewer steps and rounds, for a smoke test

The measurement issue 12 asks for. Every library trains the same network (tanh, softmax
cross-entropy, SGD with momentum 0.9 or Adam) on the same data (2 features, 5 classes, the
shape of Peaks) with a full loop: a shuffle per epoch, mini-batches, forward, backward and
update. Peers:

- JAX, a jitted step called from Python per mini-batch ("jax jit");
- JAX, a whole epoch compiled by ``jax.lax.scan`` ("jax scan");
- PyTorch eager, and PyTorch with ``torch.compile`` on the model (compiled once per
  configuration, outside the timed runs);
- scikit-learn's MLPClassifier (MLPs only).

Each thread count runs in its own child process, pinned to that many CPUs with every
library told to use that many threads (BLAS through threadpoolctl, ``torch.set_num_threads``,
XLA's multi-threaded Eigen turned off for one thread). Within a child the libraries alternate in
interleaved rounds, so a slow moment of the shared machine hits all of them; the table
reports the median over rounds of nncore's rate over the fastest peer's rate *in the same
round*, and each configuration's achieved FLOP/s as a share of the sgemm peak measured in
the same child (``scipy.linalg.blas.sgemm`` on 1536x1536 float32). Each timed run starts
after a rest of SETTLE seconds, so that no thread pool still spinning from the library
before takes a core from it. For L the table also gives the products-only bound: the
steps/s of a step that did nothing but its matrix products, each timed alone through the
same BLAS, and the share of it nncore and the fastest peer reach (their ratio is the
quotient of the two shares; with this BLAS no share can pass 1, so a ratio above the
fastest peer's share inverted is out of reach). A missing library shows as "-".
JAX and PyTorch come from ``pip install ".[bench]"``.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

CONFIGS = {
    # name: (kind, hidden widths or (width, depth), batch, steps per round, optimizer)
    "S": ("mlp", [32] * 3, 32, 3000, "sgd"),
    "M": ("mlp", [64] * 4, 64, 2000, "sgd"),
    "R": ("resnet", (64, 4), 64, 1000, "sgd"),
    "L": ("mlp", [512] * 4, 256, 60, "sgd"),
    "M-adam": ("mlp", [64] * 4, 64, 2000, "adam"),
    "R-adam": ("resnet", (64, 4), 64, 1000, "adam"),
}
ONE_THREAD = ["S", "M", "R", "L", "M-adam", "R-adam"]
TWO_THREADS = {"L2": "L"}
N_FEATURES, N_CLASSES, LR, MOMENTUM, ADAM_LR = 2, 5, 0.01, 0.9, 1e-3
EPOCHS = 2


def widths(kind, arch):
    """(fan_in, fan_out) of every weight matrix, in order."""
    if kind == "mlp":
        sizes = [N_FEATURES, *arch, N_CLASSES]
        return list(zip(sizes[:-1], sizes[1:]))
    width, depth = arch
    return [(N_FEATURES, width)] + [(width, width)] * (2 * depth) + [(width, N_CLASSES)]


def flops_per_step(kind, arch, batch):
    """Multiply-adds x2 of forward, weight gradient and input gradient (none for layer 0)."""
    products = widths(kind, arch)
    total = sum(2 * batch * i * o * 3 for i, o in products)
    return total - 2 * batch * products[0][0] * products[0][1]


#: Configurations whose products are large enough (L's hidden ones are 134 MFLOP each;
#: the rest of a step's are under 1% of its time) for SciPy's sgemm, called from Python,
#: to time them without its call overhead showing.
PRODUCT_BOUND = {"L"}


def products_bound(kind, arch, batch, repeats=15):
    """Steps/s if a step did nothing but its matrix products: each product of a step
    (forward, weight and input gradient, with the transpositions nncore's kernels ask BLAS
    for) timed alone through SciPy's sgemm (the BLAS nncore calls), median of
    ``repeats``, summed. No library doing the same products with this BLAS can exceed it."""
    import numpy as np
    from scipy.linalg.blas import sgemm

    rng = np.random.default_rng(0)
    total = 0.0
    for layer, (n_in, n_out) in enumerate(widths(kind, arch)):
        X = rng.random((batch, n_in), dtype=np.float32)
        W = rng.random((n_out, n_in), dtype=np.float32)
        dZ = rng.random((batch, n_out), dtype=np.float32)
        # row-major products as column-major ones on the transposed (F-ordered) views
        products = [lambda: sgemm(1.0, W.T, X.T, trans_a=True),          # Z = X W^T
                    lambda: sgemm(1.0, X.T, dZ.T, trans_b=True)]         # dW = dZ^T X
        if layer > 0:
            products.append(lambda: sgemm(1.0, W.T, dZ.T))              # dX = dZ W
        for product in products:
            product()
            total += float(np.median([_timed(product, settle=False)
                                      for _ in range(repeats)]))
    return 1.0 / total


def make_data(batch, steps):
    import numpy as np

    rng = np.random.default_rng(0)
    n = batch * max(steps // EPOCHS, 1)
    X = rng.uniform(-3, 3, (n, N_FEATURES)).astype(np.float32)
    y = rng.integers(0, N_CLASSES, n)
    return X, y


# ----------------------------------------------------------------------------- runners
# Each runner returns a function that trains EPOCHS epochs and returns steps per second;
# building (and compiling) happens once, outside the timed calls.

def nncore_runner(kind, arch, batch, steps, optimizer):
    import nncore as nc

    X, y = make_data(batch, steps)
    if kind == "mlp":
        net = nc.mlp(N_FEATURES, arch, N_CLASSES)
    else:
        net = nc.resnet(N_FEATURES, arch[0], arch[1], N_CLASSES)

    def run():
        opt = nc.SGD(lr=LR, momentum=MOMENTUM) if optimizer == "sgd" else nc.Adam(lr=ADAM_LR)
        start = time.perf_counter()
        net.fit(X, y, epochs=EPOCHS, batch_size=batch, optimizer=opt, verbose=0)
        return EPOCHS * (len(X) // batch) / (time.perf_counter() - start)

    run()
    return run


def torch_model(kind, arch):
    """The benchmark network in PyTorch (also used by train_speed.py)."""
    import torch

    class Block(torch.nn.Module):
        def __init__(self, width):
            super().__init__()
            self.inner = torch.nn.Linear(width, width)
            self.outer = torch.nn.Linear(width, width, bias=False)

        def forward(self, x):
            return x + self.outer(torch.tanh(self.inner(x)))

    if kind == "mlp":
        layers, width = [], N_FEATURES
        for h in arch:
            layers += [torch.nn.Linear(width, h), torch.nn.Tanh()]
            width = h
    else:
        width = arch[0]
        layers = [torch.nn.Linear(N_FEATURES, width), torch.nn.Tanh()]
        layers += [Block(width) for _ in range(arch[1])]
    return torch.nn.Sequential(*layers, torch.nn.Linear(width, N_CLASSES))


def torch_runner(kind, arch, batch, steps, optimizer, compiled=False):
    import torch

    torch.manual_seed(0)
    model = torch_model(kind, arch)
    if compiled:  # its forward and backward compiled by TorchInductor (C++ on the CPU)
        model = torch.compile(model)
    loss_fn = torch.nn.CrossEntropyLoss()
    X, y = make_data(batch, steps)
    X, y = torch.from_numpy(X), torch.from_numpy(y)
    generator = torch.Generator().manual_seed(0)

    def run():
        opt = (torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
               if optimizer == "sgd" else torch.optim.Adam(model.parameters(), lr=ADAM_LR))
        start = time.perf_counter()
        for _ in range(EPOCHS):
            order = torch.randperm(len(X), generator=generator)
            Xs, ys = X[order], y[order]
            for i in range(0, len(X) - batch + 1, batch):
                opt.zero_grad()
                loss_fn(model(Xs[i:i + batch]), ys[i:i + batch]).backward()
                opt.step()
        return EPOCHS * (len(X) // batch) / (time.perf_counter() - start)

    run()
    return run


def _jax_model(kind, arch, optimizer):
    """Parameters, a training step and an optimizer state for JAX, written out by hand."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    params = []
    for i, (fan_in, fan_out) in enumerate(widths(kind, arch)):
        W = rng.normal(0, np.sqrt(1 / fan_in), (fan_in, fan_out)).astype(np.float32)
        b = np.zeros(fan_out, np.float32)
        params.append((jnp.asarray(W), jnp.asarray(b)))

    def forward(params, x):
        if kind == "mlp":
            for W, b in params[:-1]:
                x = jnp.tanh(x @ W + b)
        else:
            W, b = params[0]
            x = jnp.tanh(x @ W + b)
            blocks = params[1:-1]
            for (W1, b1), (W2, _) in zip(blocks[::2], blocks[1::2]):
                x = x + jnp.tanh(x @ W1 + b1) @ W2  # the outer product has no bias
        W, b = params[-1]
        return x @ W + b

    def loss(params, x, y):
        logits = forward(params, x)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))

    grad = jax.grad(loss)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)

    if optimizer == "sgd":
        state = zeros

        def step(carry, batch):
            params, velocity = carry
            g = grad(params, *batch)
            velocity = jax.tree_util.tree_map(lambda v, g: MOMENTUM * v + g, velocity, g)
            params = jax.tree_util.tree_map(lambda p, v: p - LR * v, params, velocity)
            return (params, velocity), None
    else:
        state = (zeros, zeros, jnp.zeros((), jnp.float32))

        def step(carry, batch):
            params, (m, v, t) = carry
            g = grad(params, *batch)
            t = t + 1
            m = jax.tree_util.tree_map(lambda m, g: 0.9 * m + 0.1 * g, m, g)
            v = jax.tree_util.tree_map(lambda v, g: 0.999 * v + 0.001 * g * g, v, g)
            scale = ADAM_LR * jnp.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
            params = jax.tree_util.tree_map(lambda p, m, v: p - scale * m / (jnp.sqrt(v) + 1e-8),
                                            params, m, v)
            return (params, (m, v, t)), None

    return params, state, step


def _jitted_steps(step, batch, n_batches):
    """An epoch as a Python loop over mini-batches, each step a jitted call."""
    import jax

    jit_step = jax.jit(lambda carry, x, y: step(carry, (x, y))[0])

    def epoch(carry, key, X, y):
        order = jax.random.permutation(key, len(X))
        Xs, ys = X[order], y[order]
        for i in range(0, n_batches * batch, batch):
            carry = jit_step(carry, Xs[i:i + batch], ys[i:i + batch])
        return carry

    return epoch


def _scanned_epoch(step, batch, n_batches):
    """A whole epoch compiled as one call: the steps under ``jax.lax.scan``."""
    import jax

    @jax.jit
    def epoch(carry, key, X, y):
        order = jax.random.permutation(key, len(X))[:n_batches * batch]
        Xb = X[order].reshape(n_batches, batch, N_FEATURES)
        yb = y[order].reshape(n_batches, batch)
        return jax.lax.scan(step, carry, (Xb, yb))[0]

    return epoch


def _jax_runner(kind, arch, batch, steps, optimizer, make_epoch):
    import jax
    import numpy as np

    params, state, step = _jax_model(kind, arch, optimizer)
    X, y = make_data(batch, steps)
    n_batches = len(X) // batch
    epoch = make_epoch(step, batch, n_batches)
    X, y = jax.device_put(X), jax.device_put(y.astype(np.int32))
    key, carry = jax.random.PRNGKey(0), (params, state)

    def run():
        nonlocal key, carry
        start = time.perf_counter()
        for _ in range(EPOCHS):
            key, sub = jax.random.split(key)
            carry = epoch(carry, sub, X, y)
        jax.block_until_ready(carry)
        return EPOCHS * n_batches / (time.perf_counter() - start)

    run()
    return run


def jax_jit_runner(kind, arch, batch, steps, optimizer):
    return _jax_runner(kind, arch, batch, steps, optimizer, _jitted_steps)


def jax_scan_runner(kind, arch, batch, steps, optimizer):
    return _jax_runner(kind, arch, batch, steps, optimizer, _scanned_epoch)


def sklearn_runner(kind, arch, batch, steps, optimizer):
    if kind != "mlp":
        return None  # MLPClassifier has no residual blocks
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    X, y = make_data(batch, steps)
    options = (dict(solver="sgd", learning_rate_init=LR, momentum=MOMENTUM,
                    nesterovs_momentum=False) if optimizer == "sgd"
               else dict(solver="adam", learning_rate_init=ADAM_LR))

    def run():
        model = MLPClassifier(hidden_layer_sizes=arch, activation="tanh", batch_size=batch,
                              max_iter=EPOCHS, alpha=0.0, tol=0.0, n_iter_no_change=10**9,
                              shuffle=True, random_state=0, **options)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, y)
        return EPOCHS * (len(X) // batch) / (time.perf_counter() - start)

    return run


def torch_compile_runner(kind, arch, batch, steps, optimizer):
    """PyTorch with ``torch.compile`` on the model; None (skipped) where it cannot compile
    (it needs a C++ compiler)."""
    try:
        return torch_runner(kind, arch, batch, steps, optimizer, compiled=True)
    except Exception as error:  # noqa: BLE001 - any compiler failure means "not here"
        print(f"torch.compile skipped: {type(error).__name__}: {error}", file=sys.stderr)
        return None


RUNNERS = {"nncore": nncore_runner, "jax jit": jax_jit_runner, "jax scan": jax_scan_runner,
           "torch": torch_runner, "torch compile": torch_compile_runner,
           "sklearn": sklearn_runner}
MODULES = {"nncore": "nncore", "jax jit": "jax", "jax scan": "jax", "torch": "torch",
           "torch compile": "torch", "sklearn": "sklearn"}


def sgemm_peak(repeats=5, n=1536):
    """Best FLOP/s of one float32 n x n x n product through SciPy's BLAS."""
    import numpy as np
    from scipy.linalg.blas import sgemm

    a = np.asfortranarray(np.random.default_rng(0).random((n, n), dtype=np.float32))
    sgemm(1.0, a, a)
    best = min(_timed(lambda: sgemm(1.0, a, a), settle=False) for _ in range(repeats))
    return 2 * n**3 / best


#: Seconds of rest before each timed run. Thread pools keep spinning for a while after
#: their work (onnxruntime's intra-op pool by default, OpenMP's, OpenBLAS's): without a
#: rest the next library measured would share its cores with them. Seen in
#: inference.py: on two threads nncore's S rate went from 13.4M to 19.5M rows/s with the
#: rest, onnxruntime's stayed at 13.8M-14.2M.
SETTLE = 0.2


def _timed(function, settle=True):
    if settle:
        time.sleep(SETTLE)
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


# ----------------------------------------------------------------------------- child

def child(threads, names, rounds, quick):
    """Measure `names` on `threads` threads; print one JSON line of results."""
    from threadpoolctl import threadpool_limits

    import nncore.ops  # noqa: F401  (loads SciPy's BLAS before the limit below)

    threadpool_limits(limits=threads)
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass
    peak = sgemm_peak()
    results = {"peak": peak, "configs": {}}
    for name in names:
        kind, arch, batch, steps, optimizer = CONFIGS[TWO_THREADS.get(name, name)]
        steps = max(steps // 10, 4) if quick else steps
        runners = {}
        for library, make in RUNNERS.items():
            try:
                __import__(MODULES[library])
            except ImportError:
                continue
            run = make(kind, arch, batch, steps, optimizer)
            if run is not None:
                runners[library] = run
        rates = {library: [] for library in runners}
        for _ in range(rounds):
            for library, run in runners.items():
                time.sleep(SETTLE)  # see SETTLE
                rates[library].append(run())
        bound = (products_bound(kind, arch, batch)
                 if TWO_THREADS.get(name, name) in PRODUCT_BOUND else None)
        results["configs"][name] = {"rates": rates, "bound": bound,
                                    "flops": flops_per_step(kind, arch, batch)}
    print(json.dumps(results))


def spawn(threads, names, rounds, quick):
    cpus = sorted(os.sched_getaffinity(0))[:threads] if hasattr(os, "sched_getaffinity") else []
    # XLA has no flag for a thread count: one thread turns its Eigen pool off, and the
    # taskset pinning bounds every library's threads to the CPUs given.
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads),
               XLA_FLAGS=f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'}")
    command = [sys.executable, __file__, "--child", str(threads), "--rounds", str(rounds),
               "--configs", ",".join(names)] + (["--quick"] if quick else [])
    if cpus and len(cpus) >= threads:
        command = ["taskset", "-c", ",".join(map(str, cpus))] + command
    output = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    return json.loads(output.stdout.strip().splitlines()[-1]), len(cpus) >= threads


def cpu_model():
    """The CPU's name with its family and model numbers (a KVM guest may show only a brand)."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor() or platform.machine()
    return (f"{fields.get('model name', platform.machine())} "
            f"(family {fields.get('cpu family', '?')} model {fields.get('model', '?')})")


def report(threads, results):
    import numpy as np

    peak = results["peak"]
    for name, entry in results["configs"].items():
        rates = entry["rates"]
        peers = [k for k in rates if k != "nncore"]
        per_round = [r / max(rates[p][i] for p in peers)
                     for i, r in enumerate(rates["nncore"])] if peers else []
        fastest = max(peers, key=lambda p: np.median(rates[p])) if peers else "-"
        cells = [f"{np.median(rates[k]):,.0f}" if k in rates else "-" for k in RUNNERS]
        share = np.median(rates["nncore"]) * entry["flops"] / peak
        rounds = " ".join(f"{r:.2f}" for r in per_round)
        bound = entry.get("bound")
        bound = (f"{bound:,.0f}: nncore {np.median(rates['nncore']) / bound:.2f}, "
                 f"{fastest} {np.median(rates[fastest]) / bound:.2f}"
                 if bound and per_round else "-")
        print(f"| {name} | {threads} | " + " | ".join(cells)
              + (f" | {np.median(per_round):.2f}x ({fastest}) | {rounds} | {share:.0%} |"
                 if per_round else f" | - | - | {share:.0%} |") + f" {bound} |", flush=True)
    return peak


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few steps and rounds")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--configs", default=None,
                        help="comma-separated subset of " + ",".join([*ONE_THREAD, *TWO_THREADS]))
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    rounds = 2 if args.quick else args.rounds
    chosen = args.configs.split(",") if args.configs else [*ONE_THREAD, *TWO_THREADS]
    unknown = [c for c in chosen if c not in CONFIGS and c not in TWO_THREADS]
    if unknown:
        parser.error(f"--configs: unknown configuration(s) {', '.join(unknown)}")
    if args.child is not None:
        child(args.child, chosen, rounds, args.quick)
        return

    print(f"CPU: {cpu_model()}; python {platform.python_version()}\n")
    print("| config | threads | " + " | ".join(RUNNERS) + " | nncore / fastest peer (median) "
          "| per round | nncore share of sgemm peak | products-only bound, steps/s: "
          "share reached |")
    print("|---|---:|" + "---:|" * (len(RUNNERS) + 4))
    peaks = []
    for threads, names in ((1, [c for c in chosen if c in CONFIGS]),
                           (2, [c for c in chosen if c in TWO_THREADS])):
        if not names:
            continue
        results, pinned = spawn(threads, names, rounds, args.quick)
        peaks.append((threads, results["peak"], pinned))
        report(threads, results)
    print("\nsteps/s, median over interleaved rounds; " + "; ".join(
        f"{t}-thread sgemm peak {p / 1e9:.0f} GFLOP/s{'' if pinned else ' (not pinned)'}"
        for t, p, pinned in peaks))
    missing = [k for k, m in MODULES.items() if not _importable(m)]
    if missing:
        print("not installed, shown as '-': " + ", ".join(missing))


def _importable(module):
    try:
        __import__(module)
        return True
    except ImportError:
        return False


if __name__ == "__main__":
    main()
