/**
 * A data plane that still has an Envoy (and AI extension) of the release before the member facts
 * string is served its AI clusters in the 'legacy' form: exactly what that release served,
 * byte for byte (test/unit/fixtures/legacy-attempt-facts.yaml holds that release's golden
 * output), so its extension finds every key it reads; plus the facts string of each member and
 * its attribute, which that extension never reads and which let either form's filter read either
 * form's endpoints while a data plane changes form.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { attemptTarget } from '../../src/ai-extension/attempt.js';
import type { DecodedValue } from '../../src/ai-extension/protocol.js';
import { ATTEMPT_FACTS_ATTRIBUTE, legacyAttemptAttribute } from '../../src/envoy/ai-extension.js';
import { ATTEMPT_FACTS_KEY } from '../../src/envoy/attempt-facts.js';
import { prebuildAttemptForms, toAttemptFormResources, type AttemptFormsMemo } from '../../src/envoy/attempt-forms.js';
import { encodedForm } from '../../src/envoy/encoded.js';
import { toXdsResources } from '../../src/envoy/index.js';
import { decodeResource, encodeResourceAny, messageType } from '../../src/envoy/proto.js';
import type { EnvoyResource, JsonObject } from '../../src/envoy/resources.js';
import type { IR } from '../../src/ir/model.js';
import { translate } from '../../src/translate/index.js';
import { snapshotOf } from '../golden/render.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const GOLDEN = join(HERE, '..', 'golden');
const OPTIONS = { listenerAddress: '0.0.0.0' };

const previousRelease = parse(readFileSync(join(HERE, 'fixtures', 'legacy-attempt-facts.yaml'), 'utf8')) as Record<string, { clusters: EnvoyResource[]; endpoints: EnvoyResource[] }>;

function irOf(name: string): IR {
  const file = join(GOLDEN, `${name}.in.yaml`);
  return translate(snapshotOf([{ name: `test/golden/${name}.in.yaml`, text: readFileSync(file, 'utf8') }]).inputs).ir;
}

function bytesOf(resource: EnvoyResource): Buffer {
  const form = encodedForm(resource);
  return Buffer.from(form !== undefined ? form.any : encodeResourceAny(resource, false));
}

/** Its JSON as decoded from its bytes (defaults left out), for readable differences. */
function json(resource: EnvoyResource): JsonObject {
  const any = messageType('google.protobuf.Any').decode(bytesOf(resource)) as unknown as { type_url: string; value: Uint8Array };
  return JSON.parse(JSON.stringify(decodeResource(any.type_url, any.value))) as JsonObject;
}

