import { describe, expect, it } from 'vitest';
import type { HTTPRoute } from '../../src/api/httproute.js';
import type { IR, RouteIR } from '../../src/ir/model.js';
import { RouteQuarantine } from '../../src/app/route-quarantine.js';
import { shortNackReason } from '../../src/status/programmed.js';
import type { HTTPRouteStatus } from '../../src/translate/status.js';

describe('shortNackReason: Envoy\'s reason in a line, not its dump', () => {
  it('keeps the last link of a schema failure and drops the resource dump around it', () => {
    const dump = 'goo.gle/debugproto    \nstat_prefix: "x"\nroute_config {\n  virtual_hosts {\n    name: "v"\n' + '    routes { }\n'.repeat(300);
    const detail = `${dump}: Proto constraint validation failed (HttpConnectionManagerValidationError.RouteConfig: embedded message failed validation | caused by RouteValidationError.RequestHeadersToAdd[0]: embedded message failed validation | caused by HeaderValueValidationError.Value: value does not match regex pattern "^[^\\x00\\n\\r]*$")\n`;
    expect(shortNackReason(detail)).toBe('invalid configuration: HeaderValueValidationError.Value: value does not match regex pattern "^[^\\x00\\n\\r]*$"');
    // The same when the reason comes first and the dump after it, cut short.
    const first = `Proto constraint validation failed (RouteConfigurationValidationError.Name: value length must be at least 1 characters): ${dump.slice(0, 4000)}`;
    expect(shortNackReason(first)).toBe('invalid configuration: RouteConfigurationValidationError.Name: value length must be at least 1 characters');
  });

  it('keeps other errors\' first line, bounded', () => {
    expect(shortNackReason(':-prefixed or host headers may not be modified\n')).toBe(':-prefixed or host headers may not be modified');
    expect(shortNackReason(`x${'y'.repeat(1000)}`).length).toBe(300);
  });
});

function route(name: string, spec: object = {}): HTTPRoute {
  return { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name, namespace: 'ai' }, spec: { rules: [], ...spec } } as HTTPRoute;
}

/** An IR whose one virtual host holds one entry per named route, `variant` making the entry differ. */
function ir(entries: Record<string, string>): IR {
  const routes = Object.entries(entries).map(([name, variant]) => ({ name: `ai/${name}/rule/0/match/0`, match: { path: { kind: 'PathPrefix', value: `/${variant}` }, headers: [], queryParams: [] }, action: { kind: 'direct', status: 200, body: '' } }) as RouteIR);
  return { gateways: [], listeners: [{ name: 'ai/gw/80', gateway: { namespace: 'ai', name: 'gw' }, port: 80, protocol: 'HTTP', tls: [], virtualHosts: [{ name: 'vh', domains: ['*'], routes }] }], clusters: [], credentials: [], certificates: [] };
}

function routeStatus(name: string): HTTPRouteStatus {
  return { kind: 'HTTPRoute', namespace: 'ai', name, parents: [{ parentRef: { name: 'gw' }, controllerName: 'c', conditions: [{ type: 'Accepted', status: 'True', reason: 'Accepted', message: '' }] }] };
}

