import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeMessage } from '../../src/envoy/proto.js';
import { TypeUrl } from '../../src/envoy/resources.js';
import { FIRST_STATUS_WAIT_MS, STATUS_COALESCE_MS, startGatewayRuntime, type RunningGateway } from '../../src/app/gateway-runtime.js';
import { FileProvider } from '../../src/providers/file.js';
import type { ObjectStatus } from '../../src/translate/status.js';
import { closeAdsStream, openAdsStream, sotwRequest as request, sotwResponse, type AdsConnection } from '../support/ads-client.js';
import { waitFor } from '../support/wait.js';
import { LOOPBACK_SERVE_PORTS } from '../support/ports.js';

/**
 * Status follows the fleet's ACK state per version, not its connections: a fleet that
 * disconnects and reconnects to the versions it had ACKed makes the status writer write nothing.
 * The real pipeline (file provider on examples/, translation, cache, xDS server) with raw gRPC
 * ADS clients that ACK like Envoy; the status sink counts the writes the writer would make.
 */

const FLEET = 20;

interface FakeEnvoy extends AdsConnection {
  /** Type URL → the version last received and ACKed. */
  readonly acked: Map<string, string>;
}

/** CDS and EDS wildcard, ACKing every response as Envoy does. */
function connect(port: number, nodeId: string): FakeEnvoy {
  const { client, call } = openAdsStream(port);
  const envoy: FakeEnvoy = { client, call, acked: new Map() };
  call.on('data', (bytes: Buffer) => {
    const response = sotwResponse(bytes);
    const typeUrl = String(response['type_url']);
    const version = String(response['version_info']);
    call.write(request({ version_info: version, response_nonce: String(response['nonce']), type_url: typeUrl, resource_names: ['*'] }));
    envoy.acked.set(typeUrl, version);
  });
  call.on('error', () => undefined);
  call.write(request({ node: { id: nodeId }, type_url: TypeUrl.cluster, resource_names: ['*'] }));
  call.write(request({ type_url: TypeUrl.endpoint, resource_names: ['*'] }));
  return envoy;
}

/** The real pipeline on examples/, every port on loopback. */
function examplesRuntime(extra: Pick<Parameters<typeof startGatewayRuntime>[0], 'statusSink' | 'loadReporting' | 'firstStatusWaitMs'>): Promise<RunningGateway> {
  return startGatewayRuntime({
    provider: new FileProvider({ path: 'examples', logger: pino({ level: 'silent' }) }),
    origin: { config: 'examples' },
    ...LOOPBACK_SERVE_PORTS,
    envoy: {},
    logger: pino({ level: 'silent' }),
    ...extra,
  });
}

const programmedTrue = (statuses: readonly ObjectStatus[]): string[] =>
  statuses.filter((s) => 'conditions' in s && s.conditions.some((c) => c.type === 'Programmed' && c.status === 'True')).map((s) => `${s.kind}/${s.namespace}/${s.name}`);

describe('status across a fleet reconnect', () => {
  let runtime: RunningGateway;
  let writes = 0;
  let latest: readonly ObjectStatus[] = [];

  beforeAll(async () => {
    runtime = await examplesRuntime({
      statusSink: {
        statuses: (all) => {
          writes++;
          latest = all;
        },
        warnings: () => undefined,
      },
      // Load-report figures are refreshed on their own clock; none arrive here, keep them out of the window.
      loadReporting: { refreshMs: 600_000 },
    });
  }, 60_000);

  afterAll(async () => {
    await runtime?.stop();
  });

  it('writes status when the fleet first ACKs, and none when every Envoy disconnects and reconnects to the same versions', async () => {
    const current = (): Map<string, string | undefined> =>
      new Map([TypeUrl.cluster, TypeUrl.endpoint].map((typeUrl) => [typeUrl, runtime.cache.view(undefined).snapshot(typeUrl)?.version]));
    const allAcked = (fleet: FakeEnvoy[]): boolean => fleet.every((envoy) => [...current()].every(([typeUrl, version]) => envoy.acked.get(typeUrl) === version));

    const before = writes;
    let fleet = Array.from({ length: FLEET }, (_, i) => connect(runtime.xdsPort, `envoy-${i}`));
    await waitFor(() => allAcked(fleet), { what: `${FLEET} clients to ACK CDS and EDS`, timeoutMs: 30_000 });
    const programmed = await waitFor(() => (programmedTrue(latest).some((key) => key.startsWith('Backend/')) ? programmedTrue(latest) : undefined), {
      what: 'a Backend to be Programmed=True in a status write',
      timeoutMs: 10_000,
    });
    expect(writes).toBeGreaterThan(before);
    const settled = writes;

    fleet.forEach(closeAdsStream);
    await waitFor(() => runtime.xds.clients().length === 0, { what: 'every stream to close on the server', timeoutMs: 10_000 });
    // Nothing to wait on for an absence: give a coalesced status rebuild several times its delay to happen.
    await sleep(STATUS_COALESCE_MS * 6);
    fleet = Array.from({ length: FLEET }, (_, i) => connect(runtime.xdsPort, `envoy-${i}`));
    await waitFor(() => allAcked(fleet) && runtime.xds.clients().length === FLEET, { what: `${FLEET} reconnected clients to ACK CDS and EDS`, timeoutMs: 30_000 });
    await sleep(STATUS_COALESCE_MS * 6);

    expect(writes).toBe(settled);
    expect(programmedTrue(runtime.statuses())).toEqual(programmed);
    fleet.forEach(closeAdsStream);
  }, 90_000);
});

