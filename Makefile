# Two commands on a fresh machine: `make demo` runs the main job, `make test` passes the tests.
# Both create .venv and install duetto with its extras first (llama-cpp-python compiles once,
# 6-9 minutes on 2 cores; pip caches the wheel afterwards).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# A portable llama.cpp build (no -march=native, so the cached wheel runs on any x86-64 with AVX2).
export CMAKE_ARGS ?= -DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

.PHONY: install demo test test-fast lint bench clean

$(BIN)/duetto: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[all,dev]'
	$(BIN)/duetto models fetch
	@# The dashboard test drives Debian's headless Chromium (never a downloaded browser build).
	@command -v chromedriver >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
	  echo "note: chromium/chromedriver not installed: the dashboard browser test will skip"
	touch $(BIN)/duetto

install: $(BIN)/duetto

demo: install
	$(BIN)/duetto demo

test: install
	$(BIN)/pytest -q

# What needs no model, no shared data and no browser: seconds to a few minutes.
test-fast: install
	$(BIN)/pytest -q -m "not slow and not local_model and not standin and not shared_data" \
	  --ignore=tests/integration/test_gateway_dashboard.py

lint: install
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) duetto-demo .pytest_cache .mypy_cache .ruff_cache
