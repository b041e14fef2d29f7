# Passerelle: firmware for school network gateways.
#   make         the firmware, passerellectl, and tailscaled for the host and linux/arm64
#   make demo    a virtual school network in namespaces with the firmware in it (root)
#   make test    every test: unit tests, and lab integration tests when root
#   make bench   the benchmarks; figures go to docs/benchmarks.md
#   make bench-smoke  each of them once, small (the end of make test)
#   make image   the firmware image of BOARD (default qemu-arm64; docs/image.md)
#   make vm      boots that image in QEMU

GO       ?= go
BIN      := bin
# The firmware version (semantic: updates must be newer, docs/updates.md)
# comes from the VERSION file; the commit is recorded beside it.
VERSION  ?= $(shell cat VERSION 2>/dev/null || echo dev)
COMMIT   ?= $(shell git describe --always --dirty 2>/dev/null || echo unknown)
LDFLAGS  := -s -w -X passerelle/pkg/version.Version=$(VERSION) -X passerelle/pkg/version.Commit=$(COMMIT)
# Integration tests build namespaces and run the daemon: give them time,
# but not the 90 minutes CI allows.
TESTFLAGS ?= -count=1 -timeout 45m

.PHONY: all build cross demo test fuzz test-short bench bench-smoke schema docs fmt vet lab-down clean tailscaled image vm update-bundle

all: build tailscaled

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/passerelle ./cmd/passerellectl

# The demo filters with the UT1 snapshot beside the repository when it is
# there (a real box keeps its lists on /perm), plus the SYNTHETIC adult list
# of configs/demo-lists (the snapshot lacks adult's domains: see its
# README), merged into bin/demo-lists, the directory bin/demo.yaml points
# at. The firmware logs to bin/demo.log.
DEMO_LISTS  ?= $(abspath $(CURDIR)/../shared/data/ut1)
DEMO_CONFIG := $(BIN)/demo.yaml
DEMO_LOG    := $(BIN)/demo.log

demo: build
	@if [ "$$(id -u)" != 0 ]; then echo "make demo needs root (network namespaces); try: sudo make demo"; exit 1; fi
	@rm -rf $(BIN)/demo-lists && mkdir -p $(BIN)/demo-lists
	@if [ -d "$(DEMO_LISTS)" ]; then cp -R "$(DEMO_LISTS)"/. $(BIN)/demo-lists/ && chmod -R u+w $(BIN)/demo-lists; \
	else echo "note: no UT1 snapshot at $(DEMO_LISTS): the demo filters with the synthetic adult list only"; fi
	@cp -R configs/demo-lists/. $(BIN)/demo-lists/
	@sed 's|^dns:$$|dns:\n  lists:\n    directory: $(CURDIR)/$(BIN)/demo-lists|' configs/demo.yaml > $(DEMO_CONFIG)
	@echo "The firmware logs to $(DEMO_LOG); follow it in another terminal with: tail -f $(DEMO_LOG)"
	$(BIN)/passerellectl lab up --config $(DEMO_CONFIG) --run '$(CURDIR)/$(BIN)/passerelle run --config $(CURDIR)/$(DEMO_CONFIG) --dhcp-lease-dir $(CURDIR)/$(BIN)/demo-leases >$(CURDIR)/$(DEMO_LOG) 2>&1'

# tailscaled for the academy tunnel: the version pinned in go.mod, trimmed to
# a subnet router, for the host (lab tests) and the arm64 boards. Cached in
# bin/tailscaled/ by version and tags: only the first build takes minutes.
tailscaled:
	@sh tools/tailscaled/build.sh linux/$$($(GO) env GOARCH) linux/arm64

# The firmware image (docs/image.md): inputs fetched into CACHE (pinned
# Debian packages), outputs in IMAGE_DIR, never in the repository.
BOARD        ?= qemu-arm64
CACHE        ?= /var/cache/passerelle
IMAGE_DIR    ?= $(CACHE)/image/$(BOARD)
IMAGE_CONFIG ?= rootfs/$(BOARD).yaml

image:
	@deb=$$(sh tools/mkimage/fetch.sh $(CACHE)) && \
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(CACHE)/bin/passerelle-arm64 ./cmd/passerelle && \
	$(GO) run ./tools/mkimage -board $(BOARD) -kernel-deb $$deb -debs $(CACHE)/debs \
		-grub-deb "$$(ls $(CACHE)/boot/grub-efi-arm64-bin_*_arm64.deb | tail -n 1)" \
		-passerelle $(CACHE)/bin/passerelle-arm64 -config $(IMAGE_CONFIG) -out $(IMAGE_DIR) && \
	cat $(IMAGE_DIR)/SHA256SUMS