describe('the legacy attempt facts form', () => {
  it('built in slices (an older Envoy joining, off the request path) is the same as in one go, and collecting it then builds nothing', () => {
    const base = irOf(Object.keys(previousRelease)[0] as string);
    const ai = base.clusters.filter((c) => c.ai !== undefined);
    expect(ai.length).toBeGreaterThan(0);
    // Forty copies of each AI cluster under their own names: several slices' worth.
    const ir: IR = { ...base, clusters: [...base.clusters, ...Array.from({ length: 40 }, (_, i) => ai.map((c) => ({ ...c, name: `${c.name}-${i}` }))).flat()] };
    let memo: AttemptFormsMemo | undefined;
    let slices = 0;
    for (let done = false; !done; slices++) {
      const step = prebuildAttemptForms(ir, OPTIONS, 'legacy', memo, undefined, () => true);
      memo = step.memo;
      done = step.done;
      expect(slices).toBeLessThan(1_000);
    }
    expect(slices).toBeGreaterThan(Math.floor((ai.length * 41) / 9));
    const sliced = toAttemptFormResources(ir, OPTIONS, 'legacy', memo);
    const again = toAttemptFormResources(ir, OPTIONS, 'legacy', sliced.memo);
    sliced.resources.clusters.forEach((c, i) => expect(again.resources.clusters[i]).toBe(c));
    const whole = toAttemptFormResources(ir, OPTIONS, 'legacy');
    expect(sliced.resources.clusters.map((c) => c['name'])).toEqual(whole.resources.clusters.map((c) => c['name']));
    sliced.resources.clusters.forEach((c, i) => expect(bytesOf(c).equals(bytesOf(whole.resources.clusters[i] as EnvoyResource))).toBe(true));
    sliced.resources.endpoints.forEach((e, i) => expect(bytesOf(e).equals(bytesOf(whole.resources.endpoints[i] as EnvoyResource))).toBe(true));
  });

  for (const [name, before] of Object.entries(previousRelease)) {
    it(`${name}: equals, byte for byte, the AI Clusters and assignments the release before served, plus the facts string of each member`, () => {
      const { resources } = toAttemptFormResources(irOf(name), OPTIONS, 'legacy');
      expect(resources.clusters.map((c) => c['name'])).toEqual(before.clusters.map((c) => c['name']));
      expect(resources.endpoints.map((e) => e['cluster_name'])).toEqual(before.endpoints.map((e) => e['cluster_name']));
      const clusters = resources.clusters.map((c) => withoutFactsString(json(c)));
      const endpoints = resources.endpoints.map((e) => withoutFactsString(json(e)));
      // Every AI endpoint carried its facts string and every AI filter asked for it, last.
      expect(clusters.every((c) => c.attributes === 1)).toBe(true);
      for (const c of clusters) expect(c.members > 0).toBe(c.rest['load_assignment'] !== undefined);
      for (const e of endpoints) expect(e.members).toBeGreaterThan(0);
      expect(clusters.map((c) => c.rest)).toEqual(before.clusters.map(json));
      expect(endpoints.map((e) => e.rest)).toEqual(before.endpoints.map(json));
      clusters.forEach((c, i) => expect(Buffer.from(encodeResourceAny(c.rest, false)).equals(bytesOf(before.clusters[i] as EnvoyResource))).toBe(true));
      endpoints.forEach((e, i) => expect(Buffer.from(encodeResourceAny(e.rest, false)).equals(bytesOf(before.endpoints[i] as EnvoyResource))).toBe(true));
    });
  }

  it("a filter of either form reads an endpoint of either form (Envoy pairs them apart while a data plane changes form)", () => {
    // Inline assignments (model-routing) and EDS ones (shared-endpoint).
    for (const name of ['model-routing', 'shared-endpoint']) expect(readablePairs(irOf(name))).toBeGreaterThan(4);
  });

  /** Reads every AI member with each filter form against each endpoint form; how many it read. */
  function readablePairs(ir: IR): number {
    const packed = toAttemptFormResources(ir, OPTIONS, 'packed').resources;
    const legacy = toAttemptFormResources(ir, OPTIONS, 'legacy').resources;
    let pairs = 0;
    for (const c of ir.clusters) {
      if (c.ai === undefined) continue;
      for (const filterForm of [packed, legacy]) {
        const asked = requestAttributesOf(filterForm.clusters, c.name);
        for (const endpointForm of [packed, legacy]) {
          for (const p of c.priorities) {
            for (const [i, m] of p.members.entries()) {
              const metadata = endpointMetadataOf(endpointForm, c.name, p.level, i);
              // What Envoy sends: each asked attribute that the endpoint has a value for.
              const attributes = new Map<string, DecodedValue>();
              for (const [key, value] of Object.entries(metadata)) {
                const attribute = `xds.upstream_host_metadata.filter_metadata['switchyard.dev'].${key}`;
                if (asked.includes(attribute)) attributes.set(attribute, typeof value === 'number' ? { numberValue: value } : { stringValue: String(value) });
              }
              expect(attemptTarget(attributes), `${c.name} ${m.metadata.member}`).toMatchObject({ backend: m.metadata.backend, member: m.metadata.member, provider: m.metadata.provider, priority: p.level });
              pairs++;
            }
          }
        }
      }
    }
    return pairs;
  }

  it('the packed form is what toXdsResources serves; the legacy one differs from it in every AI cluster', () => {
    const ir = irOf('shared-endpoint');
    const served = toXdsResources(ir, OPTIONS);
    const packed = toAttemptFormResources(ir, OPTIONS, 'packed').resources;
    const legacy = toAttemptFormResources(ir, OPTIONS, 'legacy').resources;
    expect(packed.clusters.length).toBeGreaterThan(0);
    for (const [i, c] of packed.clusters.entries()) {
      const same = served.clusters.find((s) => s['name'] === c['name']) as EnvoyResource;
      expect(bytesOf(c).equals(bytesOf(same))).toBe(true);
      expect(bytesOf(legacy.clusters[i] as EnvoyResource).equals(bytesOf(c))).toBe(false);
    }
    expect(packed.endpoints.map(json)).toEqual(served.endpoints.filter((e) => packed.endpoints.some((p) => p['cluster_name'] === e['cluster_name'])).map(json));
  });

  it('builds only the clusters named, when told which (a Gateway data plane\'s)', () => {
    const ir = irOf('shared-endpoint');
    const all = toAttemptFormResources(ir, OPTIONS, 'legacy').resources;
    const first = String(all.clusters[0]?.['name']);
    const some = toAttemptFormResources(ir, OPTIONS, 'legacy', undefined, new Set([first, 'backend/ai/not-there'])).resources;
    expect(all.clusters.length).toBeGreaterThan(1);
    expect(some.clusters.map((c) => c['name'])).toEqual([first]);
    expect(some.endpoints.every((e) => e['cluster_name'] === first)).toBe(true);
  });

  it('reuses what it built for an unchanged IR object, and builds again in another form', () => {
    const ir = irOf('model-routing');
    const first = toAttemptFormResources(ir, OPTIONS, 'legacy');
    const again = toAttemptFormResources(ir, OPTIONS, 'legacy', first.memo);
    again.resources.clusters.forEach((c, i) => expect(c).toBe(first.resources.clusters[i]));
    const other = toAttemptFormResources(ir, OPTIONS, 'packed', first.memo);
    other.resources.clusters.forEach((c, i) => expect(c).not.toBe(first.resources.clusters[i]));
  });

  it("this release's extension reads every member of the legacy form as the packed form describes it", () => {
    const ir = irOf('model-routing');
    for (const c of ir.clusters) {
      if (c.ai === undefined) continue;
      for (const p of c.priorities) {
        for (const m of p.members) {
          const legacy = memberMetadataOf(toAttemptFormResources(ir, OPTIONS, 'legacy').resources.clusters, c.name, m.metadata.member);
          // What Envoy sends: one attribute per key, numbers as number_value.
          const attributes = new Map(Object.entries(legacy).map(([key, value]) => [legacyAttemptAttribute(key as never), typeof value === 'number' ? { numberValue: value } : { stringValue: String(value) }]));
          const target = attemptTarget(attributes);
          expect(target).toMatchObject({ backend: m.metadata.backend, member: m.metadata.member, provider: m.metadata.provider, priority: p.level });
          if (m.metadata.modelAliases !== undefined) expect({ ...(target as { modelAliases: object }).modelAliases }).toEqual(m.metadata.modelAliases);
        }
      }
    }
  });
});

