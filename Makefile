# Switchyard: every target installs what it needs.
SHELL := /bin/bash
NODE_STAMP := node_modules/.package-lock.json
# The pinned Node LTS (scripts/ensure-node.sh) runs everything: npm, npx, tsx, vitest, the demo.
export PATH := $(CURDIR)/.toolchain/bin:$(PATH)
NODE_BIN := .toolchain/bin/node

.PHONY: deps node envoy redis build lint test test-unit demo bench bench-tools clean crds docs

node:
	@scripts/ensure-node.sh >/dev/null

$(NODE_BIN):
	@scripts/ensure-node.sh >/dev/null

# A node_modules that is a symlink (a git worktree sharing another checkout's packages) is never
# reinstalled from here: npm ci would empty the shared copy under every other checkout.
$(NODE_STAMP): package.json package-lock.json | $(NODE_BIN)
	@if [ -L node_modules ]; then echo "node_modules is a symlink: not reinstalling it here" >&2; \
	else npm ci --no-audit --no-fund --foreground-scripts=false && touch $(NODE_STAMP); fi

deps: node $(NODE_STAMP) envoy

envoy:
	@scripts/ensure-envoy.sh >/dev/null

## Debian's redis-server, for the member-limit tests (installed with apt-get when missing).
redis:
	@scripts/ensure-redis.sh >/dev/null

build: $(NODE_STAMP)
	npm run build

lint: $(NODE_STAMP)
	npm run lint

## The whole suite: typecheck, unit, golden, protocol, real-Envoy end-to-end and real-API-server tests.
## The Kubernetes tests use $$KUBECONFIG when set, else start the local control plane (make k8s-up).
test: deps redis image bench-tools
	npm run lint
	@[ -n "$$KUBECONFIG" ] || scripts/k8s-up.sh
	@# The connection-storm test holds both ends of 800 connections in one process.
	ulimit -n $$(ulimit -Hn) 2>/dev/null; npx vitest run
	@# The xDS transport kept one release behind SWITCHYARD_XDS_TRANSPORT=grpc-js (README): its
	@# hostile-client, TLS, Envoy, LRS and fan-out suites run on it too, so the way back stays sound.
	ulimit -n $$(ulimit -Hn) 2>/dev/null; SWITCHYARD_XDS_TRANSPORT=grpc-js npx vitest run $(GRPC_JS_SUITES)

GRPC_JS_SUITES = test/protocol/xds-adversary.test.ts test/protocol/xds-tls.test.ts test/protocol/envoy-ads.test.ts \
	test/protocol/grpc-xds-client.test.ts test/protocol/xds-lrs.test.ts test/protocol/xds-fanout.test.ts test/protocol/xds-slow-client.test.ts \
	test/protocol/xds-transport-env.test.ts

## Golden files: rewrite test/golden/*.out.yaml from the current translator, then review the diff.
golden: $(NODE_STAMP)
	UPDATE_GOLDEN=1 npx vitest run test/golden test/k8s/chart.test.ts

## The controller in file mode on examples/, a real Envoy, three fake providers, a scripted failover scenario.
# One process, not the tsx wrapper (which SIGKILLs its child when a relayed Ctrl-C is not acknowledged within 30 ms).
demo: deps build
	node --import tsx examples/demo/run.ts

bench: deps build
	npm run bench

## go-control-plane's server and the Go ADS load client of the xds-e2e bench (bench/gcp), built once with
## the machine's Go into $${SWITCHYARD_CACHE:-~/.cache/switchyard}/bench-gcp-<hash>; a protocol test uses the client.
bench-tools: $(NODE_STAMP)
	npx tsx -e "import('./bench/gcp.ts').then((m) => m.buildGoBench((l) => console.error(l)))"

clean:
	rm -rf dist .toolchain

## Regenerate crds/ (and the chart's copy) and docs/api.md from the zod schemas (test/unit/crd.test.ts
## and test/unit/api-docs.test.ts fail when they drift).
crds: $(NODE_STAMP)
	npx tsx scripts/gen-crds.ts
	npx tsx scripts/gen-api-docs.ts

## Regenerate docs/api.md, the Backend reference, from the same schema as the CRD.
docs: $(NODE_STAMP)
	npx tsx scripts/gen-api-docs.ts

## Kubernetes integration tests: real kube-apiserver, etcd, kubectl and helm built once from the Go
## module proxy (hack/k8s/, cached in ${SWITCHYARD_CACHE:-~/.cache/switchyard}/k8s), linked in .k8s/bin.
.PHONY: k8s-tools k8s-up k8s-down
k8s-tools:
	@scripts/k8s-tools.sh

## A local control plane on loopback with the Gateway API and crds/ CRDs; writes .k8s/kubeconfig.
k8s-up:
	@scripts/k8s-up.sh

## Stop it and remove its state (.k8s/data, .k8s/run); the built tools stay.
k8s-down:
	@scripts/k8s-down.sh

## The official Gateway API conformance suite (GATEWAY-HTTP profile) against Switchyard, on this
## machine without Docker or a kubelet (root only): builds what it needs once, starts a fresh
## control plane + kube-controller-manager + a node agent that runs pods as local processes, the
## controller, then the suite; writes conformance/reports/<version>/switchyard.yaml and stops
## everything. One test: make conformance CONFORMANCE_RUN_TEST=HTTPRouteSimpleSameNamespace
.PHONY: conformance conformance-down
# Order-only: install when node_modules is missing, but never `npm ci` over a node_modules that is
# a symlink to a shared install (work trees), which empties the shared copy.
conformance: | $(NODE_STAMP)
	@scripts/conformance.sh

## Stop what `CONFORMANCE_KEEP=1 make conformance` left running.
conformance-down:
	@scripts/conformance-down.sh

## The controller image without a container engine (scripts/build-image.sh): Debian bookworm runtime
## packages (deploy/image/debs.lock), the pinned Node and the app, assembled with crane into
## .build/image/switchyard-<version>.tar (tagged ghcr.io/switchyard-dev/switchyard:<version>);
## the same commit gives the same digest (.build/image/digest).
.PHONY: image image-test
image: | $(NODE_STAMP)
	@scripts/build-image.sh >/dev/null

## Builds the image, then runs it (root only: namespaces + chroot) with test/image/image.test.ts.
image-test: image
	npx vitest run test/image