vm: image
	sh tools/vm/run.sh $(IMAGE_DIR)

# A signed firmware update of that image's slot (docs/updates.md), for
# passerellectl update push: KEY is a NOC key file (passerellectl keygen).
update-bundle: image build
	@test -n "$(KEY)" || { echo "make update-bundle needs KEY=<NOC key file>"; exit 1; }
	$(BIN)/passerellectl update sign --key $(KEY) --board $(BOARD) --version $(VERSION) \
		--out $(IMAGE_DIR)/update-$(VERSION).bundle $(IMAGE_DIR)/slot.img

# passerellectl runs on NOC operators' laptops too: keep it building there.
cross:
	GOOS=darwin GOARCH=arm64 $(GO) build -o /dev/null ./cmd/passerellectl
	GOOS=windows GOARCH=amd64 $(GO) build -o /dev/null ./cmd/passerellectl

test: vet cross
	$(GO) test $(TESTFLAGS) ./...
	@$(MAKE) --no-print-directory fuzz
	@$(MAKE) --no-print-directory bench-smoke

# Fuzz targets run briefly so a regression in input handling fails CI. Each
# prints how many inputs it executed (its log is bin/fuzz-NAME.log) and
# fails below FUZZ_MIN_EXECS. Executions spent minimising a new interesting
# input are not counted, and at Go's default (-fuzzminimizetime 60s) the
# first minimisation of a config-sized input took all of FuzzParse's 10s:
# it executed 9 inputs. 100 calls per minimisation keep the inputs small
# enough and leave the time to fuzzing (a crasher is still written out).
FUZZTIME       ?= 10s
FUZZ_MIN_EXECS ?= 1000
FUZZ_MINIMIZE  ?= 100x
FUZZ_TARGETS   := pkg/config:FuzzParse pkg/dhcpd:FuzzHandle pkg/dnsfilter:FuzzQuery pkg/dhcpclient:FuzzLeaseFromACK

fuzz:
	@mkdir -p $(BIN)
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; log=$(BIN)/fuzz-$$fn.log; \
		if ! $(GO) test -run '^$$' -fuzz "^$${fn}$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZ_MINIMIZE) ./$$pkg >$$log 2>&1; then \
			cat $$log; echo "fuzz $$fn (./$$pkg): FAILED"; exit 1; fi; \
		n=$$(grep -o 'execs: [0-9]*' $$log | tail -n 1 | cut -d' ' -f2); \
		echo "fuzz $$fn (./$$pkg): $${n:-0} executions in $(FUZZTIME)"; \
		if [ "$${n:-0}" -lt $(FUZZ_MIN_EXECS) ]; then \
			echo "fuzz $$fn: fewer than $(FUZZ_MIN_EXECS) executions, see $$log"; exit 1; fi; \
	done

test-short:
	$(GO) test -short -count=1 ./...

bench: build
	bash tools/bench/render/run.sh
	bash tools/bench/firewall/run.sh
	bash tools/bench/failover/run.sh
	bash tools/bench/tunnel/run.sh
	bash tools/bench/dns/run.sh && $(GO) test -run '^$$' -bench 'Load5M|Build5M' -benchtime 3x ./pkg/ut1 ./pkg/domainset
	$(GO) test -run '^$$' -bench . ./pkg/dhcpd ./pkg/timesync
	$(GO) test -run '^$$' -bench BlockPageDuringFlood -benchtime 2000x ./pkg/status
	$(GO) run ./tools/bench/manage push -n 10000 -ctl $(BIN)/passerellectl
	$(GO) run ./tools/bench/manage pull -n 10000 -cycle 300s -rounds 2

# Every benchmark of make bench once, at a small size, so that CI fails
# when one stops running instead of it rotting until its next full run.
# Figures are printed prefixed "bench-smoke:" with each one's wall time;
# it fails on an error or missing figures, never on a figure's value
# (docs/benchmarks.md). Lab parts take the integration lock: run it with
# BENCH_SMOKE_LOCK= when you already hold that lock.
bench-smoke:
	@GO=$(GO) bash tools/bench/smoke.sh

schema:
	$(GO) run ./cmd/passerellectl schema > configs/schema/config.schema.json
	$(GO) run ./cmd/passerellectl docs > docs/configuration.md

# The configuration reference comes from the same struct tags as the schema.
docs:
	$(GO) run ./cmd/passerellectl docs > docs/configuration.md

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { gofmt -l .; echo "gofmt needed"; exit 1; }

lab-down:
	$(BIN)/passerellectl lab down

clean:
	rm -rf $(BIN)