describe('the first load report', () => {
  let runtime: RunningGateway;

  beforeAll(async () => {
    // The health tick is far away: only the first report itself can end AwaitingLoadReports in time.
    runtime = await examplesRuntime({ loadReporting: { intervalMs: 1_000, refreshMs: 600_000 } });
  }, 60_000);

  afterAll(async () => {
    await runtime?.stop();
  });

  it('ends Degraded=Unknown/AwaitingLoadReports at once, not at the next health tick', async () => {
    const degradedReasons = (): string[] =>
      runtime.statuses().flatMap((s) => (s.kind === 'Backend' && 'conditions' in s ? s.conditions.filter((c) => c.type === 'Degraded').map((c) => String(c.reason)) : []));
    expect(degradedReasons().length).toBeGreaterThan(0);
    expect(new Set(degradedReasons())).toEqual(new Set(['AwaitingLoadReports']));
    const cluster = [...(runtime.cache.snapshot(TypeUrl.cluster)?.resources.keys() ?? [])].find((n) => n.startsWith('backend/'));
    expect(cluster).toBeDefined();

    const client = new grpc.Client(`127.0.0.1:${runtime.xdsPort}`, grpc.credentials.createInsecure());
    const call = client.makeBidiStreamRequest<Buffer, Buffer>('/envoy.service.load_stats.v3.LoadReportingService/StreamLoadStats', (b) => b, (b) => b);
    call.on('error', () => undefined);
    call.on('data', () => undefined);
    const lrs = (json: Parameters<typeof encodeMessage>[1]): Buffer => Buffer.from(encodeMessage('envoy.service.load_stats.v3.LoadStatsRequest', json));
    call.write(lrs({ node: { id: 'edge-1' } }));
    call.write(
      lrs({
        cluster_stats: [
          {
            cluster_name: String(cluster),
            load_report_interval: '1s',
            upstream_locality_stats: [{ locality: { sub_zone: 'priority-0' }, priority: 0, total_successful_requests: 3, total_issued_requests: 3 }],
          },
        ],
      }),
    );
    try {
      await waitFor(() => !degradedReasons().includes('AwaitingLoadReports'), { what: 'Degraded to leave AwaitingLoadReports after the first report', timeoutMs: 5_000 });
    } finally {
      call.cancel();
      client.close();
    }
  }, 30_000);
});

describe('the statuses of the first translation', () => {
  /** Starts the examples runtime, counting the status sink's writes. */
  async function counted(firstStatusWaitMs?: number): Promise<{ runtime: RunningGateway; writes: () => number }> {
    let writes = 0;
    const runtime = await examplesRuntime({ statusSink: { statuses: () => void writes++, warnings: () => undefined }, loadReporting: { refreshMs: 600_000 }, ...(firstStatusWaitMs !== undefined ? { firstStatusWaitMs } : {}) });
    return { runtime, writes: () => writes };
  }
  const backends = (statuses: readonly ObjectStatus[]): string[] => statuses.filter((s) => s.kind === 'Backend').map((s) => `${s.namespace}/${s.name}`);

  it('are worked out once the first response has left, not on the way to it (10,000 Backends: half a CPU-second the first Envoy would wait behind)', async () => {
    // No other trigger within the test: only the response starts them.
    const { runtime, writes } = await counted(60_000);
    let envoy: FakeEnvoy | undefined;
    try {
      await sleep(100);
      expect(writes()).toBe(0);
      envoy = connect(runtime.xdsPort, 'first');
      await waitFor(() => (writes() === 1 ? true : undefined), { what: 'statuses after the first response', timeoutMs: 10_000, intervalMs: 5 });
      expect(envoy.acked.has(TypeUrl.cluster)).toBe(true);
      expect(backends(runtime.statuses()).length).toBeGreaterThan(0);
    } finally {
      if (envoy) closeAdsStream(envoy);
      await runtime.stop();
    }
  }, 60_000);

  it('are worked out without a client too, once it has had time to connect', async () => {
    const { runtime, writes } = await counted();
    try {
      await new Promise((resolve) => setImmediate(resolve));
      expect(writes()).toBe(0);
      await waitFor(() => (writes() === 1 ? true : undefined), { what: 'statuses with no client', timeoutMs: FIRST_STATUS_WAIT_MS + 10_000, intervalMs: 5 });
      expect(backends(runtime.statuses()).length).toBeGreaterThan(0);
    } finally {
      await runtime.stop();
    }
  }, 60_000);

  it('are there for whoever reads them right after start, and are not published a second time', async () => {
    const { runtime, writes } = await counted();
    try {
      expect(writes()).toBe(0);
      const first = runtime.statuses();
      expect(backends(first).length).toBeGreaterThan(0);
      expect(writes()).toBe(1);
      await sleep(STATUS_COALESCE_MS * 2);
      expect(writes()).toBe(1);
      expect(runtime.statuses()).toEqual(first);
    } finally {
      await runtime.stop();
    }
  }, 60_000);
});
