/**
 * One connection storm alone, for finding where its time goes: serve in file mode with N Backends
 * (as the xds-e2e suite starts it), then a fleet of C streams of the Go load client, `runs` times
 * against the same serve. Per run: when every connection was taken, when every stream had the
 * first byte of its first response, when every stream had ACKed its initial configuration, and
 * the CPU of serve and of the load client over the storm: on two cores the load client, standing
 * in for a thousand Envoys, competes with the server it measures. Also when the kernel held every
 * connection established on serve's port (/proc/net/tcp): a client slow to dial tells itself
 * apart from a server slow to take what the kernel has accepted.
 *
 * STORM_SERVE_PROFILE=DIR: serve writes a V8 CPU profile into DIR when it stops.
 * STORM_CLIENT_PROFILE=FILE: the load client's pprof profile of the first run.
 * BENCH_E2E_WINDOW as in the suite (Envoy's window by default, 0 for gRPC-Go's).
 *
 *   node --import tsx bench/xds-e2e-storm.ts [backends=1000] [clients=1000] [sotw|delta] [runs=1]
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildGoBench, processUsage, startLoadClient } from './gcp.js';
import { ConfigDir, Serve, eventLoopLagMaxMs, settle, windowFromEnv } from './xds-e2e.js';

const backends = Number(process.argv[2] ?? 1000);
const clients = Number(process.argv[3] ?? 1000);
const mode = process.argv[4] === 'delta' ? 'delta' : 'sotw';
const runs = Number(process.argv[5] ?? 1);
const window = windowFromEnv(process.env['BENCH_E2E_WINDOW']);
/** Connections in ESTABLISHED state whose local port is `port` (serve's ends), from /proc/net/tcp. */
function established(port: number): number {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  let n = 0;
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n')) {
    const fields = line.trim().split(/\s+/);
    if (fields[1]?.endsWith(hex) === true && fields[3] === '01') n++;
  }
  return n;
}

/** A process's user and system CPU in ms (/proc/PID/stat, in clock ticks of 10 ms on Linux). */
function userSystemMs(pid: number): { user: number; system: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: Number(fields[11]) * 10, system: Number(fields[12]) * 10 };
}

/** Bytes a process has written, sockets included (/proc/PID/io wchar). */
function bytesWritten(pid: number): number {
  return Number(/^wchar:\s+(\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'))?.[1] ?? Number.NaN);
}

/**
 * When serve read each stream's first request since `since` (epoch ms), from its "Envoy connected"
 * log lines: set beside the load client's "connected", it tells a server slow to take the
 * connections the kernel accepted from a client slow to notice that it has them.
 */
function serveSawStreams(logFile: string, since: number): { count: number; halfMs: number; lastMs: number } {
  const times: number[] = [];
  for (const line of readFileSync(logFile, 'utf8').split('\n')) {
    if (!line.includes('"Envoy connected"')) continue;
    const time = Number(/"time":(\d+)/.exec(line)?.[1]);
    if (time >= since) times.push(time - since);
  }
  times.sort((a, b) => a - b);
  return { count: times.length, halfMs: times[Math.floor(times.length / 2)] ?? Number.NaN, lastMs: times.at(-1) ?? Number.NaN };
}

const bin = buildGoBench((line) => console.error(line));
const dir = mkdtempSync(join(tmpdir(), 'switchyard-storm-'));
const serveProfile = process.env['STORM_SERVE_PROFILE'];
const config = new ConfigDir(dir, backends);
const serve = Serve.start(config.path, dir, serveProfile);
try {
  const ports = await serve.ports(300_000);
  // One stream first, as the suite's probe: the storm then meets a serve that has served once.
  const probe = startLoadClient(bin, { port: ports.xds, streams: 1, mode, gateway: 'bench/bench', name: 'probe', ...window });
  await probe.next((e) => e.event === 'ready', 300_000, 'the first client');
  await probe.stop();
  console.log(`${backends} Backends, ${clients} ${mode} streams, window ${window.window ?? 'gRPC-Go default'}, serve pid ${serve.pid}`);
  for (let run = 1; run <= runs; run++) {
    await settle([serve.pid]);
    const serveBefore = processUsage(serve.pid).cpuMs;
    const serveSplitBefore = userSystemMs(serve.pid);
    const writtenBefore = bytesWritten(serve.pid);
    // Scraped once before, so the next scrape holds the storm's longest stall only.
    await eventLoopLagMaxMs(ports.metrics);
    const load = (loadavg()[0] ?? 0).toFixed(1);
    const profile = run === 1 ? process.env['STORM_CLIENT_PROFILE'] : undefined;
    const start = Date.now();
    console.log('start', start);
    const fleet = startLoadClient(bin, { port: ports.xds, streams: clients, mode, gateway: 'bench/bench', name: 'storm', ...window, ...(profile !== undefined ? { cpuProfile: profile } : {}) });
    let allEstablishedMs: number | undefined;
    const poll = setInterval(() => {
      if (allEstablishedMs === undefined && established(ports.xds) >= clients) allEstablishedMs = Date.now() - start;
    }, 20);
    const ready = await fleet.next((e) => e.event === 'ready', 600_000, 'every stream to ACK its initial configuration');
    clearInterval(poll);
    const serveCpu = processUsage(serve.pid).cpuMs - serveBefore;
    const serveSplit = userSystemMs(serve.pid);
    const client = processUsage(fleet.child.pid ?? -1);
    const clientSplit = userSystemMs(fleet.child.pid ?? -1);
    const written = bytesWritten(serve.pid) - writtenBefore;
    const ms = (key: string): string => (ready[key] === undefined ? '-' : Number(ready[key]).toFixed(0));
    const seen = serveSawStreams(join(dir, 'serve.log'), start);
    const stallMs = await eventLoopLagMaxMs(ports.metrics);
    console.log(`run ${run} (load ${load}): kernel established all ${allEstablishedMs === undefined ? '-' : allEstablishedMs.toFixed(0)} ms, ` +
      `serve read the first request of ${seen.count} streams by ${seen.lastMs.toFixed(0)} ms (half by ${seen.halfMs.toFixed(0)} ms), connected ${ms('connectMaxMs')} ms, first byte ${ms('firstByteMaxMs')} ms, first response ${ms('firstResponseMinMs')}-${ms('firstResponseMaxMs')} ms, all ACKed ${ms('readyMs')} ms (half ${ms('readyP50Ms')} ms; ` +
      `a stream's first byte to its last ACK: median ${ms('firstByteToReadyP50Ms')} ms, longest ${ms('firstByteToReadyMaxMs')} ms); ` +
      `CPU serve ${serveCpu.toFixed(0)} ms (user ${(serveSplit.user - serveSplitBefore.user).toFixed(0)}, system ${(serveSplit.system - serveSplitBefore.system).toFixed(0)}), ` +
      `load client ${client.cpuMs.toFixed(0)} ms (user ${clientSplit.user.toFixed(0)}, system ${clientSplit.system.toFixed(0)}; RSS ${(client.rssBytes / 1048576).toFixed(0)} MB); ` +
      `serve wrote ${(written / clients / 1048576).toFixed(2)} MB a stream; serve's longest event-loop stall ${stallMs.toFixed(0)} ms`);
    await fleet.stop();
  }
} finally {
  await serve.stop();
  rmSync(dir, { recursive: true, force: true });
}
