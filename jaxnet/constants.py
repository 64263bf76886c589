"""The choices and defaults that both the library and the CLI's parsers read, in a module that
imports nothing (so `jaxnet --help` starts without JAX); each is re-exported where it belongs."""

DATASETS = ("digits", "random", "cifar10", "npz", "csv")  # jaxnet.data.load_dataset's names

# jaxnet.model
INIT_METHODS = ("normal", "he")
DEFAULT_WEIGHT_SCALE = 5e-2  # the notebook's weight_scale
DEFAULT_MOMENTUM = 0.9  # running = momentum * running + (1 - momentum) * batch (CS231n, Flax)
DEFAULT_EPS = 1e-5

# jaxnet.optim
OPTIMIZERS = ("sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine")

# jaxnet.sweep: the values a sweep may vary per run, in report and plot order (the hidden
# widths, then the notebook's lr and weight_scale), and those sampled log-uniformly.
# "hidden" takes tuples of widths (the architecture); the others take numbers.
SWEEPABLE = ("hidden", "lr", "weight_scale", "reg", "dropout", "momentum", "beta1", "beta2",
             "weight_decay")
LOG_AXES = ("lr", "weight_scale", "reg", "weight_decay")
DEFAULT_EPOCHS = 30  # runs trained together share one length: config.epochs, or this when None