describe('RouteQuarantine', () => {
  it('one changed route NACKed: it is the culprit, held out with Envoy\'s reason until its spec changes', () => {
    const q = new RouteQuarantine();
    q.refresh([route('a'), route('b')]);
    q.served('1', ir({ a: 'a' }));
    expect(q.ack('envoy-1', '1')).toBe(false);
    q.served('2', ir({ a: 'a', b: 'b' }));
    expect(q.nack('envoy-1', '2', 'regex \'x\' RE2 program size of 151 > max program size of 100\n')).toBe(true);
    expect([...q.excluded()]).toEqual(['ai/b']);
    const [b] = q.statuses([routeStatus('a'), routeStatus('b')]);
    expect(b?.name).toBe('b');
    expect(b && 'parents' in b ? b.parents[0]?.conditions[0] : undefined).toMatchObject({ status: 'False', reason: 'UnsupportedValue', message: expect.stringContaining('Envoy envoy-1 rejected this route: regex \'x\' RE2 program size of 151') });
    // Unchanged spec: still held. Changed spec: tried again.
    q.refresh([route('a'), route('b')]);
    expect([...q.excluded()]).toEqual(['ai/b']);
    q.refresh([route('a'), route('b', { hostnames: ['x.example'] })]);
    expect([...q.excluded()]).toEqual([]);
  });

  it('several changed routes NACKed: all held, re-admitted one per ACK; the one whose re-admission is NACKed is the culprit', () => {
    const q = new RouteQuarantine();
    q.refresh([route('a'), route('b'), route('c')]);
    q.served('1', ir({}));
    q.ack('e', '1');
    q.served('2', ir({ a: 'a', b: 'b', c: 'c' }));
    expect(q.nack('e', '2', 'bad')).toBe(true);
    expect([...q.excluded()].sort()).toEqual(['ai/a', 'ai/b', 'ai/c']);
    q.served('3', ir({}));
    expect(q.ack('e', '3')).toBe(true); // admits a
    expect([...q.excluded()].sort()).toEqual(['ai/b', 'ai/c']);
    q.served('4', ir({ a: 'a' }));
    expect(q.ack('e', '4')).toBe(true); // a innocent; admits b
    q.served('5', ir({ a: 'a', b: 'b' }));
    expect(q.nack('e', '5', 'b is bad')).toBe(true);
    expect([...q.excluded()].sort()).toEqual(['ai/b', 'ai/c']);
    q.served('6', ir({ a: 'a' }));
    expect(q.ack('e', '6')).toBe(true); // admits c
    q.served('7', ir({ a: 'a', c: 'c' }));
    expect(q.ack('e', '7')).toBe(false);
    expect([...q.excluded()]).toEqual(['ai/b']);
  });

  it('a re-admitted suspect that changes nothing (no new version to ACK) lets the next one in at once', () => {
    const q = new RouteQuarantine();
    q.refresh([route('a'), route('b')]);
    q.served('1', ir({}));
    q.ack('e', '1');
    q.served('2', ir({ a: 'a', b: 'b' }));
    q.nack('e', '2', 'bad');
    expect(q.served('3', ir({}))).toBe(false);
    expect(q.ack('e', '3')).toBe(true); // admits a, whose entries are gone meanwhile
    expect(q.served('3', ir({}))).toBe(true); // same version: admit b without waiting
    expect([...q.excluded()]).toEqual([]);
  });

  it('finds the culprit the same when its fingerprints were taken after the push\'s turn ended', async () => {
    const turnEnds = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
    const q = new RouteQuarantine();
    q.refresh([route('a'), route('b')]);
    q.served('1', ir({ a: 'a' }));
    await turnEnds();
    q.ack('e', '1');
    q.served('2', ir({ a: 'a', b: 'b' }));
    await turnEnds();
    // Served again before a NACK: the same version is not fingerprinted twice, nor lost.
    expect(q.served('2', ir({ a: 'a', b: 'b' }))).toBe(false);
    await turnEnds();
    expect(q.nack('e', '2', 'bad')).toBe(true);
    expect([...q.excluded()]).toEqual(['ai/b']);
  });

  it('a NACK that names a route\'s entry blames that route alone; one with no changed route blames none', () => {
    const q = new RouteQuarantine();
    q.refresh([route('a'), route('b')]);
    q.served('1', ir({ a: 'a', b: 'b' }));
    expect(q.nack('e', '1', 'route ai/a/rule/0/match/0: bad')).toBe(true);
    expect([...q.excluded()]).toEqual(['ai/a']);
    q.served('2', ir({ b: 'b' }));
    q.ack('e', '2');
    q.served('3', ir({ b: 'b' }));
    expect(q.nack('e', '3', 'listener trouble')).toBe(false);
  });
});
