"""`scratchllm experiment <name>`: the milestone experiments that test our engines against PyTorch.

scratchllm experiment linear-regression --a 2 --b -3
scratchllm experiment mlp-quadratic --out runs/mlp_quadratic.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

from scratchllm.cli import UserError
from scratchllm.experiments.linear_regression import LinearRegressionConfig
from scratchllm.experiments.mlp_quadratic import WAYS, MLPQuadraticConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    parser = subparsers.add_parser(
        "experiment",
        help="run a milestone experiment: our autograd engines against PyTorch",
        description="Run one of the milestone experiments that train the same model on the "
        "from-scratch engines and on PyTorch, from the same start, and compare the results.",
        formatter_class=fmt,
    )
    sub = parser.add_subparsers(dest="experiment", metavar="<experiment>", required=True)
    # The defaults come from the config dataclasses: one source of truth.
    lin, quad = LinearRegressionConfig(), MLPQuadraticConfig()

    p = sub.add_parser(
        "linear-regression",
        help="fit y = a*x + b with the Value engine, the Tensor engine and PyTorch",
        description="Fit y = a*x + b on noiseless points (x uniform in [-1, 1]) by full-batch "
        "gradient descent on the mean squared error, with the scalar Value engine, the NumPy "
        "Tensor engine and PyTorch, from the same starting point. Prints the true a, b and "
        "each engine's fit.",
        formatter_class=fmt,
    )
    p.add_argument("--a", type=float, default=lin.a, help="true slope")
    p.add_argument("--b", type=float, default=lin.b, help="true intercept")
    p.add_argument("--points", type=int, default=lin.n_points, help="number of data points")
    p.add_argument("--steps", type=int, default=lin.steps, help="gradient-descent steps")
    p.add_argument("--lr", type=float, default=lin.lr, help="learning rate (0 < lr < 1)")
    p.add_argument("--seed", type=int, default=lin.seed, help="seed for the data and the start")
    p.set_defaults(func=_linear_regression)

    p = sub.add_parser(
        "mlp-quadratic",
        help="fit y = w1*x1^2 + w2*x2^2 + b with a ReLU MLP, five ways",
        description="Train a ReLU MLP on y = w1*x1^2 + w2*x2^2 + b (noiseless, train/test "
        "split) five ways from the same initial weights and batches: our Tensor engine with "
        "our SGD and with our Adam, PyTorch tensors with hand-written SGD and Adam, and "
        "torch.nn with torch.optim.Adam. Prints the final train/test MSE of each way and "
        "writes a PNG of the five loss curves.",
        formatter_class=fmt,
    )
    p.add_argument("--w1", type=float, default=quad.w1, help="coefficient of x1^2")
    p.add_argument("--w2", type=float, default=quad.w2, help="coefficient of x2^2")
    p.add_argument("--b", type=float, default=quad.b, help="constant term")
    p.add_argument(
        "--x-max", type=float, default=quad.x_max, help="inputs are uniform in [-x_max, x_max]"
    )
    p.add_argument("--n-train", type=int, default=quad.n_train, help="training points")
    p.add_argument("--n-test", type=int, default=quad.n_test, help="test points")
    p.add_argument(
        "--hidden",
        type=int,
        nargs="+",
        default=list(quad.hidden),
        metavar="H",
        help="hidden layer widths",
    )
    p.add_argument("--steps", type=int, default=quad.steps, help="training steps (one batch each)")
    p.add_argument("--batch-size", type=int, default=quad.batch_size, help="examples per batch")
    p.add_argument(
        "--lr-adam", type=float, default=quad.lr_adam, help="peak learning rate for Adam"
    )
    p.add_argument("--lr-sgd", type=float, default=quad.lr_sgd, help="peak learning rate for SGD")
    p.add_argument("--momentum", type=float, default=quad.momentum, help="SGD momentum")
    p.add_argument(
        "--warmup", type=int, default=quad.warmup, help="linear warm-up steps before cosine"
    )
    p.add_argument(
        "--seed", type=int, default=quad.seed, help="seed for data, weights and batch order"
    )
    p.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default=quad.dtype,
        help="float64 makes the curves agree to rounding (slower)",
    )
    p.add_argument(
        "--ways",
        nargs="+",
        choices=WAYS,
        default=list(WAYS),
        metavar="WAY",
        help=f"which ways to run, from {', '.join(WAYS)}",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="BLAS/torch threads (0: the libraries' default); small matrices run best on one",
    )
    p.add_argument(
        "--out", type=Path, default=Path("mlp_quadratic.png"), help="where to write the loss plot"
    )
    p.add_argument("--no-plot", action="store_true", help="do not write the loss plot")
    p.set_defaults(func=_mlp_quadratic)


def _linear_regression(args: argparse.Namespace) -> int:
    from scratchllm.experiments.linear_regression import run_linear_regression

    config = LinearRegressionConfig(
        a=args.a, b=args.b, n_points=args.points, steps=args.steps, lr=args.lr, seed=args.seed
    )
    result = run_linear_regression(config)
    c = config
    print(f"fit y = a*x + b on {c.n_points} noiseless points, {c.steps} steps, lr {c.lr}")
    print(result.table())
    return 0


def _mlp_quadratic(args: argparse.Namespace) -> int:
    from scratchllm.experiments.mlp_quadratic import plot_losses, run_mlp_quadratic

    if args.threads < 0:
        raise UserError(f"--threads {args.threads}: give 0 (library default) or a positive count")
    config = MLPQuadraticConfig(
        w1=args.w1,
        w2=args.w2,
        b=args.b,
        x_max=args.x_max,
        n_train=args.n_train,
        n_test=args.n_test,
        hidden=tuple(args.hidden),
        steps=args.steps,
        batch_size=args.batch_size,
        lr_adam=args.lr_adam,
        lr_sgd=args.lr_sgd,
        momentum=args.momentum,
        warmup=args.warmup,
        seed=args.seed,
        dtype=args.dtype,
        ways=tuple(dict.fromkeys(args.ways)),
        threads=args.threads or None,
    )
    print(
        f"MLP {config.sizes} on {config.formula()}, "
        f"{config.steps} steps of {config.batch_size}, {config.dtype}"
    )
    result = run_mlp_quadratic(config)
    print(result.table())
    if not args.no_plot:
        print(f"wrote {plot_losses(result, args.out)}")
    return 0
