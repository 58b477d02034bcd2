# Thin wrapper over CMake + ninja. See README.md.
BUILD       ?= build
BUILD_ASAN  ?= build-asan
BUILD_FUZZ  ?= build-fuzz
JOBS        ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps build test test-asan fuzz-smoke fuzz-long bench demo clean attack interop soak valgrind

all: build

# Installs missing system packages (needs root); a no-op when everything is present.
deps:
	@./scripts/install-deps

$(BUILD)/build.ninja:
	@./scripts/install-deps
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)

build: $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

$(BUILD_ASAN)/build.ninja:
	@./scripts/install-deps
	cmake -S . -B $(BUILD_ASAN) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCT_SANITIZE=ON $(CMAKE_FLAGS)

test-asan: $(BUILD_ASAN)/build.ninja
	cmake --build $(BUILD_ASAN) -j $(JOBS)
	cd $(BUILD_ASAN) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

$(BUILD_FUZZ)/build.ninja:
	@./scripts/install-deps
	CC=clang cmake -S . -B $(BUILD_FUZZ) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCT_FUZZ=ON $(CMAKE_FLAGS)

# Runs every libFuzzer target for a short, bounded time (FUZZ_SECONDS each).
fuzz-smoke: $(BUILD_FUZZ)/build.ninja
	cmake --build $(BUILD_FUZZ) -j $(JOBS) --target fuzz-targets
	./scripts/fuzz-smoke $(BUILD_FUZZ) $${FUZZ_SECONDS:-20}

# The named attack suite alone, with its pass/fail list per case (also part of `make test`).
attack: build
	CT_BUILD_DIR=$(abspath $(BUILD)) CT_SOURCE_DIR=$(CURDIR) /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/attack

# Interop with upstream Trustee alone, every case listed (also part of `make test`).
interop: build
	cd $(BUILD) && ctest -R '^interop$$' -V

# SOAK_SECONDS (default 1800) at 80 % of the measured maximum: 0 errors, RSS growth < 5 %.
soak: build
	./scripts/soak $(BUILD)

# The KBS and cdh e2e (a representative subset) under valgrind memcheck: 0 errors, 0 definite leaks.
valgrind: build
	./scripts/valgrind-e2e $(BUILD)

# Runs every libFuzzer target for FUZZ_SECONDS each (default 15 minutes) on a corpus kept in
# $(BUILD_FUZZ)/fuzz-corpus; findings become seeds in tests/fuzz/corpus (scripts/fuzz-long).
fuzz-long: $(BUILD_FUZZ)/build.ninja
	cmake --build $(BUILD_FUZZ) -j $(JOBS) --target fuzz-targets
	./scripts/fuzz-long $(BUILD_FUZZ) $${FUZZ_SECONDS:-900}

bench: build
	./scripts/bench $(BUILD)

demo: build
	./scripts/demo $(BUILD)

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_FUZZ)
