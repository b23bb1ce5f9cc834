# ruff: noqa: E501
"""Every registry's names and descriptions as plain data, for ``study list`` (no import of what
fills the registries). Written by ``python tools/write_catalog.py`` (``make catalog``) from the
registries themselves; a test fails when the two differ. Do not edit by hand."""

from __future__ import annotations

# (config field, kind, ((name, description), ...)), in the order a spec uses them
CATALOG: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    (
        "search_space",
        "search space",
        (
            ("demo", "regulariser {l2, l2sp} x BSS {on, off}; eta, k if BSS; head learning rate"),
            ("fig3d", "Fig. 3(d): BSS k in {1, 2, 4, 8, 16} x rates x 5 seeds (100 trials), BSS on"),
            (
                "fig3d-small",
                "Fig. 3(d) with its baseline at a laptop's size: BSS k in {0 (off), 1, 2, 4, 8} x rates 15/30/50/100% x 3 seeds (60 trials)",
            ),
            (
                "methods",
                "TPE over the six methods with each one's own coefficients: alpha always; beta for l2sp (distance to the pretrained weights) and delta (feature-map distance); eta and k only with BSS; head lr (no optimiser weight decay: the regulariser applies the penalty)",
            ),
            ("methods-grid", "every one of the six methods once (a grid); all else from the base config"),
            ("paper-table2", "Table 2: rates 15/30/50/100% x six methods x 5 seeds (120 trials per dataset)"),
            (
                "table3-eta",
                "Table 3's BSS strength: eta in {0 (off), 0.001 (the paper's), 0.01, 0.1} x EWC lambda {0 (off), 30} x 5 seeds (40 trials); k, lr and the tasks from the base config",
            ),
            (
                "table3-small",
                "Table 3 with plain fine-tuning as the baseline: EWC lambda in {0 (off), 10, 30, 100} x BSS {off, on} x 5 seeds (40 trials); eta, k, lr and the tasks from the base config (tasks.count >= 2)",
            ),
        ),
    ),
    (
        "protocol",
        "protocol",
        (
            ("custom", "no preset: the config's own values"),
            (
                "official-code",
                "thuml/Batch-Spectral-Shrinkage: momentum 0.9, weight decay 5e-4, 9000 iterations (18 x 500), lr x0.1 at iteration 6000, head lr 0.01, head N(0, 0.01), fp32, square resize 256 + RandomResizedCrop 224 + flip, ten-crop evaluation; trains on the whole sampled subset and reports the last iteration",
            ),
            (
                "paper",
                "NeurIPS 2019 paper (Sec. 5): SGD momentum 0.95, batch 48, head lr 10x backbone, fp32, trains on the whole sampled subset and reports the last epoch; where the paper is silent the preset fills in: the 'progressive' schedule as the official code's (18 x 500 iterations, lr x0.1 at epoch 12 = iteration 6,000), head lr 0.01 for every dataset (the paper: 0.01 or 0.001 per task), RandomResizedCrop 224 (scale 0.08-1) + flip from images decoded once to 256 x 256 squares (aspect ratio not kept), centre-crop evaluation",
            ),
            (
                "tllib",
                "Transfer-Learning-Library: Nesterov momentum 0.9, 20 x 500 iterations, lr x0.1 at epoch 12, head nn.Linear's default init, fp32, RandomResizedCrop 224 (scale 0.2-1) + flip and Resize 256 + centre-crop evaluation, but from images decoded once to 256 x 256 squares (aspect ratio not kept) where tllib crops the original image and resizes its short side; selection on a validation split (tllib picks the best epoch on test)",
            ),
        ),
    ),
    (
        "data.dataset",
        "dataset",
        (
            ("cub200", "CUB-200-2011 (200 bird species)"),
            ("embedded-fashion-mnist", "shipped with the package: Fashion-MNIST, 10 classes"),
            ("fashion-mnist", "Fashion-MNIST from its four IDX files in data.root (60,000 training, 10,000 test)"),
            ("fgvc-aircraft", "FGVC-Aircraft (100 variants)"),
            ("imagefolder", "any folder of train/<class>/*.jpg and test/<class>/*.jpg"),
            ("mit-indoor67", "MIT Indoor-67 scenes"),
            ("mnist", "MNIST from its four IDX files in data.root (60,000 training, 10,000 test digits)"),
            ("oxford-pets", "Oxford-IIIT Pets (37 breeds)"),
            ("stanford-cars", "Stanford Cars (196 models)"),
            ("stanford-dogs", "Stanford Dogs (120 breeds)"),
        ),
    ),
    (
        "model.backbone",
        "backbone",
        (
            (
                "mlp",
                "fully connected ReLU layers on the pixels (model.mlp_hidden; default 400, 400: Kirkpatrick et al.'s permuted-MNIST network), trained from scratch (model.weights: null) or from a file",
            ),
            ("mobilenet_v2", "torchvision mobilenet_v2, 1280-d pooled features"),
            ("resnet101", "torchvision resnet101, 2048-d pooled features"),
            ("resnet18", "torchvision resnet18, 512-d pooled features"),
            ("resnet34", "torchvision resnet34, 512-d pooled features"),
            ("resnet50", "torchvision resnet50, 2048-d pooled features"),
        ),
    ),
    (
        "regularizer.name",
        "regulariser",
        (
            ("bss", "Batch Spectral Shrinkage on the pooled batch features (Eq. 8)"),
            ("delta", "DELTA: attention-weighted feature-map distance to the pretrained network + head L2"),
            ("ewc", "EWC: (lam/2) sum_t sum_i F_t,i (theta_i - theta*_t,i)^2 after each task of a sequence"),
            ("l2", "weight decay (alpha/2)||w||^2 on all weights"),
            ("l2sp", "L2-SP: (beta/2)||w_S - w_S^0||^2 on the backbone + (alpha/2)||w_head||^2"),
        ),
    ),
    (
        "tasks.kind",
        "task kind",
        (("permuted", "each task: one fixed, seeded permutation of the pixels (permuted MNIST)"),),
    ),
    (
        "data.train_transform",
        "training transform",
        (
            ("none", "the centre crop, unaugmented"),
            ("random_resized_crop", "RandomResizedCrop (scale crop_scale_min-1) + flip"),
            ("translate_flip", "random shifts of a few pixels + horizontal flip"),
        ),
    ),
    (
        "data.eval_transform",
        "evaluation transform",
        (
            ("center", "one centre crop"),
            ("ten_crop", "4 corners + centre, each also flipped, logits summed (official BSS)"),
        ),
    ),
)