/** The switchyard.dev endpoint metadata of `member` in the (inline) assignment of cluster `name`. */
function memberMetadataOf(clusters: readonly EnvoyResource[], name: string, member: string): Record<string, unknown> {
  const cluster = json(clusters.find((c) => c['name'] === name) as EnvoyResource) as { load_assignment: { endpoints: { lb_endpoints: { metadata: { filter_metadata: Record<string, Record<string, unknown>> } }[] }[] } };
  for (const locality of cluster.load_assignment.endpoints) {
    for (const e of locality.lb_endpoints) {
      const facts = e.metadata.filter_metadata['switchyard.dev'];
      if (facts?.['member'] === member) return facts;
    }
  }
  throw new Error(`no member ${member} in ${name}`);
}

/** The switchyard.dev metadata of the `index`th endpoint at priority `level` of cluster `name`, inline or over EDS. */
function endpointMetadataOf(resources: { clusters: readonly EnvoyResource[]; endpoints: readonly EnvoyResource[] }, name: string, level: number, index: number): Record<string, unknown> {
  type Assignment = { endpoints: { priority?: number; lb_endpoints: { metadata: { filter_metadata: Record<string, Record<string, unknown>> } }[] }[] };
  const cluster = json(resources.clusters.find((c) => c['name'] === name) as EnvoyResource);
  const eds = resources.endpoints.find((e) => e['cluster_name'] === name);
  const assignment = (cluster['load_assignment'] ?? (eds !== undefined ? json(eds) : undefined)) as Assignment | undefined;
  const facts = assignment?.endpoints.find((l) => (l.priority ?? 0) === level)?.lb_endpoints[index]?.metadata.filter_metadata['switchyard.dev'];
  if (facts === undefined) throw new Error(`no endpoint ${index} at priority ${level} in ${name}`);
  return facts;
}

interface ExtProcFilter {
  name: string;
  typed_config: { request_attributes?: string[] };
}

function extProcFiltersOf(cluster: JsonObject): ExtProcFilter[] {
  const options = (cluster['typed_extension_protocol_options'] as Record<string, { http_filters?: ExtProcFilter[] }> | undefined)?.['envoy.extensions.upstreams.http.v3.HttpProtocolOptions'];
  return (options?.http_filters ?? []).filter((f) => f.name === 'envoy.filters.http.ext_proc');
}

/** The request_attributes of the ext_proc filter of cluster `name`. */
function requestAttributesOf(clusters: readonly EnvoyResource[], name: string): string[] {
  const [filter] = extProcFiltersOf(json(clusters.find((c) => c['name'] === name) as EnvoyResource));
  return filter?.typed_config.request_attributes ?? [];
}

/**
 * `resource` (a Cluster or an assignment, as JSON) without what the legacy form adds to the
 * release before's: the facts string of each AI endpoint, and its attribute at the end of each
 * ext_proc filter's list. Counts what it took out.
 */
function withoutFactsString(resource: JsonObject): { rest: EnvoyResource; members: number; attributes: number } {
  const rest = structuredClone(resource) as EnvoyResource;
  let members = 0;
  let attributes = 0;
  const assignment = (rest['load_assignment'] ?? rest) as { endpoints?: { lb_endpoints?: { metadata?: { filter_metadata?: Record<string, Record<string, unknown>> } }[] }[] };
  for (const locality of assignment.endpoints ?? []) {
    for (const e of locality.lb_endpoints ?? []) {
      const facts = e.metadata?.filter_metadata?.['switchyard.dev'];
      if (facts === undefined || facts[ATTEMPT_FACTS_KEY] === undefined) continue;
      expect(typeof facts[ATTEMPT_FACTS_KEY]).toBe('string');
      delete facts[ATTEMPT_FACTS_KEY];
      members++;
    }
  }
  for (const filter of extProcFiltersOf(rest)) {
    const list = filter.typed_config.request_attributes ?? [];
    if (list[list.length - 1] !== ATTEMPT_FACTS_ATTRIBUTE) continue;
    list.pop();
    attributes++;
  }
  return { rest, members, attributes };
}
