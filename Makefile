# filestore. A newcomer needs only `make run` (embedded profile) and `make test`;
# `npm ci` runs by itself whenever package-lock.json is newer than node_modules.
#
#   make run            API server, embedded profile (no external services)
#   make test           vitest (tests needing real services skip unless REQUIRE_SERVICES=1)
#   make services       Redis + MariaDB primary/replica + Ceph S3; exports in .services.env
#   make run-cluster    API server + workers, cluster profile, against .services.env
#   make services-stop  stop MariaDB and Ceph again

.DEFAULT_GOAL := build
# extra vitest arguments, e.g. make test VITEST_ARGS='test/foo.test.ts' (.ci/run adds a JSON report)
VITEST_ARGS ?=

.PHONY: build run run-cluster test services services-stop bench clean

# npm ci starts by deleting node_modules, so a failed one leaves nothing worth keeping; remove
# the rest, or its fresh mtime would make the next make believe the install succeeded
node_modules: package-lock.json
	npm ci || { rm -rf node_modules; exit 1; }
	@touch node_modules

build: node_modules
	npx tsc -p tsconfig.json

run: build
	npm start --silent

# a script rather than two `&` lines here: make would not stop the background one on ctrl-C
run-cluster: build
	./scripts/run-cluster.sh

# vitest does not type-check; tsc over sources and tests first, so a type error fails the run
test: node_modules
	npx tsc -p tsconfig.test.json
	npx vitest run $(VITEST_ARGS)

services:
	./scripts/services/up.sh

services-stop:
	./scripts/services/down.sh

bench: build
	node bench/run.mjs $(BENCH_MODE)

clean:
	rm -rf dist
