"""`jaxnet gradcheck`: the hand-written backward against jax.grad and finite differences."""

from __future__ import annotations

from jaxnet.cli import common


def add_parser(subparsers):
    p = subparsers.add_parser(
        "gradcheck", help="check the hand-written backward against jax.grad and numeric gradients",
        description="Builds the network (the same --layers/--hidden as jaxnet train) on random "
        "CIFAR-shaped inputs and prints, per parameter, the relative error of the hand-written "
        "gradient against jax.grad and against central finite differences in float64. Exits 0 "
        "when every error is under its tolerance, 1 otherwise.")
    g = p.add_argument_group("network")
    g.add_argument("--layers", type=common.positive_int,
                   help=f"total layers L (default {common.DEFAULT_LAYERS})")
    g.add_argument("--hidden", type=common.hidden_list,
                   help=f"hidden width(s), 100 or 256,128 (default {common.DEFAULT_HIDDEN})")
    g.add_argument("--features", type=common.positive_int, default=3072,
                   help="input features (default 3072, CIFAR-shaped)")
    g.add_argument("--classes", type=common.positive_int, default=10, help="default 10")
    g.add_argument("--dropout", type=common.number, default=0.0, help="drop probability (default 0)")
    g.add_argument("--reg", type=common.number, default=0.0, help="L2 strength (default 0)")
    g.add_argument("--class-weight", choices=("balanced",), help="check the class-weighted "
                   "loss, balanced over the random labels (default: unweighted)")
    g = p.add_argument_group("check")
    g.add_argument("--eval", action="store_true", help="eval mode (running statistics, no dropout)")
    g.add_argument("--batch", type=common.positive_int, default=16, help="examples (default 16)")
    g.add_argument("--seed", type=int, default=0, help="default 0")
    p.set_defaults(run=run)


def run(args) -> int:
    from jaxnet import ranges
    from jaxnet.gradchecks import gradcheck_network

    ranges.check("dropout", args.dropout)
    ranges.check("reg", args.reg)
    hidden = common.resolve_hidden(args.layers, args.hidden)
    dims = (args.features, *hidden, args.classes)
    report = gradcheck_network(dims, batch=args.batch, seed=args.seed, train=not args.eval,
                               dropout=args.dropout, reg=args.reg, class_weight=args.class_weight)
    print(report)
    return 0 if report.passed else 1
