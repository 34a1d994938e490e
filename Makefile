# podroute: `make lab` and `make test` each do their own set-up on a fresh Debian 12 machine (as root),
# and are quick when everything is already in place.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Debian packages the agent, the lab, the tests and `make images` run with (podman with runc: Debian's crun 1.8
# cannot run containers here, see deploy/images/containers.conf).
# test/unit/deploy/setup-packages.test.ts checks that every program the sources run comes from here (or Debian's base).
APT_PACKAGES := gobgpd golang-github-osrg-gobgp-dev frr bird2 iptables nftables ipset iproute2 \
                containernetworking-plugins iputils-ping iperf3 procps psmisc socat curl openssl git \
                mmdebstrap buildah podman runc
GOBGP_API_DIR := /usr/share/gocode/src/github.com/osrg/gobgp/api
LAB_TOPOLOGY ?= topologies/two-racks.yaml
LAB_NAME ?= demo
STAMPS := .stamps
PODROUTE := node dist/src/cli/main.js

.PHONY: help setup apt npm protos build images lint typecheck unit labtest test lab lab-down bench clean

help:
	@echo "make lab      bring up $(LAB_TOPOLOGY) as lab '$(LAB_NAME)' and show pods talking across racks"
	@echo "make lab-down tear the lab down"
	@echo "make test     lint, typecheck, unit and lab end-to-end tests"
	@echo "make bench    benchmarks, results in docs/benchmarks.md"
	@echo "make images   podroute/agent and podroute/gobgpd from Debian packages, into podman (deploy/README.md)"

setup: apt npm protos build

# Installs only the packages that are missing, so a prepared machine does not touch apt at all.
apt:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	command -v kubectl >/dev/null || missing="$$missing kubernetes-client"; \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(STAMPS)/npm: package.json package-lock.json
	npm ci --no-audit --no-fund
	@mkdir -p $(STAMPS) && touch $@
npm: $(STAMPS)/npm

# GoBGP's API protos of the installed gobgpd, straight from its Debian package.
protos: apt
	@for f in gobgp.proto attribute.proto capability.proto; do \
	  cmp -s $(GOBGP_API_DIR)/$$f proto/$$f || cp $(GOBGP_API_DIR)/$$f proto/$$f; \
	done

# From scratch: tsc never removes the output of a deleted source, and a deleted test would go on running.
build: npm protos
	@rm -rf dist && npx tsc -p tsconfig.json

# The images from Debian packages alone (mmdebstrap, podman, buildah; no registry): see deploy/README.md.
images: build
	deploy/images/build.sh

lint: npm
	npx eslint .

typecheck: npm
	npx tsc -p tsconfig.json --noEmit

unit: build
	npx mocha 'dist/test/unit/**/*.test.js'

# The lab tests. The benchmark smoke (bench/run.ts --quick: every benchmark at a tiny size, in labs of its own) runs
# beside the others rather than after them: it checks that the benchmarks run and report, not how fast, and alone it
# is five to six of make test's twenty minutes (scale's four-node lab is one of them). It overlaps the first lab
# files (agent/, bgp/, deploy/); the fault and failover tests (resilience/) come long after it has ended. Its output
# is printed once both are done.
SMOKE_TEST := dist/test/lab/bench/smoke.test.js
LAB_TESTS := 'dist/test/lab/**/*.test.js'
define run_lab_tests
	@smoke_log=$$(mktemp); \
	node_modules/.bin/mocha --timeout 900000 $(SMOKE_TEST) > "$$smoke_log" 2>&1 & smoke=$$!; \
	trap 'kill $$smoke 2>/dev/null; rm -f "$$smoke_log"' EXIT; \
	npx mocha --timeout 300000 --ignore $(SMOKE_TEST) $(LAB_TESTS); others=$$?; \
	wait $$smoke; smoke_status=$$?; \
	echo; echo "== $(SMOKE_TEST), run beside the lab tests above"; cat "$$smoke_log"; \
	[ $$others -eq 0 ] && [ $$smoke_status -eq 0 ]
endef

labtest: build
	$(run_lab_tests)

# The build is the typecheck: tsc exits non-zero on any type error (the typecheck target is the same without output).
# Lint runs beside the build and the unit tests (one core each); then the lab tests.
test: apt npm protos
	@$(MAKE) --no-print-directory --output-sync=target -j2 lint unit
	$(run_lab_tests)

# A lab that is already up is shown again rather than rebuilt.
lab: setup
	@$(PODROUTE) lab status $(LAB_NAME) >/dev/null 2>&1 || $(PODROUTE) lab up $(LAB_TOPOLOGY) --name $(LAB_NAME)
	$(PODROUTE) lab show $(LAB_NAME)

lab-down: build
	$(PODROUTE) lab down $(LAB_NAME)

bench: setup
	node dist/bench/run.js

clean:
	rm -rf dist $(STAMPS)
