# Every target runs in every module of the workspace (each directory with a go.mod,
# and the benchmark tools' modules under bench/).
MODULES     := $(sort $(dir $(wildcard */go.mod bench/*/go.mod)))
GO          ?= go
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
VERSION     := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT      := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS     := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
# The release tool (release/), on its own: it needs none of the other modules.
RELEASE     := cd $(CURDIR)/release && GOWORK=off $(GO) run . -root ..
# In a loop over $$m: -modfile=FILE for a GOWORK=off build of a module whose go.mod has no
# replace lines (the CLI, so that go install …@VERSION works), or nothing (docs/releasing.md).
DEVMOD       = $$($(RELEASE) devmod -module $$m -out $(CURDIR)/bin/devmod/$$(echo $$m | tr / _)go.mod)

.PHONY: all build run deps test cover check fmt vet staticcheck test-nowork fuzz apidiff soak bench bench-compare bench-fairness tidy release release-proxy

all: check test build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/lemonade ./lemonade

run: build
	bin/lemonade demo

# The real peers the tests use (redis-server, redis-tools, chromium), installed when missing.
deps:
	@bash .ci/deps

test: deps
	@set -e; for m in $(MODULES); do echo "== go test $$m"; (cd $$m && $(GO) test -race -count=1 ./...); done
	@echo "== go test loadbalancer with the goroutine proxy (the engine off Linux)"
	@cd loadbalancer && $(GO) test -race -count=1 -tags lemonade_goroutines . ./proxy/
	@echo "== the proxy's randomised contract test on one CPU, both engines"
	@cd loadbalancer && GOMAXPROCS=1 $(GO) test -race -count=1 -run Random ./proxy/ && \
		GOMAXPROCS=1 $(GO) test -race -count=1 -tags lemonade_goroutines -run Random ./proxy/

# Statement coverage per module, its own packages only, the CLI's e2e runs of the built
# binary included; fails below COVER_MIN percent. Profiles land in bin/cover/ (.ci/cover).
COVER_MIN ?= 85
cover: deps
	@COVER_MIN=$(COVER_MIN) GO=$(GO) bash .ci/cover $(MODULES)

check: fmt vet staticcheck test-nowork fuzz apidiff

fmt:
	@out=$$(gofmt -l $(MODULES)); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	@set -e; for m in $(MODULES); do echo "== go vet $$m"; (cd $$m && $(GO) vet ./...); done
	@echo "== go vet loadbalancer (GOOS=darwin: the goroutine proxy off Linux)"
	@cd loadbalancer && GOOS=darwin $(GO) vet ./...

staticcheck:
	@set -e; for m in $(MODULES); do echo "== staticcheck $$m"; (cd $$m && $(GO) run $(STATICCHECK) ./...); done

# Each module must also build and pass on its own, through its relative replace lines.
test-nowork: deps
	@set -e; for m in $(MODULES); do echo "== GOWORK=off go test $$m"; \
		modfile=$(DEVMOD); (cd $$m && GOWORK=off GOFLAGS="$$modfile" $(GO) test -race -count=1 ./...); done

# Each published module's API against its last release tag (golang.org/x/exp/apidiff): the
# changes are listed, and a module at v1 or above that breaks its API fails the check.
apidiff:
	@echo "== API changes since the last release"
	@$(RELEASE) apidiff

# make release VERSION=vX.Y.Z: check, set the internal requires, test, commit, tag every module.
release:
	@[ "$(origin VERSION)" = "command line" ] || { echo "usage: make release VERSION=vX.Y.Z (now: $$(cat VERSION))"; exit 2; }
	@bash release/release.sh $(VERSION)

# make release-proxy OUT=DIR [VERSION=vX.Y.Z]: what a release would publish, as a GOPROXY
# directory, from the tree as it is (no tag, no network). VERSION defaults to the VERSION file.
release-proxy:
	@[ -n "$(OUT)" ] || { echo "usage: make release-proxy OUT=DIR [VERSION=vX.Y.Z]"; exit 2; }
	@$(RELEASE) proxy -out "$(abspath $(OUT))" \
		$(if $(filter command line,$(origin VERSION)),-version $(VERSION))
	@echo "wrote $(OUT): GOPROXY=file://$(abspath $(OUT))"

# Every fuzz target of every module, FUZZTIME each (their seed corpora also run in `make test`).
FUZZTIME ?= 3s
fuzz:
	@set -e; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' $(MODULES)); do \
		for n in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
			echo "== fuzz $$n in $$(dirname $$f) for $(FUZZTIME)"; \
			(cd $$(dirname $$f) && $(GO) test -run '^$$' -fuzz "^$$n\$$" -fuzztime $(FUZZTIME) . >/dev/null) || \
				{ (cd $$(dirname $$f) && $(GO) test -run '^$$' -fuzz "^$$n\$$" -fuzztime $(FUZZTIME) .); exit 1; }; \
		done; \
	done

# Load through reloads, worker restarts and drains for SOAK (60s); RSS, goroutines and
# descriptors must end flat and no request may fail (lemonade/soak_e2e_test.go).
SOAK ?= 60s
SOAK_TIMEOUT ?= 30m
soak:
	cd lemonade && SOAK=$(SOAK) $(GO) test -race -count=1 -timeout $(SOAK_TIMEOUT) -run '^TestSoak$$' -v .

bench:
	@set -e; for m in $(MODULES); do (cd $$m && $(GO) test -run '^$$' -bench . -benchmem ./...); done

bench-compare: build
	bash bench/compare.sh

# One busy connection vs a 1-byte echo on the same event loop, against HAProxy.
bench-fairness: build
	bash bench/fairness.sh

tidy:
	@set -e; for m in $(MODULES); do \
		modfile=$(DEVMOD); (cd $$m && GOWORK=off GOFLAGS="$$modfile" $(GO) mod tidy); \
		if [ -n "$$modfile" ]; then f=$${modfile#-modfile=}; cp "$$f" $$m/go.mod; cp "$${f%.mod}.sum" $$m/go.sum; fi; \
	done; $(RELEASE) set-version $$(cat $(CURDIR)/VERSION)
