"""TrainConfig from the command line: its defaults, then a --config file, then the flags typed. Shared by
`workbench train` (train_cmds.py) and `train --detach` (jobs_cmds.py), which import it from here so that
neither imports the other."""

from __future__ import annotations

import sys


def _defaults() -> dict:
    from ..core.training.config import TrainConfig

    return TrainConfig(base_model="", dataset=None, out="").to_dict()


def config_from_args(args):
    """TrainConfig from its defaults, then the --config file, then the flags given on the command line."""
    from ..core.settings_file import config_from_file
    from ..core.training.config import TrainConfig

    values = _defaults()
    if getattr(args, "config", None):
        values.update(config_from_file(args.config))
    values.update({k: v for k, v in vars(args).items() if k in values})
    for field, flag in (("base_model", "--model"), ("out", "--out")):
        if not values.get(field):
            print(f"workbench train: error: {flag} is required (on the command line or in --config FILE)",
                  file=sys.stderr)
            raise SystemExit(2)
    return TrainConfig.from_dict(values)
