/**
 * CPU time of one status publication (serve's publishStatuses: Programmed from the fleet's ACKs,
 * fleet health, the status book) among N Backends and their HTTPRoutes, in memory, no server:
 * after an ACK that changes no verdict (the fleet's state rebuilt as new objects, as the xDS
 * server hands it over), and after one that moves one type of one view to a new version.
 *
 * Run with --expose-gc so that each publication starts after a full collection (a major GC
 * inside one would swamp what it measures).
 *
 *   node --expose-gc --import tsx bench/status-publish.ts [backends=10000]
 */
import { toXdsResourcesReusing } from '../src/envoy/index.js';
import { KIND_FIELD, PUSH_ORDER, TypeUrl } from '../src/envoy/resources.js';
import { StatusBook } from '../src/status/book.js';
import { applyFleetHealth, fleetHealthView, LoadWindow, type FleetHealthMemo } from '../src/status/fleet-health.js';
import { applyXdsFeedback, ProgrammedMemo, servedAsFromIr, type FleetTypeFeedback } from '../src/status/programmed.js';
import { translate } from '../src/translate/index.js';
import { SHARED_VIEW } from '../src/xds/cache.js';
import { generateManifests, inputsFrom } from './translate.js';

const n = Number(process.argv[2] ?? 10000);
const translation = translate(inputsFrom(generateManifests(n)));
const built = toXdsResourcesReusing(translation.ir, {}, undefined);
const servedAs = servedAsFromIr(translation.ir, built.planes);
const health = fleetHealthView(translation.ir, new LoadWindow(60_000));
const book = new StatusBook();
const programmedMemo = new ProgrammedMemo();
const healthMemo: FleetHealthMemo = new WeakMap();
const views = [SHARED_VIEW, ...built.planes.gateways.keys()];

/** The fleet's state as the xDS server's fleet() builds it: new maps each time; every type ACKed at its version. */
function fleet(versions: ReadonlyMap<string, string>): Map<string, Map<string, FleetTypeFeedback>> {
  return new Map(views.map((view) => [view, new Map(PUSH_ORDER.map((kind) => {
    const version = versions.get(`${view} ${kind}`) ?? 'v1';
    return [TypeUrl[kind], { acked: true, version, held: new Set([version]), rejected: [] }] as const;
  }))]));
}

const cpu = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
function publish(label: string, versions: ReadonlyMap<string, string>): void {
  (globalThis as { gc?: () => void }).gc?.();
  const t: Record<string, number> = {};
  let c = cpu();
  const lap = (k: string): void => {
    const x = cpu();
    t[k] = Math.round((x - c) * 10) / 10;
    c = x;
  };
  const feedback = { views: fleet(versions) };
  lap('fleet');
  const fed = applyXdsFeedback(translation.statuses, servedAs, feedback, programmedMemo);
  lap('programmed');
  const healthy = applyFleetHealth([...fed], health, 60_000, (namespace, name) => book.get('Backend', namespace, name), healthMemo);
  lap('health');
  const { changed } = book.update(healthy);
  lap('book');
  t['total'] = Object.values(t).reduce((s, x) => s + x, 0);
  console.log(label.padEnd(34), JSON.stringify(t), `${changed.length} changed`);
}

console.log(`${n} Backends, ${translation.statuses.length} statuses; kinds ${[...new Set(PUSH_ORDER.map((k) => KIND_FIELD[k]))].join(' ')}`);
publish('first (every object Programmed)', new Map());
for (let i = 0; i < 3; i++) publish(`ACK changing nothing ${i}`, new Map());
const moved = new Map<string, string>();
for (let i = 0; i < 3; i++) {
  moved.set(`${views[views.length - 1] ?? SHARED_VIEW} cluster`, `v${2 + i}`);
  publish(`ACK of a new cluster version ${i}`, moved);
}
