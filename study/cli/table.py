"""The command table: each command's target (``module:function``, imported only when the command
runs), its help, its description and its arguments. ``study --help`` and ``study CMD --help`` read
only this: no command module, and so none of torch, Ray, MLflow, Optuna or pandas, is imported."""

from __future__ import annotations

from typing import Any

Arg = tuple[tuple[str, ...], dict[str, Any]]

STUDY_DIR: Arg = (("study_dir",), {"help": "the study's output_dir"})


def server_args(port: int) -> list[Arg]:
    return [
        STUDY_DIR,
        (("--host",), {"default": "127.0.0.1", "help": "bind address (default 127.0.0.1: this machine only)"}),
        (("--port",), {"type": int, "default": port}),
        (("--print-only",), {"action": "store_true", "help": "print the command instead of running it"}),
    ]


COMMANDS: dict[str, tuple[str, str, str, list[Arg]]] = {
    "launch": (
        "study.cli.running:cmd_launch",
        "run a study from a YAML spec",
        "Run a study from a YAML spec.",
        [(("spec",), {"help": "study spec, e.g. studies/demo.yaml"})],
    ),
    "resume": (
        "study.cli.running:cmd_resume",
        "continue an interrupted study",
        "Continue a study stopped by Ctrl-C, a killed driver or its budget: unfinished trials continue from their "
        "last checkpoint, in their own MLflow runs, up to num_samples trials in all.",
        [
            STUDY_DIR,
            (
                ("--budget",),
                {
                    "metavar": "LIMITS",
                    "help": "new limits, e.g. gpu_hours=4 or gpu_hours=4,wall_hours=12 (none lifts one); the hours "
                    "already spent count against them",
                },
            ),
            (
                ("--from",),
                {
                    "dest": "from_uri",
                    "metavar": "URI",
                    "help": "a study whose trials are in a bucket, on a new machine: rebuild the empty STUDY_DIR from "
                    "the prefix its launch printed (trials in: s3://...) and its record's servers, then resume",
                },
            ),
        ],
    ),
    "sync": (
        "study.cli.running:cmd_sync",
        "replay into MLflow what it missed while its server did not answer",
        "Bring MLflow up to date with the study folder: replay the records kept while the tracking server did "
        "not answer (each once), close runs left open, add missing run ids to trials.parquet.",
        [STUDY_DIR],
    ),
    "list": (
        "study.cli.reading:cmd_list",
        "what every registry offers: spaces, protocols, datasets, backbones, ...",
        "The names a spec can use, with a description each.",
        [],
    ),
    "status": (
        "study.cli.reading:cmd_status",
        "trials running / finished / failed and the best so far",
        "Progress of a study, also while it runs (read from its MLflow runs).",
        [STUDY_DIR],
    ),
    "export-best": (
        "study.cli.reading:cmd_export_best",
        "YAML configs of the best trials, runnable by `study train`",
        "Write the top trials' resolved configs (with their checkpoint paths).",
        [
            STUDY_DIR,
            (
                ("--top",),
                {
                    "type": int,
                    "default": 1,
                    "help": "how many trials (by the study's selection metric: best_val_acc, or a grid's test_acc)",
                },
            ),
            (("--out",), {"help": "folder for the YAML files (default: STUDY_DIR/export)"}),
            (
                ("--register",),
                {
                    "nargs": "?",
                    "const": "",
                    "metavar": "NAME",
                    "help": "also log the best trial's weights as an MLflow model and register it as NAME "
                    "(default: the study's name) in MLflow's model registry",
                },
            ),
        ],
    ),
    "report": (
        "study.cli.reading:cmd_report",
        "Table-2 style table, BSS gains, Fig. 3(d) sensitivity, importances, parallel coordinates",
        "Write STUDY_DIR/report (Markdown + PNG + summary.parquet) and log it to the study's parent MLflow run.",
        [
            STUDY_DIR,
            (
                ("--correction",),
                {
                    "choices": ["holm", "bh"],
                    "default": "holm",
                    "help": "each table's p adjusted for its family: holm (family-wise error, default) or bh "
                    "(Benjamini-Hochberg, false discovery rate)",
                },
            ),
            (
                ("--interval",),
                {
                    "choices": ["t", "bootstrap"],
                    "default": "t",
                    "help": "95%% intervals of means: t (default) or a seeded bootstrap percentile interval",
                },
            ),
            (("--seed",), {"type": int, "default": 0, "help": "seed of the bootstrap and Monte-Carlo resampling"}),
        ],
    ),
    "train": (
        "study.cli.core:cmd_train",
        "one fine-tuning run from a config (no Ray)",
        "One fine-tuning run from a config YAML, e.g. a study's best.yaml.",
        [
            (("--config",), {"required": True, "help": "config YAML (e.g. runs/demo/best.yaml)"}),
            (("--output",), {"help": "folder to save the selected weights in"}),
        ],
    ),
    "analyze": (
        "study.cli.core:cmd_analyze",
        "the paper's analyses of finished runs (spectra, angles)",
        "Singular-value spectra of batch features (Fig. 1c-d, 3b-c) or corresponding angles to the "
        "pretrained weights (Eq. 5-6, Fig. 1b); writes Parquet + PNG.",
        [
            (("analysis",), {"choices": ["spectra", "angles"]}),
            (
                ("--run",),
                {
                    "action": "append",
                    "required": True,
                    "help": "folder (or a trial's s3:// URI) with config.yaml + best_model.pt; repeat to compare runs",
                },
            ),
            (("--label",), {"action": "append", "help": "a legend label per --run"}),
            (("--out",), {"required": True, "help": "folder for the table and the plot"}),
            (("--batches",), {"type": int, "default": 8, "help": "spectra: batches to average over"}),
            (("--layers",), {"nargs": "+", "help": "angles: conv layer names (default: the backbone's stage ends)"}),
        ],
    ),
    "ui": (
        "study.cli.servers:cmd_ui",
        "open the MLflow UI of a study",
        "Serve the MLflow UI of a study.",
        server_args(5000),
    ),
    "versions": (
        "study.cli.reading:cmd_versions",
        "the installed dependencies against the supported ranges",
        "Each dependency's installed version beside the range this project supports and was tested on "
        "(compat/supported.py); exit 1 if one is outside it.",
        [],
    ),
    "dashboard": (
        "study.cli.servers:cmd_dashboard",
        "open optuna-dashboard on a study's Optuna storage",
        "Serve optuna-dashboard (pip install -e '.[dashboard]') on the study's Optuna storage (its optuna.db, "
        "or the database named by optuna_storage).",
        server_args(8080),
    ),
}
