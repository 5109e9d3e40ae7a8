import { createServer } from 'node:net';

/*
 * Ports handed to processes that bind them later (an Envoy's listener, a restarted controller's xDS
 * port) must not come from the kernel's ephemeral range (32768-60999 here): every outgoing
 * connection (to the API server, to Envoy's admin, between Envoy and a provider) takes its local
 * port from that range too, so a port the kernel once said was free could be somebody's client
 * socket by the time it is bound (a CI run failed so: EADDRINUSE on a controller's xDS port).
 * 10000-19999 is below that range and below scripts/k8s-up.sh's 20000-31999; each vitest worker
 * gets its own slice, so two workers never hand out the same port.
 */
const BASE = 10_000;
const SLICE = 1_000;
const SLICES = 10;

const poolId = Number.parseInt(process.env['VITEST_POOL_ID'] ?? '0', 10);
const slice = Number.isFinite(poolId) ? Math.abs(poolId) % SLICES : 0;
// A random start, so a second test run on the same machine (another checkout) rarely starts
// where this one does; bindability is checked either way.
let next = Math.floor(Math.random() * SLICE);

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/**
 * A TCP port on 127.0.0.1 that is free now and that no other caller in this test run gets from
 * here: taken from this worker's slice of a range outside the kernel's ephemeral ports.
 */
export async function freePort(): Promise<number> {
  for (let tried = 0; tried < SLICE; tried += 1) {
    const port = BASE + slice * SLICE + (next % SLICE);
    next += 1;
    if (await bindable(port)) return port;
  }
  throw new Error(`freePort: no free port in 127.0.0.1:${BASE + slice * SLICE}-${BASE + slice * SLICE + SLICE - 1} (vitest worker slice ${slice})`);
}
