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

# The lab tests, most of them in two lanes at once: run file after file they are well over 20 minutes on two cores,
# most of it waiting on BGP timers, pollers and lab ups. Lane 1 is the benchmark smoke (bench/run.ts --quick: that
# every benchmark runs and reports, not how fast; scale's four-node lab is in it) and then the policy and Service
# files, printed once both lanes are done; lane 2 is every other file, shown as it runs. The fault and failover
# tests that time what they measure against a target (BFD silent cuts, carrier loss, kill -9 with probes flowing)
# run after both lanes, alone on the machine.
SMOKE_TEST := dist/test/lab/bench/smoke.test.js
LAB_LANE_1 := 'dist/test/lab/policy/**/*.test.js' 'dist/test/lab/services/**/*.test.js'
LAB_ALONE := dist/test/lab/resilience/faults.test.js dist/test/lab/resilience/dual-homed.test.js
LAB_LANE_2 := $(foreach f,$(SMOKE_TEST) 'dist/test/lab/policy/**' 'dist/test/lab/services/**' $(LAB_ALONE),--ignore $(f)) \
              'dist/test/lab/**/*.test.js'
define run_lab_tests
	@lane1_log=$$(mktemp); \
	( node_modules/.bin/mocha --timeout 900000 $(SMOKE_TEST); smoke=$$?; \
	  node_modules/.bin/mocha --timeout 300000 $(LAB_LANE_1) && [ $$smoke -eq 0 ] ) > "$$lane1_log" 2>&1 & lane1=$$!; \
	trap 'kill $$lane1 2>/dev/null; rm -f "$$lane1_log"' EXIT; \
	npx mocha --timeout 300000 $(LAB_LANE_2); lane2_status=$$?; \
	wait $$lane1; lane1_status=$$?; \
	echo; echo "== lane 1 of the lab tests (the benchmark smoke, then policy/ and services/), run beside those above"; \
	cat "$$lane1_log"; \
	echo; echo "== the fault and failover tests, alone"; \
	npx mocha --timeout 300000 $(LAB_ALONE); alone_status=$$?; \
	[ $$lane1_status -eq 0 ] && [ $$lane2_status -eq 0 ] && [ $$alone_status -eq 0 ]
endef

# `make labtest LAB_TESTS=<glob>` runs just those files, one after another.
labtest: build
ifdef LAB_TESTS
	npx mocha --timeout 300000 $(LAB_TESTS)
else
	$(run_lab_tests)
endif

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
