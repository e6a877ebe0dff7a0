# compressor — build, test and maintenance targets. `bash scripts/bootstrap.sh` first on a
# fresh machine (installs the apt packages and the .venv these targets use).
SWIFT   ?= swift
PREFIX  ?= /usr/local
PYTHON  ?= .venv/bin/python
RELEASE := .build/release/compressor
DEBUG   := .build/debug/compressor

.PHONY: completions man build debug test test-swift test-interop test-sanitizers test-realmodels conformance realmodels demo install proto operator-versions fixtures bench clean

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
test: test-swift test-interop test-sanitizers conformance test-realmodels

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
	  --filter 'BadInputTests|RoundTripTests|MutationFuzzTests|CLITests|GraphSemanticsTests'

## The ONNX backend node cases (generated from the onnx wheel's case collector) and the wheel's
## model suites through `compressor run`; writes the pass table and every failure to docs/conformance.md.
ONNX_DATA = $$($(PYTHON) -c 'import onnx, os; print(os.path.dirname(onnx.__file__))')/backend/test/data
conformance: debug
	$(PYTHON) Tests/conformance/generate.py .build/conformance/node
	$(PYTHON) Tests/conformance/run.py --compressor $(DEBUG) --report docs/conformance.md \
	  --suite node=.build/conformance/node --suite pytorch-converted=$(ONNX_DATA)/pytorch-converted \
	  --suite pytorch-operator=$(ONNX_DATA)/pytorch-operator --suite simple=$(ONNX_DATA)/simple \
	  --require node=0.97 --require pytorch-converted=1 --require pytorch-operator=1 --require simple=1

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

## Regenerates Sources/Compression/OpsetConversion/OperatorVersions.swift (the opset converter's
## operator history) from the installed onnx wheel's schemas.
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

clean:
	rm -rf .build .build-sanitizers .build-manual bench/out
