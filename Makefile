# compressor — build, test and maintenance targets. `bash scripts/bootstrap.sh` first on a
# fresh machine (installs the apt packages and the .venv these targets use).
SWIFT   ?= swift
PREFIX  ?= /usr/local
PYTHON  ?= .venv/bin/python
RELEASE := .build/release/compressor
DEBUG   := .build/debug/compressor

.PHONY: completions man build debug test test-swift test-interop test-sanitizers test-fuzz test-realmodels conformance realmodels demo install proto operator-versions fixtures bench bench-streaming fuzz fuzz-build fuzz-graph clean

# The release binary is compiled for this machine's CPU: the executor's own loops (depthwise
# convolutions, pooling, element-wise maps) then use its widest vectors — MobileNet-style models
# run 20% faster on an AVX-512 machine, with byte-identical results. PORTABLE=1 builds for any
# CPU of the architecture (the binary is to run elsewhere).
CPU_FLAGS := $(if $(PORTABLE),,-Xswiftc -target-cpu -Xswiftc native)

build:
	$(SWIFT) build -c release --product compressor $(CPU_FLAGS)

debug:
	$(SWIFT) build --build-tests

## Every test: Swift unit and end-to-end tests, then the interop tests judged by ONNX Runtime.
test: test-swift test-interop test-sanitizers test-fuzz conformance test-realmodels

test-swift: debug
	$(SWIFT) test --skip-build --disable-swift-testing

# Training (test_distill.py) runs the optimized build: the debug one is ~15× slower there.
test-interop: debug build
	COMPRESSOR=$(DEBUG) COMPRESSOR_RELEASE=$(RELEASE) $(PYTHON) -m pytest -q -p no:cacheprovider Tests/interop

## The bad-input and round-trip tests again under AddressSanitizer (Swift and C) and
## UndefinedBehaviorSanitizer (the C targets; Swift traps on overflow by itself and its
## compiler offers no UBSan on Linux). The end-to-end tests run the instrumented binary.
test-sanitizers:
	LSAN_OPTIONS=suppressions=$(CURDIR)/Tests/lsan-suppressions.txt UBSAN_OPTIONS=halt_on_error=1 \
	$(SWIFT) test --disable-swift-testing --scratch-path .build-sanitizers --sanitize=address \
	  -Xcc -fsanitize=undefined -Xcc -fno-sanitize-recover=undefined \
	  -Xswiftc -Xclang-linker -Xswiftc -fsanitize=undefined \
	  --filter 'BadInputTests|RoundTripTests|MutationFuzzTests|CLITests|GraphSemanticsTests|BadInputCommandTests|FuzzRegressionTests'

## Fuzzing (Tests/fuzz). Graph-level: mutated fixture and real-suite models through every command
## that reads a model, on the sanitizer build (built by test-sanitizers); libFuzzer: the ONNX reader,
## the data-file readers, shape inference and the recipe parser under ASan. `make fuzz-graph FUZZ_SECONDS=N` and
## `make fuzz FUZZ_SECONDS=N` (per target) for long runs; failures are kept under .build/fuzz-graph
## and .build-fuzz/findings. test-fuzz is the short fixed budget of `make test`.
FUZZ_SECONDS ?= 60
FUZZ_SEED    ?= 1
FUZZ_TARGETS := fuzz-onnx fuzz-data fuzz-shapes fuzz-recipe
SANITIZED    := .build-sanitizers/debug/compressor
FUZZ_ENV     := ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:abort_on_error=1

test-fuzz: test-sanitizers
	$(PYTHON) Tests/fuzz/mutate_graphs.py --compressor $(SANITIZED) --runs 150 --seed $(FUZZ_SEED) --models fixtures --out .build/fuzz-graph-ci
	$(MAKE) fuzz FUZZ_SECONDS=20

fuzz-graph:
	@test -x $(SANITIZED) || { echo "build the sanitizer binary first (make test-sanitizers)"; exit 1; }
	$(PYTHON) Tests/fuzz/mutate_graphs.py --compressor $(SANITIZED) --seconds $(FUZZ_SECONDS) --seed $(FUZZ_SEED) \
	  --models fixtures,realmodels --out .build/fuzz-graph

