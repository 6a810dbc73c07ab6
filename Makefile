# lkedge — see README.md. Needs Go 1.26.8 (go.mod); the first build downloads
# the Go modules listed in go.sum from the Go module proxy.

GO      ?= go
BIN     := bin/lkedge
# Inputs per fuzz target in make test (about 5 to 15 s each here). A count,
# not a duration: with a duration, Go 1.26's fuzz coordinator can fail a
# clean run with "context deadline exceeded" as the time runs out
# (golang/go#75804, fixed in Go 1.27).
FUZZTIME ?= 60000x
# Execs a fuzz target may spend shrinking an input it found. Go's default is
# 60 s per input, spent even on inputs that only add coverage, which no one
# keeps here: one such minute stalled make test in a run. A crasher is still
# shrunk, within this bound, and kept under testdata/fuzz.
FUZZMINIMIZE ?= 2000x

# Real servers for the integration tests, built once and cached by version
# (a fresh machine pays ~25 minutes for the three builds; see README, Tests).
CACHE_BIN := .cache/bin
VERSITYGW := $(CACHE_BIN)/versitygw-v1.8.0
LIVEKIT   := $(CACHE_BIN)/livekit-server-v1.13.5
CONSUL    := $(CACHE_BIN)/consul-1.16.6
SUDO      := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all build run test vet fmt-check unit fuzz bench servers redis clang clean plugins

all: build

build:
	$(GO) build -ldflags "-X main.commit=$$(git rev-parse HEAD 2>/dev/null)" -o $(BIN) ./cmd/lkedge

## run: build and start lkedge on the embedded defaults (file store and
## journal under ./data, in-process locks), listening on 127.0.0.1:6080 (the
## development key stays on loopback), with the built-in plugins of plugins.yaml.
run: build plugins
	./$(BIN) serve

## test: everything the project tests; .ci/run calls exactly this.
test: fmt-check vet servers unit fuzz

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.cache/*')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

## The SDK is its own module (standard library only), vetted for both the
## host (its test kit) and wasm (plugins).
vet:
	$(GO) vet ./...
	cd sdk && $(GO) vet ./... && GOOS=wasip1 GOARCH=wasm $(GO) vet ./...

## unit needs clang: plugins/internal/cabi builds the C plugin.
unit: clang
	$(GO) test -race -count=1 ./...
	cd sdk && $(GO) test -race -count=1 ./...

## fuzz: short runs of the fuzz targets on top of their seed corpora: the
## webhook endpoint, the webhook's head read against protojson, the token
## check against golang-jwt, the wasm rewrite behind the plugin time limit,
## and the SDK's event decoders.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzIngest$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./host/ingest
	$(GO) test -run '^$$' -fuzz '^FuzzHead$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./host/event
	$(GO) test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./host/webhook
	$(GO) test -run '^$$' -fuzz '^FuzzInstrument$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./host/plugin/internal/interrupt
	$(GO) test -run '^$$' -fuzz '^FuzzPack$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./host/plugin/internal/datapack
	cd sdk && $(GO) test -run '^$$' -fuzz '^FuzzParseEvent$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) .
	cd sdk && $(GO) test -run '^$$' -fuzz '^FuzzParseLazy$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) .

## bench: the accept-path load benchmark, lkedge next to the baseline
## (not part of make test). The servers run on CPU 0, the generator on CPU 1
## (with the full path's S3 server). Then target 3 again, the baseline and
## lkedge running at once and loaded in turn, and a plugin call with its time
## limit beside the same call without, in one process.
bench: build plugins $(VERSITYGW)
	$(GO) build -o bin/lkedge-bench ./cmd/lkedge-bench
	taskset -c 1 bin/lkedge-bench --lkedge $(BIN)
	taskset -c 1 bin/lkedge-bench --lkedge $(BIN) --pairs 8 --duration 2s
	cd host/plugin && taskset -c 1 $(GO) test -run '^$$' -bench CallPairs -benchtime 3000x -count 3 .

## servers: the S3 server (versitygw), LiveKit, Redis and Consul the tests start.
servers: $(VERSITYGW) $(LIVEKIT) $(CONSUL) redis

$(VERSITYGW):
	@mkdir -p $(CACHE_BIN) .cache/gobin
	GOBIN=$(CURDIR)/.cache/gobin $(GO) install github.com/versity/versitygw/cmd/versitygw@v1.8.0
	mv .cache/gobin/versitygw $@

$(LIVEKIT):
	@mkdir -p $(CACHE_BIN) .cache/gobin
	GOBIN=$(CURDIR)/.cache/gobin $(GO) install github.com/livekit/livekit-server/cmd/server@v1.13.5
	mv .cache/gobin/server $@

# Consul 1.16.6 is the last MPL-2.0 release. `go install` cannot build it
# (its go.mod has replace directives), so .ci/consul is a nested module
# that pins its submodules; it takes ~12 minutes and ~2 GB of memory.
$(CONSUL):
	@mkdir -p $(CACHE_BIN)
	cd .ci/consul && GOFLAGS="-mod=readonly -buildvcs=false" $(GO) build -trimpath -ldflags="-s -w" -o $(CURDIR)/$@ github.com/hashicorp/consul

# LiveKit keeps egress state in Redis; without it ListEgress fails.
redis:
	@command -v redis-server >/dev/null || { \
		export DEBIAN_FRONTEND=noninteractive; \
		$(SUDO) apt-get install -y --no-install-recommends redis-server || \
		{ $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends redis-server; }; }

# Debian's clang and lld build the C example plugin (plugins/c-notify);
# wasi-libc and the wasm32 builtins, docs/abi.md's recipe with a C library.
C_TOOLCHAIN := clang lld wasi-libc libclang-rt-dev-wasm32
clang:
	@dpkg-query -W $(C_TOOLCHAIN) >/dev/null 2>&1 || { \
		export DEBIAN_FRONTEND=noninteractive; \
		$(SUDO) apt-get install -y --no-install-recommends $(C_TOOLCHAIN) || \
		{ $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends $(C_TOOLCHAIN); }; }

clean:
	rm -rf bin plugins/*.wasm

## plugins: build each built-in plugin (plugins/NAME/main.go) into
## plugins/NAME.wasm, as plugins.yaml refers to them: Go only, so make run
## needs nothing else. The C example is `make plugins/c-notify.wasm`.
PLUGINS := $(patsubst plugins/%/main.go,%,$(wildcard plugins/*/main.go))
plugins:
	@for p in $(PLUGINS); do \
		echo "plugins/$$p.wasm"; \
		GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -trimpath -ldflags="-s -w" -o plugins/$$p.wasm ./plugins/$$p || exit 1; \
	done

# docs/abi.md's freestanding recipe (plugins/internal/cabi builds it from there).
plugins/c-notify.wasm: plugins/c-notify/notify.c | clang
	clang --target=wasm32 -O2 -nostdlib -fno-builtin -Wl,--no-entry -Wl,--strip-all -o $@ $<
