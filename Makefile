# vxdp: every target bootstraps .venv on first use; nothing needs installing beforehand.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.vxdp-installed
# the compiled verifier (mypyc), rebuilt whenever its sources or what they import change
VERIFIER_SO := $(VENV)/.vxdp-verifier-compiled
DEBS   := $(VENV)/.debian-deps
PYTEST ?= $(BIN)/pytest

.PHONY: all test demo lint bench fuzz test-asan build deps clean dist-check

all: test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel cffi 'mypy>=2.4'

# Reinstall when the packaging or the C core changes (the extension is built at install).
$(STAMP): pyproject.toml setup.py $(wildcard csrc/*.c csrc/*.h csrc/*.py) | $(BIN)/python
	$(BIN)/pip install -q --no-build-isolation -e '.[test,dev,demo]'
	@touch $@

$(DEBS): tools/debian-deps.sh | $(BIN)/python
	@tools/debian-deps.sh
	@touch $@

# The verifier compiled with mypyc beside its Python modules (setup.py; about a minute).
# VXDP_MYPYC=0 builds without it; VXDP_VERIFIER=python runs the Python modules anyway.
$(VERIFIER_SO): $(wildcard vxdp/bpf/*.py vxdp/bpf/verifier/*.py) setup.py | $(STAMP)
	$(BIN)/python setup.py -q build_ext --inplace
	@touch $@

deps: $(DEBS) $(STAMP) $(VERIFIER_SO)

# Rebuild the C core and the compiled verifier in place (after editing csrc/ by hand).
build: $(STAMP)
	$(BIN)/python setup.py -q build_ext --inplace
	@touch $(VERIFIER_SO)

test: deps
	$(PYTEST) -q

demo: deps
	$(BIN)/vxdp demo

lint: deps
	$(BIN)/ruff check .
	$(BIN)/mypy virtio_spec guest host vxdp

bench: deps
	$(BIN)/vxdp bench

fuzz: deps
	$(BIN)/python -m tests.fuzz.run

# The C core's tests against an ASan + UBSan build of the same sources.  The sanitizer
# runtimes are preloaded into Python only: the test process drops LD_PRELOAD at start, so
# the tools tests spawn (clang, bpftool, editcap, tshark) run as they normally do.  The
# tests are those that drive csrc/ (interpreter, maps, helpers, virtqueues, datapath, JIT
# glue); the process and DPDK tests are left out: their children have no sanitizer runtime.
ASAN_TESTS := tests/vxdp/test_native_smoke.py tests/vxdp/test_interp.py \
  tests/vxdp/test_coremaps.py tests/vxdp/test_xdp_helpers.py tests/vxdp/test_vring_c.py \
  tests/vxdp/test_datatest.py tests/vxdp/test_differential.py tests/vxdp/test_jit.py \
  tests/host/test_datapath.py tests/host/test_switch.py tests/guest/test_datapath.py \
  tests/guest/test_handover.py \
  tests/vxdp/test_frames.py tests/vxdp/vhost_user/test_fds.py tests/vxdp/test_host_helpers.py

test-asan: deps
	VXDP_SANITIZE=1 VXDP_MYPYC=0 $(BIN)/python setup.py -q build_ext --inplace
	VXDP_CORE=asan ASAN_OPTIONS=detect_leaks=0 \
	  LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	  $(BIN)/python -c 'import os, sys, pytest; os.environ.pop("LD_PRELOAD", None); \
	    sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", *sys.argv[1:]]))' $(ASAN_TESTS)

# sdist -> wheel -> a new venv outside the source tree, where vxdp verify, exec --engine jit,
# bench --suite xdp and the pytest plugin must run (tests/test_dist.py; uses the package index).
dist-check: deps
	VXDP_DIST_CHECK=1 $(PYTEST) -q -p no:cacheprovider tests/test_dist.py

clean:
	rm -rf $(VENV) build *.egg-info vxdp/_vxdp_core*.so vxdp/_vxdp_core*.c \
	  vxdp/bpf/verifier__mypyc* vxdp/bpf/isa*.so vxdp/bpf/verifier/*.so
