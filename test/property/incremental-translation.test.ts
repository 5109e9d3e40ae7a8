/**
 * Incremental translation equals translation from scratch. Random edit sequences (add, change
 * and delete Backends, Secrets, HTTPRoutes, Services and Gateways, and move them between files)
 * go through the file provider's path (YAML files → parseManifestFile, re-parsed only when a
 * file's text changed → ManifestStore) and then twice through the pipeline: incrementally (each
 * translation and Envoy stage given the previous one's state, a cache kept across steps) and from
 * scratch. Every encoded resource and every status must be equal, byte for byte.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { toDataPlanes, toXdsResources, toXdsResourcesReusing, type EnvoyState } from '../../src/envoy/index.js';
import { encodeResource } from '../../src/envoy/proto.js';
import { KIND_FIELD, PUSH_ORDER, resourceName, TypeUrl, type XdsResources } from '../../src/envoy/resources.js';
import { ManifestStore, parseManifestFile, type ManifestDocument, type ManifestFile } from '../../src/providers/manifest-files.js';
import { translate, type TranslationState } from '../../src/translate/index.js';
import { SnapshotCache } from '../../src/xds/cache.js';

const NS = 'ai';
const FILES = ['a.yaml', 'b.yaml', 'c.yaml'];
/** Never edited: an edit of another file leaves the GatewayClass the same object, as a file provider does. */
const CLASS_FILE = 'class.yaml';
const BACKENDS = ['b0', 'b1', 'b2', 'b3'];
const SECRETS = ['s0', 's1', 's2'];
const ROUTES = ['r0', 'r1', 'r2'];
const GATEWAYS = ['g0', 'g1'];

type Doc = Record<string, unknown> & { kind: string; metadata: { name: string; namespace?: string } };

const secretArb = (name: string): fc.Arbitrary<Doc> =>
  fc.record({ value: fc.constantFrom('sk-one', 'Bearer sk-two', 'sk-three'), keyed: fc.boolean() }).map(({ value, keyed }) => ({
    apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: NS },
    stringData: keyed ? { Authorization: value } : { other: value },
  }));

const memberArb = (i: number): fc.Arbitrary<unknown> =>
  // ip 0: no hostOverride, so a hostname (a STRICT_DNS cluster instead of EDS when every member has one).
  fc.record({ secret: fc.constantFrom(...SECRETS, 'missing'), model: fc.constantFrom('m1', 'm2'), ip: fc.integer({ min: 0, max: 3 }) }).map(({ secret, model, ip }) => ({
    name: `m${i}`,
    provider: { openaiCompatible: { host: `m${i}.llm.internal`, port: 443, model, authToken: { kind: 'SecretRef', secretRef: { name: secret } } } },
    ...(ip > 0 ? { hostOverride: { host: `10.0.0.${ip}`, port: 8443 } } : {}),
  }));

const backendArb = (name: string): fc.Arbitrary<Doc> =>
  fc.record({
    priorities: fc.array(fc.array(fc.nat(5), { minLength: 1, maxLength: 2 }), { minLength: 1, maxLength: 3 }),
    members: fc.tuple(memberArb(0), memberArb(1), memberArb(2), memberArb(3), memberArb(4), memberArb(5)),
    outlier: fc.option(fc.integer({ min: 1, max: 9 }), { nil: undefined }),
    // What its routes read of it: a change here re-translates the routes that name it.
    attempts: fc.option(fc.integer({ min: 1, max: 3 }), { nil: undefined }),
  }).map(({ priorities, members, outlier, attempts }) => {
    let next = 0;
    // Member names are unique per Backend: each pool slot takes the next member.
    const pools = priorities.map((pool) => ({ pool: pool.map(() => members[next++ % members.length]) }));
    return {
      apiVersion: 'switchyard.dev/v1alpha1', kind: 'Backend', metadata: { name, namespace: NS },
      spec: { type: 'AI', ai: { multipool: { priorities: pools } }, ...(outlier !== undefined ? { outlierDetection: { consecutive5xx: outlier } } : {}), ...(attempts !== undefined ? { retry: { attempts } } : {}) },
    };
  });

const routeArb = (name: string): fc.Arbitrary<Doc> =>
  fc.record({
    gateway: fc.constantFrom(...GATEWAYS),
    target: fc.constantFrom(...BACKENDS, 'svc'),
    path: fc.constantFrom('/v1', '/chat', '/'),
    attempts: fc.option(fc.integer({ min: 1, max: 4 }), { nil: undefined }),
  }).map(({ gateway, target, path, attempts }) => ({
    apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name, namespace: NS },
    spec: {
      parentRefs: [{ name: gateway }],
      rules: [{
        matches: [{ path: { type: 'PathPrefix', value: path } }],
        backendRefs: [target === 'svc' ? { name: 'svc', port: 80 } : { group: 'switchyard.dev', kind: 'Backend', name: target }],
        ...(attempts !== undefined ? { retry: { attempts } } : {}),
      }],
    },
  }));

