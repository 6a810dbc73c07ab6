# lkedge — see README.md. Needs Go 1.26 (go.mod); the first build downloads
# the Go modules listed in go.sum from the Go module proxy.

GO      ?= go
BIN     := bin/lkedge
FUZZTIME ?= 10s

.PHONY: all build run test vet fmt-check unit fuzz clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/lkedge

## run: build and start lkedge on the embedded defaults (file store and
## journal under ./data, in-process locks), listening on :6080.
run: build
	./$(BIN) serve

## test: everything the project tests; .ci/run calls exactly this.
test: fmt-check vet unit fuzz

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.cache/*')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 ./...

## fuzz: a short run of the ingest fuzz target on top of its seed corpus.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzIngest$$' -fuzztime $(FUZZTIME) ./host/ingest

clean:
	rm -rf bin
