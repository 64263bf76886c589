"""`jaxnet export`: a trained run's weights as a safetensors file PyTorch loads."""

from __future__ import annotations

import pathlib

from jaxnet.cli import common
from jaxnet.errors import UsageError

SUFFIX = ".safetensors"


def add_parser(subparsers):
    p = subparsers.add_parser(
        "export", help="write a trained run's weights for PyTorch (safetensors)",
        description="Writes the run's best parameters under the state_dict names of "
        "nn.Sequential(Linear, BatchNorm1d, ReLU, Dropout, ..., Linear): hidden layer i is "
        "modules 4i..4i+3, the output Linear module 4L. The header holds the architecture, the "
        "input standardisation (mean, scale) and the classes as JSON; "
        "jaxnet.export.torch_module(FILE) rebuilds the module.")
    common.add_run_dir(p)
    p.add_argument("file", metavar="FILE.safetensors", help="the file to write")
    p.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")
    p.set_defaults(run=run)


def run(args) -> int:
    from jaxnet import export

    out = pathlib.Path(args.file)
    if out.suffix.lower() != SUFFIX:
        raise UsageError(f"{out}: expected a file name ending in {SUFFIX}")
    export.export_torch(args.run_dir, out, overwrite=args.overwrite)
    modules = export.load_header(out)["architecture"]
    print(f"exported {args.run_dir} to {out}: nn.Sequential of {len(modules)} modules "
          f"({', '.join(m['module'] for m in modules)})")
    return 0
