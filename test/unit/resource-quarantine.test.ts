import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { namesResource } from '../../src/app/culprit-search.js';
import { ResourceQuarantine } from '../../src/app/resource-quarantine.js';
import { condition } from '../../src/api/conditions.js';
import { TypeUrl, type EnvoyResource, type XdsResources } from '../../src/envoy/resources.js';
import { redactSecretText } from '../../src/envoy/secrets.js';
import { shortNackReason } from '../../src/status/programmed.js';
import { CDS_DETAIL, LDS_DETAIL, SDS_DETAIL, SDS_SCHEMA_DETAIL } from '../support/envoy-nack-details.js';
import type { ServedAs } from '../../src/status/programmed.js';
import type { ObjectStatus } from '../../src/translate/status.js';
import { SHARED_VIEW, SnapshotCache, type CachedResource } from '../../src/xds/cache.js';

describe('redactSecretText: Envoy\'s detail without the secret values it quotes', () => {
  it('takes the private key out of a Secret\'s schema failure and keeps the reason', () => {
    const redacted = redactSecretText(SDS_SCHEMA_DETAIL);
    expect(redacted).not.toContain('SECRETKEYMATERIAL');
    expect(redacted).not.toContain('PRIVATE KEY');
    expect(redacted).toContain('inline_string: "[redacted]"');
    expect(shortNackReason(redacted)).toBe('invalid configuration: field: "specifier", reason: is required');
  });

  it('takes out a credential cut off by Envoy\'s 4 KB limit and a bare PEM block, and leaves other details alone', () => {
    expect(redactSecretText('generic_secret {\n  secret {\n    inline_string: "sk-live-abcdef')).toBe('generic_secret {\n  secret {\n    inline_string: "[redacted]"');
    expect(redactSecretText('bad key -----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY----- here')).toBe('bad key [redacted] here');
    expect(redactSecretText(CDS_DETAIL)).toBe(CDS_DETAIL);
    expect(redactSecretText(SDS_DETAIL)).toBe(SDS_DETAIL);
  });
});

describe('namesResource: which resource Envoy\'s error_detail names', () => {
  it('finds the cluster and the listener a CDS or LDS rejection names, as whole names only', () => {
    expect(namesResource(CDS_DETAIL, 'backend/ai/beta')).toBe(true);
    expect(namesResource(CDS_DETAIL, 'backend/ai/bet')).toBe(false);
    expect(namesResource(CDS_DETAIL, 'ai/beta')).toBe(false);
    expect(namesResource(CDS_DETAIL, 'backend/ai/chat')).toBe(false);
    expect(namesResource(LDS_DETAIL, 'ai/ai-gateway/33573')).toBe(true);
    expect(namesResource(LDS_DETAIL, 'ai/ai-gateway/3357')).toBe(false);
    expect(namesResource(LDS_DETAIL, 'ai/ai-gateway/335733')).toBe(false);
  });

  it('finds nothing in an SDS rejection, which quotes no secret name', () => {
    expect(namesResource(SDS_DETAIL, 'certificate/ai/tls')).toBe(false);
  });
});

const cluster = (name: string, timeout = '1s'): EnvoyResource => ({ '@type': TypeUrl.cluster, name, connect_timeout: timeout });
const secret = (name: string, value: string): EnvoyResource => ({ '@type': TypeUrl.secret, name, generic_secret: { secret: { inline_string: value } } });
const xds = (clusters: EnvoyResource[], secrets: EnvoyResource[] = []): XdsResources => ({ listeners: [], routes: [], clusters, endpoints: [], secrets });

/** The runtime's loop, with a real cache: translation output → quarantine → cache; what a stream would be sent and reply. */
class Harness {
  readonly q = new ResourceQuarantine();
  readonly cache = new SnapshotCache();
  served: XdsResources = xds([]);

  serve(translated: XdsResources): Set<string> {
    this.served = this.q.filter(translated);
    const change = this.cache.setResources(this.served);
    const changed = new Set<string>(change.changed);
    if (this.q.afterServe(changed)) return this.serve(translated);
    return changed;
  }

  sent(typeUrl: string, names?: string[]): CachedResource[] {
    const all = [...(this.cache.snapshot(typeUrl)?.resources.values() ?? [])];
    return names ? all.filter((r) => names.includes(r.name)) : all;
  }

  content(typeUrl: string, name: string): EnvoyResource | undefined {
    const field = typeUrl === TypeUrl.cluster ? 'clusters' : 'secrets';
    return this.served[field].find((r) => r['name'] === name);
  }
}

const reply = (typeUrl: string, resources: CachedResource[]) => ({ streamId: 1, nodeId: 'envoy-1', kind: 'sotw' as const, typeUrl, resources });

