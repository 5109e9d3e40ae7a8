import { pino } from 'pino';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { generateManifests, inputsFrom } from '../../bench/translate.js';
import { startGatewayRuntime, type RunningGateway } from '../../src/app/gateway-runtime.js';
import type { Inputs } from '../../src/translate/inputs.js';
import type { ObjectStatus } from '../../src/translate/status.js';
import { MemoryProvider } from '../support/memory-provider.js';
import { LOOPBACK_SERVE_PORTS } from '../support/ports.js';

/**
 * The status pass after a translation runs in slices with turns of the event loop between them
 * (issue 9: at 10,000 Backends it held the loop for a quarter of a second, just when the Envoys
 * that waited connect). The real pipeline (translation, cache, xDS and metrics servers on
 * loopback) on an in-memory provider; the status sink records what is published.
 */

/** Enough objects that a status pass takes several 10 ms slices on any machine (4,002 statuses). */
const BACKENDS = 2_000;

interface Started {
  runtime: RunningGateway;
  provider: MemoryProvider;
  /** Each publication the sink received, in order. */
  published: ObjectStatus[][];
  /** Resolves at the first publication. */
  firstPublication: Promise<ObjectStatus[]>;
}

const running: RunningGateway[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((r) => r.stop()));
});

async function start(inputs: Inputs): Promise<Started> {
  const provider = new MemoryProvider({ inputs, problems: [] });
  const published: ObjectStatus[][] = [];
  let first: (all: ObjectStatus[]) => void = () => undefined;
  const firstPublication = new Promise<ObjectStatus[]>((resolve) => (first = resolve));
  const runtime = await startGatewayRuntime({
    provider,
    origin: { test: 'status-slices' },
    ...LOOPBACK_SERVE_PORTS,
    envoy: {},
    logger: pino({ level: 'silent' }),
    statusSink: {
      statuses: (all) => {
        published.push([...all]);
        first([...all]);
      },
      warnings: () => undefined,
    },
  });
  running.push(runtime);
  return { runtime, provider, published, firstPublication };
}

/** What the next turn of the event loop finds, from a callback queued now. */
function atNextTurn<T>(look: () => T): Promise<T> {
  return new Promise((resolve) => setImmediate(() => resolve(look())));
}

/** Statuses without their transition times (the two runtimes' clocks differ), sorted by object. */
function comparable(all: readonly ObjectStatus[]): unknown[] {
  const strip = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(strip);
    if (typeof v !== 'object' || v === null) return v;
    return Object.fromEntries(Object.entries(v).filter(([k]) => k !== 'lastTransitionTime').map(([k, x]) => [k, strip(x)]));
  };
  return [...all].sort((a, b) => `${a.kind}/${a.namespace}/${a.name}`.localeCompare(`${b.kind}/${b.namespace}/${b.name}`)).map(strip);
}

function condition(all: readonly ObjectStatus[], kind: string, name: string, type: string): { status?: string; reason?: string } {
  const s = all.find((x) => x.kind === kind && x.name === name);
  return (s && 'conditions' in s ? s.conditions.find((c) => c.type === type) : undefined) ?? {};
}

const backendsWithDegraded = (all: readonly ObjectStatus[]): number =>
  all.filter((s) => s.kind === 'Backend' && 'conditions' in s && s.conditions.some((c) => c.type === 'Degraded')).length;

let docs: unknown[];
beforeAll(() => {
  docs = generateManifests(BACKENDS);
});

describe('the status pass after listening', () => {
  it('yields to the event loop before it ends, and publishes every status once it does', async () => {
    const { published, firstPublication } = await start(inputsFrom(docs));
    // Queued right after start: today's one-go pass ran before it, holding the loop throughout.
    const publishedThen = await atNextTurn(() => published.length);
    expect(publishedThen).toBe(0);
    const all = await firstPublication;
    expect(all.filter((s) => s.kind === 'Backend')).toHaveLength(BACKENDS);
    expect(all.filter((s) => s.kind === 'HTTPRoute')).toHaveLength(BACKENDS);
    // The last stage over Backends (fleet health) reached every one of them.
    expect(backendsWithDegraded(all)).toBe(BACKENDS);
    expect(condition(all, 'Backend', 'chat-0', 'Programmed')).toMatchObject({ status: 'False', reason: 'Pending' });
  });

  it('publishes what a pass done at once publishes', async () => {
    const sliced = await start(inputsFrom(docs));
    const slicedStatuses = await sliced.firstPublication;
    // statuses() right after start does the whole pass there and then.
    const atOnce = await start(inputsFrom(docs));
    const atOnceStatuses = atOnce.runtime.statuses();
    expect(atOnce.published).toHaveLength(1);
    expect(comparable(slicedStatuses)).toEqual(comparable(atOnceStatuses));
    expect(comparable(sliced.runtime.statuses())).toEqual(comparable(slicedStatuses));
  });

  it('gives a reader during the pass complete statuses, by finishing the pass then', async () => {
    const { runtime, published } = await start(inputsFrom(docs));
    const read = await atNextTurn(() => ({ before: published.length, statuses: runtime.statuses(), after: published.length }));
    expect(read.before).toBe(0);
    expect(read.after).toBe(1);
    expect(read.statuses.filter((s) => s.kind === 'Backend')).toHaveLength(BACKENDS);
    expect(backendsWithDegraded(read.statuses)).toBe(BACKENDS);
    expect(comparable(read.statuses)).toEqual(comparable(published[0]!));
    // The pass was done once: nothing is left to publish.
    await atNextTurn(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(published).toHaveLength(1);
  });

  it('is superseded by a later translation before it publishes: only the newer statuses are published', async () => {
    const inputs = inputsFrom(docs);
    const { provider, published, firstPublication } = await start(inputs);
    // chat-0's first member loses its Secret while the first pass is under way.
    const missing = 'chat-0-p0-m0';
    const edited: Inputs = { ...inputs, secrets: inputs.secrets.filter((s) => s.metadata.name !== missing) };
    const publishedThen = await atNextTurn(() => {
      const count = published.length;
      provider.emit({ inputs: edited, problems: [] });
      return count;
    });
    expect(publishedThen).toBe(0);
    const first = await firstPublication;
    expect(condition(first, 'Backend', 'chat-0', 'ResolvedRefs')).toMatchObject({ status: 'False', reason: 'SecretNotFound' });
    expect(condition(first, 'Backend', 'chat-1', 'ResolvedRefs')).toMatchObject({ status: 'True' });
    expect(backendsWithDegraded(first)).toBe(BACKENDS);
    await new Promise((resolve) => setTimeout(resolve, 100));
    // The pass of the first translation never published: its statuses were out of date.
    expect(published).toHaveLength(1);
  });

  it('is not superseded without end: edits that keep coming faster than a pass let one publish', async () => {
    const inputs = inputsFrom(docs);
    const { provider, published } = await start(inputs);
    const edited: Inputs = { ...inputs, secrets: inputs.secrets.filter((s) => s.metadata.name !== 'chat-0-p0-m0') };
    const MAX_EDITS = 40;
    let edits = 0;
    // One edit per turn of the loop (a translation each), alternating, until something is published.
    while (published.length === 0 && edits < MAX_EDITS) {
      await atNextTurn(() => provider.emit({ inputs: edits % 2 === 0 ? edited : inputs, problems: [] }));
      edits += 1;
    }
    expect(published.length, `published after ${edits} edits`).toBeGreaterThan(0);
    expect(edits).toBeLessThan(MAX_EDITS);
  });
});
