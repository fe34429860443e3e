# edged: the two commands a new user needs are `make run` and `make test`.

GO          ?= go
BIN         := bin
CONFIG      ?= configs/examples/sim.yaml
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT      ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
# The build date is the commit's time, so a build is reproducible.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
export SOURCE_DATE_EPOCH
# Release builds leave out net/http's HTTP/2 (262 KB of the ARMv7 binary):
# browsers speak HTTP/1.1 to a plain http:// listener anyway, and the LAN
# dashboard does not need HTTP/2 over TLS (README "Footprint").
TAGS        := nethttpomithttp2
LDFLAGS     := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.buildEpoch=$(SOURCE_DATE_EPOCH)
# Pinned packager (Debian packages), fetched like staticcheck.
NFPM        := github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2
DIST        ?= dist
# Debian architectures and the Go settings of each: armhf is ARMv6 with
# hard float, what Raspberry Pi OS 32-bit runs (Pi 1, Zero, 2, 3, 4).
DIST_ARCHES := armhf arm64 amd64
GOENV_armhf := GOARCH=arm GOARM=6
GOENV_arm64 := GOARCH=arm64
GOENV_amd64 := GOARCH=amd64
# For deploy only: the Pi 2's own ARMv7 (a little faster there than armhf).
GOENV_armv7 := GOARCH=arm GOARM=7
# Debian version: 1.2.3 from a v1.2.3 tag (1.2.3+4.gabcdef after it),
# else 0.0~gitYYYYMMDD.HASH.
DEB_VERSION ?= $(shell v=$$(git describe --tags --match 'v[0-9]*' 2>/dev/null) && echo "$${v\#v}" | sed 's/-/+/; s/-/./' \
	|| echo "0.0~git$$(TZ=UTC git log -1 --date=format-local:%Y%m%d --format=%cd 2>/dev/null).$$(git rev-parse --short=12 HEAD 2>/dev/null)")
# deploy: the Pi to install on (user@host) and what it runs: armv7 (Pi 2),
# armhf (any 32-bit Raspberry Pi OS) or arm64.
HOST        ?=
ARCH        ?= armv7
DEPLOY_TIMEOUT ?= 60
# Pinned linter, fetched through the Go module proxy on first use.
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.7.0
PKGS        := ./...

export CGO_ENABLED := 0

.PHONY: all build run test test-mochi test-short stress lint pi dist package deploy footprint bench bench-uplink bench-broker torture fleet clean

all: build

## build: the edged binary for this machine, into bin/edged
build:
	$(GO) build -trimpath -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o $(BIN)/edged ./cmd/edged

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
	# a race build keeps ordinary socket calls (sensors/sockio/sys_race.go): test the raw ones too
	CGO_ENABLED=0 $(GO) test -count=1 ./sensors/sockio ./localbroker ./uplink
endif
	$(GO) test -tags edgedfailpoints -count=1 -timeout 5m -run TestCrashPoints ./uplink/wal
	cd localbroker/mochi && CGO_ENABLED=$(if $(RACE),1,0) $(GO) test $(RACE) -count=1 -run 'DirectWrites|QueuedWithout|Patch' .
	GOARCH=386 $(GO) test -short -count=1 -timeout 5m $(PKGS)

## test-mochi: the upstream test suite of the patched mochi in localbroker/mochi (its own
## module; `make test` runs only the patches' tests: upstream's have sleeps that fail under load)
test-mochi:
	cd localbroker/mochi && $(GO) test -count=1 ./...

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
	$(GO) vet -tags edgedfailpoints ./sensors/liveness ./cmd/edged ./uplink/wal
	$(GO) run $(STATICCHECK) $(PKGS)
	$(GO) test -count=1 -run TestDependencyDirection ./cmd/edged

## pi: static stripped binaries for the Raspberry Pi family, into bin/
pi:
	GOOS=linux GOARCH=arm GOARM=6 $(GO) build -trimpath -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o $(BIN)/edged-linux-armv6 ./cmd/edged
	GOOS=linux GOARCH=arm GOARM=7 $(GO) build -trimpath -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o $(BIN)/edged-linux-armv7 ./cmd/edged
	GOOS=linux GOARCH=arm64       $(GO) build -trimpath -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o $(BIN)/edged-linux-arm64 ./cmd/edged
	@ls -l $(BIN)/edged-linux-*