describe('ResourceQuarantine', () => {
  it('a cluster Envoy names is held at the version it accepted; the other changed cluster is served; a change of the culprit lets it in again', () => {
    const h = new Harness();
    h.serve(xds([cluster('backend/ai/chat'), cluster('backend/ai/beta')]));
    expect(h.q.ack(reply(TypeUrl.cluster, h.sent(TypeUrl.cluster)))).toBe(false);

    const translated = xds([cluster('backend/ai/chat', '2s'), cluster('backend/ai/beta', '3s')]);
    h.serve(translated);
    expect(h.q.nack({ ...reply(TypeUrl.cluster, h.sent(TypeUrl.cluster)), message: CDS_DETAIL })).toBe(true);
    h.serve(translated);
    expect(h.content(TypeUrl.cluster, 'backend/ai/beta')).toMatchObject({ connect_timeout: '1s' });
    expect(h.content(TypeUrl.cluster, 'backend/ai/chat')).toMatchObject({ connect_timeout: '2s' });
    expect(h.q.held()).toEqual(['cluster backend/ai/beta']);

    // Served again with the culprit unchanged: still held; once it changes it goes to Envoy.
    h.serve(translated);
    expect(h.content(TypeUrl.cluster, 'backend/ai/beta')).toMatchObject({ connect_timeout: '1s' });
    h.serve(xds([cluster('backend/ai/chat', '2s'), cluster('backend/ai/beta', '4s')]));
    expect(h.content(TypeUrl.cluster, 'backend/ai/beta')).toMatchObject({ connect_timeout: '4s' });
    expect(h.q.held()).toEqual([]);
  });

  it('a new cluster Envoy rejects, never accepted before, is left out', () => {
    const h = new Harness();
    h.serve(xds([cluster('backend/ai/chat')]));
    h.q.ack(reply(TypeUrl.cluster, h.sent(TypeUrl.cluster)));
    const translated = xds([cluster('backend/ai/chat'), cluster('backend/ai/beta')]);
    h.serve(translated);
    h.q.nack({ ...reply(TypeUrl.cluster, h.sent(TypeUrl.cluster)), message: CDS_DETAIL });
    h.serve(translated);
    expect(h.served.clusters.map((c) => c['name'])).toEqual(['backend/ai/chat']);
  });

  it('two changed secrets and an error that names neither: both held, let in one per ACK, the one rejected again is the culprit', () => {
    const h = new Harness();
    h.serve(xds([], [secret('certificate/ai/a', 'a1'), secret('certificate/ai/b', 'b1')]));
    h.q.ack(reply(TypeUrl.secret, h.sent(TypeUrl.secret)));

    const translated = xds([], [secret('certificate/ai/a', 'a2'), secret('certificate/ai/b', 'b2')]);
    h.serve(translated);
    expect(h.q.nack({ ...reply(TypeUrl.secret, h.sent(TypeUrl.secret)), message: SDS_DETAIL })).toBe(true);
    // Both held at what Envoy accepted.
    h.serve(translated);
    expect(h.served.secrets.map((s) => s['generic_secret'])).toEqual([{ secret: { inline_string: 'a1' } }, { secret: { inline_string: 'b1' } }]);
    expect(h.q.held().sort()).toEqual(['secret certificate/ai/a', 'secret certificate/ai/b']);

    // Envoy ACKs that: a goes in alone, and is accepted; then b goes in alone, and is rejected.
    expect(h.q.ack(reply(TypeUrl.secret, h.sent(TypeUrl.secret)))).toBe(true);
    h.serve(translated);
    expect(h.content(TypeUrl.secret, 'certificate/ai/a')).toMatchObject({ generic_secret: { secret: { inline_string: 'a2' } } });
    expect(h.content(TypeUrl.secret, 'certificate/ai/b')).toMatchObject({ generic_secret: { secret: { inline_string: 'b1' } } });
    expect(h.q.ack(reply(TypeUrl.secret, h.sent(TypeUrl.secret)))).toBe(true);
    h.serve(translated);
    expect(h.content(TypeUrl.secret, 'certificate/ai/b')).toMatchObject({ generic_secret: { secret: { inline_string: 'b2' } } });
    expect(h.q.nack({ ...reply(TypeUrl.secret, h.sent(TypeUrl.secret)), message: SDS_DETAIL })).toBe(true);
    h.serve(translated);
    expect(h.q.held()).toEqual(['secret certificate/ai/b']);
    expect(h.content(TypeUrl.secret, 'certificate/ai/a')).toMatchObject({ generic_secret: { secret: { inline_string: 'a2' } } });
    expect(h.content(TypeUrl.secret, 'certificate/ai/b')).toMatchObject({ generic_secret: { secret: { inline_string: 'b1' } } });
  });

  it('a delta NACK carries only what changed: its one resource is the culprit, whatever the stream ACKed before', () => {
    const h = new Harness();
    h.serve(xds([cluster('c/a'), cluster('c/b')]));
    h.q.ack({ ...reply(TypeUrl.cluster, h.sent(TypeUrl.cluster)), kind: 'delta' });
    const translated = xds([cluster('c/a'), cluster('c/b', '2s')]);
    h.serve(translated);
    expect(h.q.nack({ ...reply(TypeUrl.cluster, h.sent(TypeUrl.cluster, ['c/b'])), kind: 'delta', streamId: 7, message: 'an error that names no cluster' })).toBe(true);
    h.serve(translated);
    expect(h.q.held()).toEqual(['cluster c/b']);
    expect(h.content(TypeUrl.cluster, 'c/b')).toMatchObject({ connect_timeout: '1s' });
  });

  it('an ACK of an older version does not let the next suspect in', () => {
    const h = new Harness();
    h.serve(xds([cluster('c/a'), cluster('c/b'), cluster('c/c')]));
    const old = h.sent(TypeUrl.cluster);
    h.q.ack(reply(TypeUrl.cluster, old));
    const translated = xds([cluster('c/a', '2s'), cluster('c/b', '2s'), cluster('c/c', '2s')]);
    h.serve(translated);
    h.q.nack({ ...reply(TypeUrl.cluster, h.sent(TypeUrl.cluster)), message: 'an error that names no cluster' });
    h.serve(translated);
    expect(h.q.held()).toHaveLength(3);
    expect(h.q.ack(reply(TypeUrl.cluster, h.sent(TypeUrl.cluster)))).toBe(true);
    h.serve(translated);
    expect(h.q.held()).toHaveLength(2);
    // A late ACK of what was served before c/a went in changes nothing.
    expect(h.q.ack({ ...reply(TypeUrl.cluster, old), streamId: 2 })).toBe(false);
    expect(h.q.held()).toHaveLength(2);
    // The ACK of what is served now lets the next one in.
    expect(h.q.ack(reply(TypeUrl.cluster, h.sent(TypeUrl.cluster)))).toBe(true);
    h.serve(translated);
    expect(h.q.held()).toHaveLength(1);
  });

  it('a culprit\'s object reads Programmed=False/Rejected with Envoy\'s reason; a Gateway\'s listener section on that port too, not the others', () => {
    const h = new Harness();
    const listener = (port: number): EnvoyResource => ({ '@type': TypeUrl.listener, name: `ai/ai-gateway/${port}`, address: { socket_address: { address: '127.0.0.1', port_value: port } } });
    h.serve({ ...xds([]), listeners: [listener(8080)] });
    h.q.ack(reply(TypeUrl.listener, h.sent(TypeUrl.listener)));
    h.serve({ ...xds([]), listeners: [listener(8080), listener(33573)] });
    h.q.nack({ ...reply(TypeUrl.listener, h.sent(TypeUrl.listener)), message: LDS_DETAIL });
    h.serve({ ...xds([]), listeners: [listener(8080), listener(33573)] });
    expect(h.served.listeners.map((l) => l['name'])).toEqual(['ai/ai-gateway/8080']);

    const programmed = condition('Programmed', true, 'Programmed', 'acknowledged by the Envoys that serve it', 1);
    const statuses: ObjectStatus[] = [
      { kind: 'Gateway', namespace: 'ai', name: 'ai-gateway', conditions: [programmed], listeners: [{ name: 'http', attachedRoutes: 1, supportedKinds: [], conditions: [programmed] }, { name: 'extra', attachedRoutes: 0, supportedKinds: [], conditions: [programmed] }] },
    ];
    const servedAs: ServedAs = new Map([['Gateway/ai/ai-gateway', { views: [SHARED_VIEW], resources: [{ typeUrl: TypeUrl.listener, names: ['ai/ai-gateway/8080', 'ai/ai-gateway/33573'] }] }]]);
    const gateway = { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'ai-gateway', namespace: 'ai' }, spec: { gatewayClassName: 'switchyard', listeners: [{ name: 'http', protocol: 'HTTP', port: 8080 }, { name: 'extra', protocol: 'HTTP', port: 33573 }] } };
    const [out] = h.q.statuses(statuses, servedAs, [gateway as never]);
    expect(out && 'listeners' in out ? out.conditions[0] : undefined).toMatchObject({
      status: 'False',
      reason: 'Rejected',
      observedGeneration: 1,
      message: "Envoy envoy-1 rejected listener ai/ai-gateway/33573: cannot bind '127.0.0.1:33573': Address already in use; it is left out until this object changes",
    });
    expect(out && 'listeners' in out ? out.listeners.map((l) => `${l.name}=${l.conditions[0]?.status}`) : []).toEqual(['http=True', 'extra=False']);
  });

  it('endpoints Envoy rejects are charged to the Backend whose EDS cluster they feed; other Backends keep their condition', () => {
    const h = new Harness();
    const assignment = (name: string, port: number): EnvoyResource => ({ '@type': TypeUrl.endpoint, cluster_name: name, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '10.0.0.1', port_value: port } } } }] }] });
    const withEndpoints = (a: number, b: number): XdsResources => ({ ...xds([]), endpoints: [assignment('service/ai/a', a), assignment('service/ai/b', b)] });
    h.serve(withEndpoints(80, 80));
    h.q.ack(reply(TypeUrl.endpoint, h.sent(TypeUrl.endpoint)));
    h.serve(withEndpoints(80, 81));
    h.q.nack({ ...reply(TypeUrl.endpoint, h.sent(TypeUrl.endpoint)), message: 'an error that names no assignment' });
    h.serve(withEndpoints(80, 81));
    expect(h.q.held()).toEqual(['endpoints of cluster service/ai/b']);

    const programmed = condition('Programmed', true, 'Programmed', 'acknowledged by the Envoys that serve it', 2);
    const backend = (name: string): ObjectStatus => ({ kind: 'Backend', namespace: 'ai', name, conditions: [programmed] }) as unknown as ObjectStatus;
    const servedAs: ServedAs = new Map(['a', 'b'].map((n) => [`Backend/ai/${n}`, { views: [SHARED_VIEW], resources: [{ typeUrl: TypeUrl.cluster, names: [`service/ai/${n}`] }, { typeUrl: TypeUrl.endpoint, names: [`service/ai/${n}`] }] }]));
    const out = h.q.statuses([backend('a'), backend('b')], servedAs, []);
    const conditionOf = (name: string) => {
      const s = out.find((x) => x.name === name);
      return s && 'conditions' in s ? s.conditions[0] : undefined;
    };
    expect(conditionOf('a')).toMatchObject({ status: 'True', reason: 'Programmed' });
    expect(conditionOf('b')).toMatchObject({ status: 'False', reason: 'Rejected', observedGeneration: 2 });
    expect(conditionOf('b')?.message).toBe('Envoy envoy-1 rejected endpoints of cluster service/ai/b: an error that names no assignment; the version it last accepted is served until this object changes');
  });
});

