# edged: the two commands a new user needs are `make run` and `make test`.

GO          ?= go
BIN         := bin
CONFIG      ?= configs/examples/sim.yaml
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -s -w -X main.version=$(VERSION)
# Pinned linter, fetched through the Go module proxy on first use.
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.7.0
PKGS        := ./...

export CGO_ENABLED := 0

.PHONY: all build run test test-short stress lint pi footprint bench bench-uplink bench-broker torture fleet clean

all: build

## build: the edged binary for this machine, into bin/edged
build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/edged ./cmd/edged

## run: the daemon on simulated hardware (configs/examples/sim.yaml)
run: build
	./$(BIN)/edged run -c $(CONFIG)

# The race detector needs cgo and a C compiler; without one, test without it.
RACE        := $(shell command -v "$$($(GO) env CC)" >/dev/null 2>&1 && echo -race)

## test: every test, integration tests included (real broker, Mosquitto, qemu).
## The uplink's outage and crash tests send 10,000 messages under -race, so
## they run once more without it at the issue's full 50,000. The unit tests run
## once more as 32-bit x86 (native here): a 32-bit int, as on the Pi's ARMv7.
test:
	CGO_ENABLED=$(if $(RACE),1,0) $(GO) test $(RACE) -count=1 -timeout 12m $(PKGS)
ifneq ($(RACE),)
	$(GO) test -count=1 -timeout 5m -run 'TestUplink(Outage|Crash)Integration' ./cmd/edged
endif
	$(GO) test -tags edgedfailpoints -count=1 -timeout 5m -run TestCrashPoints ./uplink/wal
	GOARCH=386 $(GO) test -short -count=1 -timeout 5m $(PKGS)

## test-short: unit tests only, no processes started
test-short:
	$(GO) test -short -count=1 $(PKGS)

## stress: the whole suite three times over while two busy loops hold both cores, once
## without the race detector and once with it (when a C compiler is there): a test that
## waits on time instead of on a condition fails here. The loops are bounded by timeout
## and killed at the end; the exit status is the tests'.
STRESS_COUNT ?= 3
stress:
	@timeout 3600 sh -c 'while :; do :; done' & b1=$$!; \
	timeout 3600 sh -c 'while :; do :; done' & b2=$$!; \
	trap 'kill $$b1 $$b2 2>/dev/null' EXIT INT TERM; \
	status=0; \
	echo "stress: $(GO) test -count=$(STRESS_COUNT) $(PKGS) with two busy loops"; \
	$(GO) test -count=$(STRESS_COUNT) -timeout 30m $(PKGS) || status=1; \
	if [ -n "$(RACE)" ]; then \
		echo "stress: $(GO) test -race -count=$(STRESS_COUNT) $(PKGS) with two busy loops"; \
		CGO_ENABLED=1 $(GO) test -race -count=$(STRESS_COUNT) -timeout 30m $(PKGS) || status=1; \
	fi; \
	exit $$status

## lint: gofmt, go vet, staticcheck, and the dependency direction of README "How it works"
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	GOARCH=arm GOARM=7 $(GO) vet $(PKGS)
	$(GO) vet -tags edgedfailpoints ./sensors/liveness ./uplink/wal
	$(GO) run $(STATICCHECK) $(PKGS)
	$(GO) test -count=1 -run TestDependencyDirection ./cmd/edged

## pi: static stripped binaries for the Raspberry Pi family, into bin/
pi:
	GOOS=linux GOARCH=arm GOARM=6 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/edged-linux-armv6 ./cmd/edged
	GOOS=linux GOARCH=arm GOARM=7 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/edged-linux-armv7 ./cmd/edged
	GOOS=linux GOARCH=arm64       $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/edged-linux-arm64 ./cmd/edged
	@ls -l $(BIN)/edged-linux-*

## footprint: idle RSS and CPU of `edged run` on the sim example over 60 s, and the ARMv7 binary size
footprint: build pi
	$(GO) run ./cmd/footprint -bin $(BIN)/edged -config $(CONFIG) -seconds 60 -arm $(BIN)/edged-linux-armv7

## bench: the Go benchmarks, with allocations
bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

## bench-uplink: Mosquitto + bridge vs edged run, same scenarios, same cloud Mosquitto, one run
## (steady 1,000 msg/s latency and CPU/msg, max rate, 50,000-message outage and drain, kill -9);
## about 3 minutes. Older in-process figures: add BENCH_FLAGS='-drain-baseline -hold 1000000'.
bench-uplink: build
	$(GO) run ./cmd/benchuplink -edged $(BIN)/edged $(BENCH_FLAGS)

## bench-broker: edged run vs Mosquitto as the LAN broker, one run: CPU/msg at 1k and 2k msg/s,
## QoS 0 and 1, 4 subscribers; RSS with 64 clients; about 3.5 minutes
bench-broker: build
	$(GO) run ./cmd/benchbroker -edged $(BIN)/edged $(BENCH_FLAGS)

## torture: kill edged ROUNDS times (SIGKILL at random moments and at the uplink buffer's crash
## points, -tags edgedfailpoints) while LAN clients feed it; after every restart check loss,
## duplicates, readiness and the heater; exit 1 on a violation. About 3 s a round.
ROUNDS      ?= 25
torture: build
	$(GO) build -tags edgedfailpoints -trimpath -o $(BIN)/edged-failpoints ./cmd/edged
	$(GO) run ./cmd/torture -edged $(BIN)/edged -edged-failpoints $(BIN)/edged-failpoints -rounds $(ROUNDS) $(TORTURE_FLAGS)

## fleet: N edged gateways on simulated sensors uplinking into one Mosquitto; checks every
## gateway's stream is gapless per (gw, epoch, seq), prints broker ingress msg/s and RSS and CPU
## per gateway. About 30 s.
N           ?= 50
fleet: build
	$(GO) run ./cmd/fleet -edged $(BIN)/edged -n $(N) $(FLEET_FLAGS)

clean:
	rm -rf $(BIN) state
