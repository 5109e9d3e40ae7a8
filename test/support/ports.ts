import { createSocket, type Socket } from 'node:dgram';
import { createServer } from 'node:net';

/*
 * Ports handed to processes that bind them later (an Envoy's listener, a restarted controller's xDS
 * port) must not come from the kernel's ephemeral range (32768-60999 here): every outgoing
 * connection (to the API server, to Envoy's admin, between Envoy and a provider) takes its local
 * port from that range too, so a port the kernel once said was free could be somebody's client
 * socket by the time it is bound (a CI run failed so: EADDRINUSE on a controller's xDS port).
 * 10000-19999 is below that range and below scripts/k8s-up.sh's 20000-31999; each vitest worker
 * gets its own slice, so two workers never hand out the same port.
 *
 * Other test runs on the machine (other checkouts) use the same slices, and a port is free for a
 * while whenever no process holds it (a fixture's listener port between two tests, while one Envoy
 * has stopped and the next has not bound it yet). So each port handed out is also claimed for the
 * test file's process: a UDP socket bound to the same number, which every run's freePort() must
 * bind before it hands the number out. The kernel drops the claim when the process ends, however it
 * ends. Without it another run took such a port in the gap: its Envoy's listener joined ours with
 * SO_REUSEPORT (the kernel then spreads our connections over both, and refuses those queued on the
 * one that closes), or its process held the port and our Envoy's listener never bound.
 */
const BASE = 10_000;
const SLICE = 1_000;
const SLICES = 10;

/**
 * Ports in that range that the Fetch standard blocks ("bad ports"): Node's fetch() refuses them
 * ("fetch failed", cause "bad port") whatever listens there, so an Envoy given one as its admin
 * port could never be asked whether it is up (a bench run failed so, on 10080).
 */
const FETCH_BLOCKED = new Set([10_080]);

const poolId = Number.parseInt(process.env['VITEST_POOL_ID'] ?? '0', 10);
const slice = Number.isFinite(poolId) ? Math.abs(poolId) % SLICES : 0;
// A random start, so a second test run on the same machine (another checkout) rarely starts
// where this one does; bindability is checked either way.
let next = Math.floor(Math.random() * SLICE);

/** The claims of this process: held (unreferenced) until it exits. */
const claims: Socket[] = [];

/** Whether this process now holds `port`'s claim (false: another run's process holds it). */
function claim(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createSocket({ type: 'udp4' });
    socket.once('error', () => {
      socket.close();
      resolve(false);
    });
    socket.bind({ port, address: '127.0.0.1', exclusive: true }, () => {
      socket.unref();
      claims.push(socket);
      resolve(true);
    });
  });
}

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/**
 * A TCP port on 127.0.0.1 that is free now and that no other caller gets from here while this
 * process runs (in this test run or another on the machine): taken from this worker's slice of a
 * range outside the kernel's ephemeral ports, and claimed until the process exits.
 */
export async function freePort(): Promise<number> {
  for (let tried = 0; tried < SLICE; tried += 1) {
    const port = BASE + slice * SLICE + (next % SLICE);
    next += 1;
    if (FETCH_BLOCKED.has(port)) continue;
    // Claimed first: a port another run claimed may be free only for now.
    if ((await claim(port)) && (await bindable(port))) return port;
  }
  throw new Error(`freePort: no free port in 127.0.0.1:${BASE + slice * SLICE}-${BASE + slice * SLICE + SLICE - 1} (vitest worker slice ${slice})`);
}

/** serve()'s xDS and metrics listeners on loopback, each on a port the kernel picks. */
export const LOOPBACK_SERVE_PORTS = { xdsPort: 0, xdsHost: '127.0.0.1', metricsPort: 0, metricsHost: '127.0.0.1' } as const;