# swiftc keeps only the last of several -sanitize= flags, and SwiftPM passes one per --sanitize:
# the combined flag is what instruments the Swift modules for coverage.
fuzz-build:
	$(SWIFT) build --package-path Tests/fuzz --scratch-path .build-fuzz --sanitize=fuzzer --sanitize=address \
	  -Xswiftc -sanitize=fuzzer,address

fuzz: fuzz-build
	$(PYTHON) Tests/fuzz/seed_corpora.py .build-fuzz/corpus
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p .build-fuzz/findings/$$t .build-fuzz/corpus/$$t; \
	  echo "== $$t ($(FUZZ_SECONDS) s)"; \
	  $(FUZZ_ENV) .build-fuzz/debug/$$t -max_total_time=$(FUZZ_SECONDS) -timeout=20 -rss_limit_mb=4096 \
	    -max_len=262144 -print_final_stats=1 -artifact_prefix=.build-fuzz/findings/$$t/ .build-fuzz/corpus/$$t \
	    2> .build-fuzz/$$t.log || { tail -40 .build-fuzz/$$t.log; exit 1; }; \
	  grep -E "stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added" .build-fuzz/$$t.log; \
	done

## The ONNX backend node cases (every case the onnx wheel's collector yields), the wheel's light_*
## models and model suites, and the com.microsoft operator cases (expected outputs from ONNX
## Runtime) through `compressor run`; pass rates count every case of a suite; writes the table and
## every failing or unsupported case to docs/conformance.md.
ONNX_DATA = $$($(PYTHON) -c 'import onnx, os; print(os.path.dirname(onnx.__file__))')/backend/test/data
conformance: debug
	$(PYTHON) Tests/conformance/generate.py .build/conformance
	$(PYTHON) Tests/conformance/generate_contrib.py .build/conformance/contrib
	$(PYTHON) Tests/conformance/run.py --compressor $(DEBUG) --report docs/conformance.md \
	  --suite node=.build/conformance/node --suite light=.build/conformance/light \
	  --suite pytorch-converted=$(ONNX_DATA)/pytorch-converted --suite pytorch-operator=$(ONNX_DATA)/pytorch-operator \
	  --suite simple=$(ONNX_DATA)/simple --suite contrib=.build/conformance/contrib \
	  --require node=0.97 --require light=1 --require pytorch-converted=1 --require pytorch-operator=1 \
	  --require simple=1 --require contrib=1

## The real-model suite (Tests/realmodels): public pretrained models from pip wheels and the onnx
## wheel, and library architectures exported with torch (in .venv-export, a large download the
## first time), through every command; ONNX Runtime judges every output. Writes docs/realmodels.md.
## The cache lives outside the repository: REALMODELS_CACHE, default ~/.cache/compressor-realmodels.
EXPORT_PYTHON = .venv-export/bin/python
realmodels: build
	@cmp -s Tests/realmodels/requirements-export.txt .venv-export/installed-requirements.txt || \
	  { python3 -m venv .venv-export && .venv-export/bin/pip install -q --disable-pip-version-check \
	    -r Tests/realmodels/requirements-export.txt && cp Tests/realmodels/requirements-export.txt .venv-export/; \
	    mv .venv-export/requirements-export.txt .venv-export/installed-requirements.txt; }
	$(PYTHON) Tests/realmodels/fetch.py --export-python $(EXPORT_PYTHON)
	$(PYTHON) Tests/realmodels/run.py --compressor $(RELEASE) --report docs/realmodels.md

## The suite's CI subset: the models that need no torch, every cell; fails on any failing cell.
test-realmodels: build
	$(PYTHON) Tests/realmodels/fetch.py --ci
	$(PYTHON) Tests/realmodels/run.py --ci --compressor $(RELEASE)

