# The two commands a fresh machine needs: `make demo` (the main job) and `make test`.
# constraints.txt pins the whole stack as checked together; without it pip's resolver can wander off to
# ancient sdists (it once picked a MarkupSafe that no longer builds).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all lint bench-shrink bench-convert bench-speed bench-sweep bench-data-free bench-accuracy bench-latency bench-mediapipe bench-damage bench-app-input bench-resume bench-sparsify bench-resolution bench-adaptive-bn clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev,convert,mediapipe]" -c constraints.txt
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mobileprune shrink mobilenet_v1 --target 0.84 --out demo-out --force

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

test-all: $(STAMP)  # also the slow tests (more converter variants)
	$(BIN)/python -m pytest -n 2 -q -m ""

lint: $(STAMP)  # style, then the structure rules (no import cycles, module sizes, a short shrink())
	$(BIN)/ruff check mobileprune tests benchmarks tools
	$(BIN)/ruff format --check mobileprune tests benchmarks tools
	$(BIN)/python tools/check_structure.py

bench-shrink: $(STAMP)
	$(BIN)/python benchmarks/shrink_mobilenet_v2.py

bench-convert: $(STAMP)
	$(BIN)/python benchmarks/convert_mobilenet_v2.py

bench-speed: $(STAMP)  # run on an otherwise idle machine
	$(BIN)/python benchmarks/bench_speedup.py

bench-sweep: $(STAMP)
	$(BIN)/python benchmarks/sweep_cifar_mobilenet_v2.py

bench-data-free: $(STAMP)
	$(BIN)/python benchmarks/data_free_allocation.py

bench-accuracy: $(STAMP)
	$(BIN)/python benchmarks/accuracy_at_2x.py

bench-mediapipe: $(STAMP)
	$(BIN)/python benchmarks/mediapipe_imagenet.py

bench-damage: $(STAMP)  # compare + report on real weights (ImageNet split, CIFAR-10 app model)
	$(BIN)/python benchmarks/class_damage.py

bench-app-input: $(STAMP)  # run on an otherwise idle machine
	$(BIN)/python benchmarks/app_input_cost.py

bench-sparsify: $(STAMP)  # one-shot OBS vs magnitude (ImageNet), the CIFAR app Pareto, the sparse .tflite
	$(BIN)/python benchmarks/sparsify_imagenet_oneshot.py
	$(BIN)/python benchmarks/sparsify_cifar_app.py
	$(BIN)/python benchmarks/sparse_tflite.py

bench-resume: $(STAMP)  # kill -9 three times + --resume on MobileNetV2, against an unkilled run
	$(BIN)/python benchmarks/resume_mobilenet_v2.py

bench-resolution: $(STAMP)  # fewer pixels vs fewer filters at 0.5 / 0.7 of the MACs; run on an idle machine
	$(BIN)/python benchmarks/resolution_vs_filters.py
	$(BIN)/python benchmarks/accuracy_at_2x.py --resolution auto

bench-adaptive-bn: $(STAMP)  # BN statistics re-estimated after pruning, on the shared model given real statistics
	$(BIN)/python benchmarks/adaptive_bn.py

bench-latency: $(STAMP)  # run on an otherwise idle machine
	$(BIN)/python benchmarks/latency_target.py

clean:
	rm -rf $(VENV) demo-out .pytest_cache
