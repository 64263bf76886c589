"""`jaxnet export`: a trained run as PyTorch weights (.safetensors) or an ONNX graph (.onnx)."""

from __future__ import annotations

import pathlib

from jaxnet.cli import common


def add_parser(subparsers):
    p = subparsers.add_parser(
        "export", help="write a trained run for PyTorch (.safetensors) or ONNX Runtime (.onnx)",
        description="The file's extension picks the format. FILE.safetensors: the run's best "
        "parameters under the state_dict names of nn.Sequential(Linear, BatchNorm1d, ReLU, "
        "Dropout, ..., Linear): hidden layer i is modules 4i..4i+3, the output Linear module "
        "4L; the header holds the architecture, the input standardisation (mean, scale) and "
        "the classes as JSON; jaxnet.export.torch_module(FILE) rebuilds the module. "
        "FILE.onnx: one ONNX graph from raw input columns (one input per table column, or x) "
        "through the preprocessing and the network to the outputs probabilities and label "
        "(see jaxnet.onnx_export); needs the onnx extra: pip install 'jaxnet[onnx]'.")
    common.add_run_dir(p)
    p.add_argument("file", metavar="FILE", help="the file to write: FILE.safetensors or "
                   "FILE.onnx")
    p.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")
    p.set_defaults(run=run)


def run(args) -> int:
    from jaxnet import export

    out = export.export_run(args.run_dir, pathlib.Path(args.file), overwrite=args.overwrite)
    if out.suffix.lower() == ".onnx":
        from jaxnet import onnx_export

        names = [s["name"] for s in onnx_export.inputs_of(out)]
        shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
        print(f"exported {args.run_dir} to {out}: ONNX graph (opset {onnx_export.OPSET}) from "
              f"{len(names)} input{'s' if len(names) > 1 else ''} ({shown}) to "
              f"{' and '.join(onnx_export.OUTPUTS)}")
        return 0
    head = export.load_header(out)
    modules = head["architecture"]
    what = f"nn.Sequential of {len(modules)} modules ({', '.join(m['module'] for m in modules)})"
    if head["ensemble"] is not None:
        what = (f"{head['ensemble']['members']} members under members.K., each an {what}; "
                f"the ensemble's probabilities: {export.COMBINE}")
    print(f"exported {args.run_dir} to {out}: {what}")
    return 0