const gatewayArb = (name: string): fc.Arbitrary<Doc> =>
  fc.record({ port: fc.constantFrom(10080, 10081), second: fc.boolean() }).map(({ port, second }) => ({
    apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name, namespace: NS },
    spec: {
      gatewayClassName: 'switchyard',
      listeners: [{ name: 'http', protocol: 'HTTP', port }, ...(second ? [{ name: 'other', protocol: 'HTTP', port: port + 10, hostname: 'chat.example.com' }] : [])],
    },
  }));

const serviceArb: fc.Arbitrary<Doc[]> = fc.record({ target: fc.constantFrom(8080, 8081), ip: fc.integer({ min: 1, max: 3 }) }).map(({ target, ip }) => [
  { apiVersion: 'v1', kind: 'Service', metadata: { name: 'svc', namespace: NS }, spec: { ports: [{ name: 'http', port: 80, targetPort: target }] } },
  {
    apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'svc-a', namespace: NS, labels: { 'kubernetes.io/service-name': 'svc' } },
    addressType: 'IPv4', ports: [{ name: 'http', port: target, protocol: 'TCP' }], endpoints: [{ addresses: [`10.9.0.${ip}`], conditions: { ready: true } }],
  },
]);

/** One edit: put objects into a file (replacing any of the same kind and name there), or delete one from wherever it is. */
type Edit = { op: 'put'; file: string; docs: Doc[] } | { op: 'delete'; kind: string; name: string } | { op: 'break'; file: string };

const editArb: fc.Arbitrary<Edit> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ file: fc.constantFrom(...FILES), doc: fc.constantFrom(...BACKENDS).chain(backendArb) }).map(({ file, doc }): Edit => ({ op: 'put', file, docs: [doc] })) },
  { weight: 3, arbitrary: fc.record({ file: fc.constantFrom(...FILES), doc: fc.constantFrom(...SECRETS).chain(secretArb) }).map(({ file, doc }): Edit => ({ op: 'put', file, docs: [doc] })) },
  { weight: 3, arbitrary: fc.record({ file: fc.constantFrom(...FILES), doc: fc.constantFrom(...ROUTES).chain(routeArb) }).map(({ file, doc }): Edit => ({ op: 'put', file, docs: [doc] })) },
  { weight: 1, arbitrary: fc.record({ file: fc.constantFrom(...FILES), doc: fc.constantFrom(...GATEWAYS).chain(gatewayArb) }).map(({ file, doc }): Edit => ({ op: 'put', file, docs: [doc] })) },
  { weight: 1, arbitrary: fc.record({ file: fc.constantFrom(...FILES), docs: serviceArb }).map(({ file, docs }): Edit => ({ op: 'put', file, docs })) },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      ...BACKENDS.map((name) => ({ kind: 'Backend', name })),
      ...SECRETS.map((name) => ({ kind: 'Secret', name })),
      ...ROUTES.map((name) => ({ kind: 'HTTPRoute', name })),
      ...GATEWAYS.map((name) => ({ kind: 'Gateway', name })),
      { kind: 'Service', name: 'svc' },
    ).map((id): Edit => ({ op: 'delete', ...id })),
  },
  // A half-saved file: its objects keep being served from their last valid version.
  { weight: 1, arbitrary: fc.constantFrom(...FILES).map((file): Edit => ({ op: 'break', file })) },
);

const GATEWAY_CLASS: Doc = { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name: 'switchyard' }, spec: { controllerName: 'switchyard.dev/gateway-controller' } };

function applyEdit(files: Map<string, Doc[] | string>, edit: Edit): void {
  const docsOf = (file: string): Doc[] => {
    const held = files.get(file);
    return Array.isArray(held) ? held : [];
  };
  if (edit.op === 'break') {
    files.set(edit.file, 'kind: [unterminated\n');
    return;
  }
  const same = (a: Doc, b: { kind: string; metadata: { name: string } }): boolean => a.kind === b.kind && a.metadata.name === b.metadata.name;
  if (edit.op === 'delete') {
    for (const file of FILES) files.set(file, docsOf(file).filter((d) => !same(d, { kind: edit.kind, metadata: { name: edit.name } })));
    return;
  }
  // An object lives in one file: putting it elsewhere moves it.
  for (const file of FILES) if (file !== edit.file) files.set(file, docsOf(file).filter((d) => !edit.docs.some((n) => same(d, n))));
  files.set(edit.file, [...docsOf(edit.file).filter((d) => !edit.docs.some((n) => same(d, n))), ...edit.docs]);
}

