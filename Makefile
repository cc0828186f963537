# The two commands of the README: `make run` and `make test`.
# Set-up is the same for both: a .venv with a CPU torch (pinned so pip takes the wheel that lies
# on disk instead of a multi-GB CUDA build), then the project with its test extra.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: run test bench lint setup clean samples screenshots

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/pruneviz

test: $(STAMP)
	$(BIN)/python -m ruff check visualizer tests
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	for f in tests/benchmarks/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

lint: $(STAMP)
	$(BIN)/python -m ruff check visualizer tests

samples: $(STAMP)
	$(BIN)/python sample_models/train.py

screenshots: $(STAMP)
	$(BIN)/pruneviz screenshot --view window --out docs/img/window.png --model resnet-mini --criterion snip --density 0.1 --size 1400x900
	$(BIN)/pruneviz screenshot --view spectrum --out docs/img/spectrum.png --model lenet --criterion magnitude --density 0.2
	$(BIN)/pruneviz screenshot --view landscape --out docs/img/landscape.png --model lenet --criterion magnitude --density 0.2
	$(BIN)/pruneviz screenshot --view densenet --out docs/img/densenet.png --model densenet-mini --criterion magnitude --density 0.2
	$(BIN)/pruneviz screenshot --view graph --out docs/img/graph.png --model densenet-mini --criterion magnitude --density 0.2
	$(BIN)/pruneviz screenshot --view inception --out docs/img/inception.png --model inception-mini --criterion magnitude --density 0.2
	$(BIN)/pruneviz screenshot --view curves --out docs/img/curves.png --model lenet --criterion snip --density 0.1
	$(BIN)/pruneviz screenshot --view speed --out docs/img/speed.png --model resnet-mini --criterion l1-norm --structure channel --density 0.5
	$(BIN)/pruneviz screenshot --view overview --out docs/img/overview.png --model densenet-mini --criterion magnitude --density 0.2
	$(BIN)/pruneviz screenshot --view profile --out docs/img/profile.png --model resnet-mini --criterion l1-norm --structure channel --density 0.5
	$(BIN)/pruneviz screenshot --view sensitivity --out docs/img/sensitivity.png --model resnet-mini --criterion magnitude

clean:
	rm -rf $(VENV) build dist *.egg-info