## dist: Debian packages and tarballs for armhf, arm64 and amd64, and SHA256SUMS, into dist/
dist:
	rm -rf $(DIST)
	@for a in $(DIST_ARCHES); do $(MAKE) --no-print-directory package ARCH=$$a || exit 1; done
	cd $(DIST) && sha256sum *.deb *.tar.gz > SHA256SUMS
	@cat $(DIST)/SHA256SUMS

## package: one architecture's .deb and .tar.gz into dist/ (ARCH=armhf|arm64|amd64)
package:
	@test -n "$(filter $(ARCH),$(DIST_ARCHES))" || { echo "package: ARCH=$(ARCH): want one of $(DIST_ARCHES)"; exit 2; }
	rm -rf $(DIST)/edged-$(VERSION)-linux-$(ARCH)
	mkdir -p $(DIST)/edged-$(VERSION)-linux-$(ARCH)
	GOOS=linux $(GOENV_$(ARCH)) $(GO) build -trimpath -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o $(DIST)/edged-$(VERSION)-linux-$(ARCH)/edged ./cmd/edged
	cp README.md systemd/edged.service configs/examples/*.yaml $(DIST)/edged-$(VERSION)-linux-$(ARCH)/
	cp systemd/README.md $(DIST)/edged-$(VERSION)-linux-$(ARCH)/README.systemd.md
	EDGED_BIN=$(DIST)/edged-$(VERSION)-linux-$(ARCH)/edged DEB_ARCH=$(ARCH) DEB_VERSION='$(DEB_VERSION)' \
		$(GO) run $(NFPM) package --config systemd/package/nfpm.yaml --packager deb --target $(DIST)/edged_$(DEB_VERSION)_$(ARCH).deb
	cd $(DIST) && find edged-$(VERSION)-linux-$(ARCH) -exec touch -h -d @$(SOURCE_DATE_EPOCH) {} + && \
		tar --sort=name --mtime=@$(SOURCE_DATE_EPOCH) --owner=0 --group=0 --numeric-owner -cf - edged-$(VERSION)-linux-$(ARCH) \
		| gzip -n -9 > edged-$(VERSION)-linux-$(ARCH).tar.gz
	rm -rf $(DIST)/edged-$(VERSION)-linux-$(ARCH)

## deploy: build for ARCH, copy to HOST (user@pi), validate there, swap, restart, roll back if not ready
deploy:
	@test -n "$(HOST)" || { echo "deploy: set HOST=user@host"; exit 2; }
	@test -n "$(GOENV_$(ARCH))" || { echo "deploy: ARCH=$(ARCH): want armv7, $(DIST_ARCHES)"; exit 2; }
	GOOS=linux $(GOENV_$(ARCH)) $(GO) build -trimpath -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o $(BIN)/edged-linux-$(ARCH) ./cmd/edged
	DEPLOY_TIMEOUT=$(DEPLOY_TIMEOUT) sh systemd/deploy.sh $(HOST) $(BIN)/edged-linux-$(ARCH)

## footprint: idle RSS and CPU of `edged run` on the sim example and 10 sensors at 1 Hz over 60 s, and the
## ARMv7 binary size, against the budgets (RSS <= 20 MB, CPU < 0.5 % of a core, binary <= 12 MB): exit 1 when over
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
	$(GO) build -tags 'edgedfailpoints $(TAGS)' -trimpath -o $(BIN)/edged-failpoints ./cmd/edged
	$(GO) run ./cmd/torture -edged $(BIN)/edged -edged-failpoints $(BIN)/edged-failpoints -rounds $(ROUNDS) $(TORTURE_FLAGS)

## fleet: N edged gateways on simulated sensors uplinking into one Mosquitto; checks every
## gateway's stream is gapless per (gw, epoch, seq), prints broker ingress msg/s and RSS and CPU
## per gateway. About 30 s.
N           ?= 50
fleet: build
	$(GO) run ./cmd/fleet -edged $(BIN)/edged -n $(N) $(FLEET_FLAGS)

clean:
	rm -rf $(BIN) $(DIST) state