function text(held: Doc[] | string): string {
  return typeof held === 'string' ? held : held.map((d) => stringify(d)).join('---\n');
}

/** Every resource encoded, by type and name: what the wire carries. */
function encoded(xds: XdsResources): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kind of PUSH_ORDER) {
    for (const r of xds[KIND_FIELD[kind]]) out[`${kind}/${resourceName(r)}`] = Buffer.from(encodeResource(r)).toString('base64');
  }
  return out;
}

/** Runs `edits` through the provider's path and the pipeline, incrementally and from scratch, and compares every step. */
function checkSequence(edits: readonly Edit[], files = new Map<string, Doc[] | string>([[CLASS_FILE, [GATEWAY_CLASS]], ['a.yaml', []], ['b.yaml', []], ['c.yaml', []]])): void {
  const parsed = new Map<string, { text: string; documents: ManifestDocument[] }>();
  const store = new ManifestStore();
  const cache = new SnapshotCache();
  let translationState: TranslationState | undefined;
  let envoyState: EnvoyState | undefined;
  for (const edit of [undefined, ...edits]) {
    if (edit !== undefined) applyEdit(files, edit);
    // As the file provider does: a file whose text did not change is not parsed again.
    const manifests: ManifestFile[] = [CLASS_FILE, ...FILES].map((name) => {
      const t = text(files.get(name) ?? []);
      let entry = parsed.get(name);
      if (entry?.text !== t) {
        entry = { text: t, documents: parseManifestFile(name, t) };
        parsed.set(name, entry);
      }
      return { name, documents: entry.documents };
    });
    const { inputs } = store.build(manifests);

    const incremental = translate(inputs, translationState);
    const built = toXdsResourcesReusing(incremental.ir, {}, envoyState);
    cache.setResources(built.xds);
    translationState = incremental.state;
    envoyState = built.state;

    const full = translate(inputs);
    const fullXds = toXdsResources(full.ir);
    expect(encoded(built.xds)).toEqual(encoded(fullXds));
    // Which Gateway's Envoys get which resources: reused only while it would come out the same.
    expect(built.planes).toEqual(toDataPlanes(full.ir));
    expect(JSON.stringify(incremental.statuses)).toBe(JSON.stringify(full.statuses));
    expect(JSON.stringify(incremental.events)).toBe(JSON.stringify(full.events));
    // The cache serves what a fresh cache would: same resources, same versions, the same bytes.
    const fresh = new SnapshotCache();
    fresh.setResources(fullXds);
    for (const kind of PUSH_ORDER) {
      const mine = cache.snapshot(TypeUrl[kind]);
      const theirs = fresh.snapshot(TypeUrl[kind]);
      expect(mine?.version, `${kind} version`).toBe(theirs?.version);
      for (const [name, r] of theirs?.resources ?? []) expect(Buffer.from(mine?.resources.get(name)?.any ?? []).equals(Buffer.from(r.any)), `${kind}/${name} bytes`).toBe(true);
    }
  }
}

/**
 * Route edits among many routes: HTTPRoutes with several rules and matches of every kind,
 * hostnames, two parentRefs to one Gateway (a route placed twice), equal paths in several
 * routes (precedence decided by name and rule order), on Gateways with hostname listeners. Most
 * edits replace a route in place, as an edit of a file does; some add, delete or move one.
 */
const MANY_ROUTES = Array.from({ length: 14 }, (_, i) => `route-${String(i).padStart(2, '0')}`);

const matchArb: fc.Arbitrary<unknown> = fc.record({
  kind: fc.constantFrom('PathPrefix', 'PathPrefix', 'Exact', 'RegularExpression'),
  path: fc.constantFrom('/', '/v1', '/v1/chat', '/v2', '/models', '/v1/models'),
  method: fc.option(fc.constantFrom('GET', 'POST'), { nil: undefined }),
  header: fc.option(fc.constantFrom('a', 'b'), { nil: undefined }),
  model: fc.option(fc.constantFrom('m1', 'm.*'), { nil: undefined }),
}).map(({ kind, path, method, header, model }) => ({
  path: { type: kind, value: kind === 'RegularExpression' ? `${path}/[a-z]+` : path },
  ...(method !== undefined ? { method } : {}),
  ...(header !== undefined || model !== undefined
    ? { headers: [...(header !== undefined ? [{ name: 'x-team', value: header }] : []), ...(model !== undefined ? [{ name: 'x-switchyard-model', value: model, ...(model.includes('*') ? { type: 'RegularExpression' } : {}) }] : [])] }
    : {}),
}));

