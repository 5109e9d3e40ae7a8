# Switchyard: every target installs what it needs.
SHELL := /bin/bash
NODE_STAMP := node_modules/.package-lock.json

.PHONY: deps envoy build lint test test-unit demo bench clean

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --foreground-scripts=false
	@touch $(NODE_STAMP)

deps: $(NODE_STAMP) envoy

envoy:
	@scripts/ensure-envoy.sh >/dev/null

build: $(NODE_STAMP)
	npm run build

lint: $(NODE_STAMP)
	npm run lint

## The whole suite: typecheck, unit, golden, protocol and real-Envoy end-to-end tests.
test: deps
	npm run lint
	npx vitest run

## Golden files: rewrite test/golden/*.out.yaml from the current translator, then review the diff.
golden: $(NODE_STAMP)
	UPDATE_GOLDEN=1 npx vitest run test/golden

## The controller in file mode on examples/, a real Envoy, three fake providers, a scripted failover scenario.
demo: deps build
	npx tsx examples/demo/run.ts

bench: deps build
	npm run bench

clean:
	rm -rf dist .toolchain

## Regenerate crds/ from the zod schemas (test/unit/crd.test.ts fails when they drift).
crds: $(NODE_STAMP)
	npx tsx scripts/gen-crds.ts