## The main job on bundled fixtures: describe a model, move its weights to external data and back,
## quantize it; prune another and recover its accuracy by distillation from the original.
demo: build
	@mkdir -p .build/demo
	$(RELEASE) inspect Fixtures/transformer_block.onnx
	$(RELEASE) convert --force Fixtures/transformer_block.onnx .build/demo/transformer_block.onnx --external-data
	$(RELEASE) inspect .build/demo/transformer_block.onnx
	$(RELEASE) convert --force .build/demo/transformer_block.onnx .build/demo/transformer_block.single.onnx
	cmp Fixtures/transformer_block.onnx .build/demo/transformer_block.single.onnx && echo "demo: round trip is byte-identical"
	$(RELEASE) quantize --force Fixtures/transformer_block.onnx --mode static --calibration percentile \
	  --data Fixtures/data/calib_tokens.npz --eval-data Fixtures/data/digits_tokens.npz --labels Fixtures/data/digits_y.npy \
	  -o .build/demo/transformer_block.int8.onnx --report .build/demo/quantize.json
	$(RELEASE) prune --force Fixtures/mobile_cnn.onnx --structured --ratio 0.3 --channel-multiple 1 \
	  --data Fixtures/data/digits_img.npy --labels Fixtures/data/digits_y.npy -o .build/demo/mobile_cnn.pruned.onnx --report .build/demo/prune.json
	$(RELEASE) distill --force --quiet --teacher Fixtures/mobile_cnn.onnx --student .build/demo/mobile_cnn.pruned.onnx \
	  --data Fixtures/data/train_img.npy --val-data Fixtures/data/digits_img.npy --val-labels Fixtures/data/digits_y.npy \
	  --epochs 20 --lr 3e-3 -o .build/demo/mobile_cnn.recovered.onnx --report .build/demo/distill.json

## The binary, shell completions (bash, zsh, fish) and a man page, the last two generated by
## swift-argument-parser from the same command definitions as --help.
install: build completions man
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 \
	  $(DESTDIR)$(PREFIX)/share/bash-completion/completions $(DESTDIR)$(PREFIX)/share/zsh/site-functions \
	  $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
	install -m 755 $(RELEASE) $(DESTDIR)$(PREFIX)/bin/compressor
	install -m 644 .build/share/compressor.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/compressor
	install -m 644 .build/share/_compressor $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_compressor
	install -m 644 .build/share/compressor.fish $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/compressor.fish
	install -m 644 .build/share/compressor.1 $(DESTDIR)$(PREFIX)/share/man/man1/compressor.1

completions: build
	@mkdir -p .build/share
	$(RELEASE) --generate-completion-script bash > .build/share/compressor.bash
	$(RELEASE) --generate-completion-script zsh > .build/share/_compressor
	$(RELEASE) --generate-completion-script fish > .build/share/compressor.fish

# swift-argument-parser's generate-manual tool (the source of its GenerateManual plugin), built
# from the resolved checkout; the date is the last commit's, so the page is reproducible.
MANUAL_TOOL := .build-manual/release/generate-manual
man: build
	@mkdir -p .build/share
	$(SWIFT) build -c release --package-path .build/checkouts/swift-argument-parser --scratch-path .build-manual --product generate-manual
	$(MANUAL_TOOL) $(RELEASE) --date $$(git log -1 --format=%cs 2>/dev/null || echo 2025-01-01) --output-directory .build/share

## Regenerates Sources/CONNX from Sources/CONNX/proto/onnx.proto (needs protobuf-c-compiler).
proto:
	@tmp=$$(mktemp -d) && cd Sources/CONNX/proto && protoc-c --c_out=$$tmp onnx.proto && \
	  mv $$tmp/onnx.pb-c.h ../include/onnx.pb-c.h && mv $$tmp/onnx.pb-c.c ../src/onnx.pb-c.c && rmdir $$tmp

## Regenerates Sources/IR/OperatorVersions.swift (the standard operators' opset history, read by the
## opset converter and `compressor ops`) from the installed onnx wheel's schemas.
operator-versions:
	$(PYTHON) scripts/generate_operator_versions.py

## Regenerates Fixtures/ (trains on scikit-learn's digits with torch; several minutes).
fixtures:
	REQUIREMENTS=Fixtures/requirements.txt bash scripts/bootstrap.sh
	$(PYTHON) Fixtures/generate.py

## Benchmarks against the peer tools, measured in the same run; prints ratios.
bench: build
	REQUIREMENTS=Fixtures/requirements.txt bash scripts/bootstrap.sh
	$(PYTHON) bench/run.py --compressor $(RELEASE)

## The streaming benchmark: a generated 3 GB external-data model through inspect, convert,
## weight-only quantize and prune --sparsity; peak RSS of each against the data size.
bench-streaming: build
	$(PYTHON) bench/streaming.py --compressor $(RELEASE)

clean:
	rm -rf .build .build-sanitizers .build-fuzz .build-manual bench/out