/**
 * A fresh Node with V8's test functions: ack() compiled (TurboFan) while a fleet ACKs names it
 * meets for the first time, as when it connects; then the ACKs of a first edit, a changed version
 * of a name already accepted. Whether ack()'s compiled code was kept through them.
 */
const ACK_KEPT_SCRIPT = `
  import { ResourceQuarantine } from './src/app/resource-quarantine.ts';
  import { TypeUrl } from './src/envoy/resources.ts';
  const natives = (body) => new Function('f', body);
  const prepare = natives('%PrepareFunctionForOptimization(f)');
  const optimize = natives('%OptimizeFunctionOnNextCall(f)');
  const status = natives('return %GetOptimizationStatus(f)');
  const OPTIMIZED = 16;
  const ack = ResourceQuarantine.prototype.ack;
  const record = (name, version) => ({ typeUrl: TypeUrl.cluster, name, version, resource: { name }, any: new Uint8Array(0) });
  const reply = (streamId, resources) => ({ streamId, nodeId: \`envoy-\${streamId}\`, kind: 'delta', typeUrl: TypeUrl.cluster, resources });
  const quarantine = new ResourceQuarantine();
  prepare(ack);
  const initial = Array.from({ length: 50 }, (_, i) => record(\`c\${i}\`, 'v1'));
  for (let s = 0; s < 100; s++) quarantine.ack(reply(s, initial));
  optimize(ack);
  quarantine.ack(reply(100, initial));
  const connected = (status(ack) & OPTIMIZED) !== 0;
  const edit = [record('c7', 'v2')];
  for (let s = 0; s < 100; s++) quarantine.ack(reply(s, edit));
  const kept = (status(ack) & OPTIMIZED) !== 0;
  process.stdout.write(JSON.stringify({ connected, kept }));
`;

describe('ResourceQuarantine.ack and V8', () => {
  it("keeps ack()'s compiled code through a first edit's ACKs after a fleet's first ACKs", () => {
    const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
    const r = spawnSync(process.execPath, ['--allow-natives-syntax', '--import', 'tsx', '--input-type=module', '-e', ACK_KEPT_SCRIPT], { cwd: root, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`node exited ${String(r.status)}: ${r.stderr}`);
    expect(JSON.parse(r.stdout)).toEqual({ connected: true, kept: true });
  });
});