const manyRouteArb = (name: string): fc.Arbitrary<Doc> =>
  fc.record({
    parents: fc.constantFrom(['g0'], ['g1'], ['g0', 'g1'], ['g0', 'g0']),
    hostnames: fc.constantFrom([], ['chat.example.com'], ['a.example.com', 'chat.example.com'], ['*.example.com']),
    rules: fc.array(
      fc.record({ matches: fc.array(matchArb, { minLength: 0, maxLength: 3 }), target: fc.constantFrom(...BACKENDS, 'svc', 'missing'), direct: fc.boolean() }),
      { minLength: 1, maxLength: 3 },
    ),
  }).map(({ parents, hostnames, rules }) => ({
    apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name, namespace: NS },
    spec: {
      parentRefs: parents.map((p) => ({ name: p })),
      ...(hostnames.length > 0 ? { hostnames } : {}),
      rules: rules.map(({ matches, target, direct }) => ({
        ...(matches.length > 0 ? { matches } : {}),
        ...(direct
          ? { filters: [{ type: 'RequestRedirect', requestRedirect: { statusCode: 302, hostname: 'elsewhere.example.com' } }] }
          : { backendRefs: [target === 'svc' ? { name: 'svc', port: 80 } : { group: 'switchyard.dev', kind: 'Backend', name: target }] }),
      })),
    },
  }));

const hostnameGateway = (name: string): Doc => ({
  apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name, namespace: NS },
  spec: {
    gatewayClassName: 'switchyard',
    listeners: [{ name: 'http', protocol: 'HTTP', port: 10080 }, { name: 'chat', protocol: 'HTTP', port: 10090, hostname: 'chat.example.com' }, { name: 'any', protocol: 'HTTP', port: 10090, hostname: '*.example.com' }],
  },
});

const routeEditArb: fc.Arbitrary<Edit> = fc.oneof(
  // In place: the route stays in its file.
  { weight: 8, arbitrary: fc.constantFrom(...MANY_ROUTES).chain((name) => manyRouteArb(name).map((doc): Edit => ({ op: 'put', file: FILES[MANY_ROUTES.indexOf(name) % FILES.length] as string, docs: [doc] }))) },
  { weight: 1, arbitrary: fc.record({ file: fc.constantFrom(...FILES), doc: fc.constantFrom(...MANY_ROUTES).chain(manyRouteArb) }).map(({ file, doc }): Edit => ({ op: 'put', file, docs: [doc] })) },
  { weight: 1, arbitrary: fc.constantFrom(...MANY_ROUTES).map((name): Edit => ({ op: 'delete', kind: 'HTTPRoute', name })) },
  { weight: 1, arbitrary: fc.record({ file: fc.constantFrom(...FILES), doc: fc.constantFrom(...BACKENDS).chain(backendArb) }).map(({ file, doc }): Edit => ({ op: 'put', file, docs: [doc] })) },
);

describe('incremental translation', () => {
  it('gives, after every edit of a random sequence, exactly what a translation from scratch gives', () => {
    fc.assert(
      fc.property(fc.array(editArb, { minLength: 1, maxLength: 25 }), (edits) => checkSequence(edits)),
      { numRuns: 150 },
    );
  });

  it('gives, after every route edit among many routes, exactly what a translation from scratch gives', () => {
    fc.assert(
      fc.property(
        fc.tuple(...MANY_ROUTES.map((name) => manyRouteArb(name)), ...BACKENDS.map((name) => backendArb(name)), serviceArb),
        fc.array(routeEditArb, { minLength: 1, maxLength: 12 }),
        (initial, edits) => {
          const docs = initial.flat();
          const files = new Map<string, Doc[] | string>([[CLASS_FILE, [GATEWAY_CLASS, hostnameGateway('g0'), hostnameGateway('g1')]], ['a.yaml', []], ['b.yaml', []], ['c.yaml', []]]);
          docs.forEach((d, i) => (files.get(FILES[i % FILES.length] as string) as Doc[]).push(d));
          checkSequence(edits, files);
        },
      ),
      { numRuns: 30 },
    );
    // Each step translates twice and encodes everything twice: slow on a busy 2-core machine.
  }, 180_000);
});
