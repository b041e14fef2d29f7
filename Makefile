# Passerelle: firmware for school network gateways.
#   make demo    a virtual school network in namespaces with the firmware in it (root)
#   make test    every test: unit tests, and lab integration tests when root
#   make bench   the benchmarks; figures go to docs/benchmarks.md

GO       ?= go
BIN      := bin
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X passerelle/pkg/version.Version=$(VERSION)
# Integration tests build namespaces and run the daemon: give them time,
# but not the 90 minutes CI allows.
TESTFLAGS ?= -count=1 -timeout 20m

.PHONY: all build cross demo test test-short bench schema fmt vet lab-down clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/passerelle ./cmd/passerellectl

# The demo filters with the UT1 snapshot beside the repository when it is
# there (a real box keeps its lists on /perm); without it the pupils' zones
# answer every name as blocked, as a box does until its lists arrive.
DEMO_LISTS ?= $(abspath $(CURDIR)/../shared/data/ut1)
DEMO_CONFIG := $(BIN)/demo.yaml

demo: build
	@if [ "$$(id -u)" != 0 ]; then echo "make demo needs root (network namespaces); try: sudo make demo"; exit 1; fi
	@if [ -d "$(DEMO_LISTS)" ]; then \
		sed 's|^dns:$$|dns:\n  lists:\n    directory: $(DEMO_LISTS)|' configs/demo.yaml > $(DEMO_CONFIG); \
	else cp configs/demo.yaml $(DEMO_CONFIG); echo "note: no UT1 lists at $(DEMO_LISTS): pupils' zones will answer blocked"; fi
	$(BIN)/passerellectl lab up --config $(DEMO_CONFIG) --run '$(CURDIR)/$(BIN)/passerelle run --config $(CURDIR)/$(DEMO_CONFIG) --dhcp-lease-dir $(CURDIR)/$(BIN)/demo-leases'

# passerellectl runs on NOC operators' laptops too: keep it building there.
cross:
	GOOS=darwin GOARCH=arm64 $(GO) build -o /dev/null ./cmd/passerellectl
	GOOS=windows GOARCH=amd64 $(GO) build -o /dev/null ./cmd/passerellectl

test: vet cross
	$(GO) test $(TESTFLAGS) ./...
	@# Fuzz targets run briefly so a regression in input handling fails CI.
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime 10s ./pkg/config
	$(GO) test -run '^$$' -fuzz '^FuzzHandle$$' -fuzztime 10s ./pkg/dhcpd
	$(GO) test -run '^$$' -fuzz '^FuzzQuery$$' -fuzztime 10s ./pkg/dnsfilter
	$(GO) test -run '^$$' -fuzz '^FuzzLeaseFromACK$$' -fuzztime 10s ./pkg/dhcpclient

test-short:
	$(GO) test -short -count=1 ./...

bench: build
	bash tools/bench/render/run.sh
	bash tools/bench/firewall/run.sh
	bash tools/bench/failover/run.sh
	bash tools/bench/dns/run.sh && $(GO) test -run '^$$' -bench 'Load5M|Build5M' -benchtime 3x ./pkg/ut1 ./pkg/domainset
	$(GO) test -run '^$$' -bench . ./pkg/dhcpd ./pkg/timesync

schema:
	$(GO) run ./cmd/passerellectl schema > configs/schema/config.schema.json

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { gofmt -l .; echo "gofmt needed"; exit 1; }

lab-down:
	$(BIN)/passerellectl lab down

clean:
	rm -rf $(BIN)
