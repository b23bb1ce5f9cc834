"""``study train`` and ``study analyze``: thin commands over the fine-tuning core's own (:mod:`finetune.commands`)."""

from __future__ import annotations

import argparse
from functools import partial


def cmd_train(args: argparse.Namespace) -> int:
    from finetune.commands import train

    train(args.config, args.output, say=partial(print, flush=True))
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from finetune.commands import analyze

    for path in analyze(args.analysis, args.run, args.out, args.label, args.batches, args.layers):
        print(path)
    return 0
