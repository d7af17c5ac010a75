# Karman. `make` builds bin/karman; `make test` sets up and runs every test
# (as root, as CI does); `make bench` runs the benchmarks beside the peers;
# `make demo` is the main job on a fresh machine.
GO      ?= go
BIN     := bin/karman
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
export PATH := $(PATH):/usr/local/go/bin

.PHONY: all build install test unit e2e bench demo k8s-demo setup setup-tests clean lint fuzz conformance

PREFIX ?= /usr/local

all: build

# bin/karman is the lean CLI (-tags lean: no registry client, signature
# verification or agent server); bin/karman-full, the complete one, does
# fetch, trust, verify and agent for it (README.md, "Binaries").
build:
	CGO_ENABLED=0 $(GO) build -trimpath -tags lean -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/karman
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/karman-full ./cmd/karman
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/karman-stage1 ./cmd/karman-stage1
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/karman-testimage ./tests/cmd/karman-testimage
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o bin/karman-lookalike ./tests/cmd/karman-lookalike
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/karman-k8s ./tests/cmd/karman-k8s

# karman execs karman-full and karman-stage1 from its own directory:
# install them together.
install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/karman
	install -D -m 0755 bin/karman-full $(DESTDIR)$(PREFIX)/bin/karman-full
	install -D -m 0755 bin/karman-stage1 $(DESTDIR)$(PREFIX)/bin/karman-stage1

# What the demo needs; `make test` adds the real cosign (setup.sh --tests).
setup:
	./scripts/setup.sh

setup-tests:
	./scripts/setup.sh --tests

# Everything: unit tests and the end-to-end tests against bin/karman,
# through karman-testreport: the output of failed tests, then a summary of
# every skip and why (README.md, "Testing"). With $CI=true or
# $KARMAN_TEST_STRICT=1 a missing prerequisite fails its test.
test: setup-tests build
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed: $$out" >&2; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags lean ./cmd/karman
	CGO_ENABLED=0 $(GO) build -o bin/karman-testreport ./tests/cmd/karman-testreport
	CGO_ENABLED=0 KARMAN_BINARY=$(CURDIR)/$(BIN) bin/karman-testreport $(GO) test -json -count=1 -timeout 20m ./...

unit:
	CGO_ENABLED=0 $(GO) test -count=1 $$(go list ./... | grep -v /tests)

bench: build
	./scripts/setup.sh --bench
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./image/... ./signing/...
	./tests/bench/fetch.sh
	./tests/bench/run.sh
	./tests/bench/apps.sh
	./tests/bench/net.sh
	./tests/bench/agent.sh
	./tests/bench/cri.sh
	./tests/bench/k8s.sh

# critest (cri-tools v1.37.0) against a fresh karman agent, offline: the
# totals and the failed specs; fails only on a spec beyond
# tests/conformance/karman.known-failures (docs/kubernetes.md,
# "Conformance"). RUNTIME=containerd runs it against Debian's containerd.
RUNTIME ?= karman
conformance: setup-tests build
	./scripts/conformance.sh --runtime $(RUNTIME)

demo: setup build
	./scripts/demo.sh

# A one-node Kubernetes cluster on Karman: up, three nginx look-alikes
# deployed, `kubectl get nodes,pods -o wide`, all torn down
# (docs/kubernetes.md, "A one-node cluster").
k8s-demo: setup-tests build
	./scripts/k8s-demo.sh

# Every fuzz target for FUZZTIME each (default 30s), one at a time
# (docs/fuzzing.md). `make test` and `make unit` run their seed corpora.
FUZZTIME ?= 30s
fuzz:
	FUZZTIME=$(FUZZTIME) GO=$(GO) ./scripts/fuzz.sh

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed: $$out" >&2; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags lean ./cmd/karman

clean:
	rm -rf bin
