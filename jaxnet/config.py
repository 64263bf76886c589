"""TrainConfig: every setting of a training run, its defaults and its validation, in one place."""

from __future__ import annotations

import dataclasses

# Light imports only: the CLI's parsers read the defaults here before JAX is imported.
from jaxnet import ranges
from jaxnet.constants import (
    DATASETS,
    DEFAULT_EPS,
    DEFAULT_MOMENTUM,
    DEFAULT_WEIGHT_SCALE,
    INIT_METHODS,
    OPTIMIZERS,
    SCHEDULES,
)
from jaxnet.errors import ConfigError

GRADS = ("manual", "autodiff")
DTYPES = ("float32", "float64")
CLASS_WEIGHTS = ("balanced",)  # besides None (every example counts the same) and explicit weights
ADAPTIVE_PATIENCE = 10  # with epochs=None: stop after this many epochs without improvement


def _valid_class_weight(value) -> bool:
    if value is None or isinstance(value, str):
        return value is None or value in CLASS_WEIGHTS
    return isinstance(value, tuple) and len(value) > 0 and all(map(ranges.POSITIVE[1], value))


# What each constrained field may be (scikit-learn's `_parameter_constraints`): the choices
# here, where their lists live, and the numbers from ranges.RULES.
CONSTRAINTS = {"dataset": ranges.one_of(DATASETS), "init": ranges.one_of(INIT_METHODS),
               "optimizer": ranges.one_of(OPTIMIZERS), "lr_schedule": ranges.one_of(SCHEDULES),
               "grad": ranges.one_of(GRADS), "dtype": ranges.one_of(DTYPES),
               "class_weight": ("None, 'balanced', or one finite weight > 0 per class, in the "
                                "order of the sorted class labels, like (1.0, 5.0)",
                                _valid_class_weight),
               **ranges.RULES}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; the CLI flags map one to one onto it."""

    # digits, random, cifar10, npz or csv (see jaxnet.data); None (not given): the kind
    # data_path's extension names (.csv: csv, .npz: npz, `jaxnet.data.dataset_for`), else digits
    dataset: str | None = None
    data_path: str | None = None  # folder (cifar10) or file (npz, csv); built-in sets take none
    target: str | None = None  # the label column of a csv file
    categorical: tuple[str, ...] = ()  # csv columns to one-hot encode, whatever they hold
    drop: tuple[str, ...] = ()  # csv columns to leave out
    impute: bool = True  # fill missing csv cells (training median + indicator); False refuses
    val_fraction: float = 0.1  # share held out for validation when jaxnet splits the data
    test_fraction: float = 0.2  # share held out for testing when jaxnet splits the data
    standardize: bool = True  # scale inputs by training-set mean and std (saved with the run)
    hidden: tuple[int, ...] = (100, 100, 100, 100)  # hidden widths: 5 layers of 100 (notebook)
    init: str = "normal"  # "normal" (weight_scale * randn, the notebook's) or "he"
    weight_scale: float = DEFAULT_WEIGHT_SCALE  # std of "normal" weights (the notebook's 5e-2)
    dropout: float = 0.2  # drop probability after each hidden ReLU
    reg: float = 1e-4  # L2 strength: loss += 0.5 * reg * sum(w**2)
    # None, "balanced" or one weight per class: the training loss is then the weighted mean
    # sum w[y] nll / sum w[y] (PyTorch's CrossEntropyLoss(weight=w)); "balanced" is scikit-
    # learn's w[c] = n_train / (C * count of c in the training split); the losses and
    # accuracies reported while training (and choosing the best epoch) are weighted alike
    class_weight: str | tuple[float, ...] | None = None
    optimizer: str = "adam"  # sgd, momentum, nesterov, rmsprop, adam or adamw
    lr: float = 1e-3  # base learning rate
    momentum: float = 0.9  # SGD momentum (momentum, nesterov)
    beta1: float = 0.9  # Adam's first-moment decay
    beta2: float = 0.999  # Adam's second-moment decay
    eps: float = 1e-8  # Adam's and RMSprop's epsilon
    rms_decay: float = 0.99  # RMSprop's squared-gradient decay (CS231n's 0.99)
    weight_decay: float = 1e-4  # AdamW's decoupled weight decay
    lr_schedule: str = "constant"  # constant, step (lr_decay per epoch) or cosine (over the run)
    lr_decay: float = 0.95  # per-epoch factor of the step schedule (CS231n's lr_decay)
    batch_size: int = 64  # minibatch size; every example is used in every epoch
    epochs: int | None = None  # exactly this many epochs; None: until no improvement (patience)
    max_epochs: int = 200  # the most epochs when epochs is None
    patience: int | None = None  # stop after this many epochs without improvement (None: 10
    # when epochs is None, else never); improvement: a better val accuracy or a lower val loss
    # (the train loss without a val set); the best epoch has the best val accuracy, then loss
    grad: str = "manual"  # "manual" (hand-written backward) or "autodiff" (jax.grad)
    dtype: str = "float32"  # float32, or float64 (turns on jax_enable_x64)
    bn_momentum: float = DEFAULT_MOMENTUM  # running = m * running + (1 - m) * batch (CS231n, Flax)
    bn_eps: float = DEFAULT_EPS  # batchnorm's variance epsilon
    seed: int = 0  # seeds the split, the initial weights, the shuffles and the dropout masks

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(self.hidden))
        for field in ("categorical", "drop"):
            value = getattr(self, field)
            object.__setattr__(self, field, (value,) if isinstance(value, str) else tuple(value))
        if isinstance(self.class_weight, list):  # read back from JSON
            object.__setattr__(self, "class_weight", tuple(self.class_weight))
        if self.dataset is None:
            from jaxnet.data import dataset_for

            object.__setattr__(self, "dataset", dataset_for(self.data_path) or "digits")

    @property
    def num_epochs(self) -> int:
        """The epochs the run may take: `epochs`, or `max_epochs` when that is None."""
        return self.max_epochs if self.epochs is None else self.epochs

    @property
    def stop_patience(self) -> int | None:
        """Epochs without improvement that stop the run (None: never stop early)."""
        if self.patience is not None:
            return self.patience
        return ADAPTIVE_PATIENCE if self.epochs is None else None

    def validate(self) -> TrainConfig:
        """Raises ConfigError naming the first bad field and what it expects; returns self.

        Cheap: call it before loading data or compiling, so a typo fails at once.
        """
        for field in CONSTRAINTS:
            ranges.check(field, getattr(self, field), CONSTRAINTS)
        ranges.check_fractions(self.val_fraction, self.test_fraction)
        table = [f"`{f}={_shown(getattr(self, f))}`" for f in ("categorical", "drop", "impute")
                 if getattr(self, f) != default(f)]
        if table and self.dataset != "csv":
            raise ConfigError(f"{', '.join(table)} name{'s' if len(table) == 1 else ''} how a "
                              f"csv file's columns are read, but `dataset={self.dataset!r}` is "
                              "not a csv file; drop it, or train on a .csv file")
        import jax

        if self.dtype == "float64" and not jax.config.jax_enable_x64:
            raise ConfigError(
                "`dtype='float64'` needs 64-bit JAX: call jax.config.update('jax_enable_x64', "
                "True) before creating arrays")
        return self

    def to_dict(self) -> dict:
        values = {**dataclasses.asdict(self), "hidden": list(self.hidden)}
        if isinstance(self.class_weight, tuple):
            values["class_weight"] = list(self.class_weight)
        return values

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """The config saved by `to_dict`; unknown keys (from a newer jaxnet) are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def check_unused(init: str, given) -> None:
    """Refuses settings given together where one is ignored: `weight_scale` with init="he".

    Args:
      init: the init method of the run.
      given: the names of the fields the user set or sweeps (the rest keep their defaults).
    """
    if init == "he" and "weight_scale" in given:
        raise ConfigError("`init='he'` draws sqrt(2/fan_in) * randn and ignores `weight_scale`; "
                          "use `init='normal'` or drop `weight_scale`")


def _shown(value) -> str:
    """A setting's value as a message shows it: a list of names as a,b (as its flag takes it)."""
    return ",".join(value) if isinstance(value, tuple) else repr(value)


def default(field: str):
    """The default value of a TrainConfig field (for help texts, so it is written once)."""
    return TrainConfig.__dataclass_fields__[field].default
