import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

// Not `import ... from 'node:http'`: an ES module import of node:http reads every export, and
// its WebSocket getters load Node's bundled undici (about 3 MB of heap, 15 MB of RSS in serve).
const { createServer } = process.getBuiltinModule('node:http');

/** Readiness as the process sees it; the reason is shown to whoever probes /readyz. */
export type Readiness = boolean | { ready: boolean; reason: string };

export interface HealthServerOptions {
  /** 0 picks a free port; the chosen one is returned. */
  port: number;
  host?: string;
  /** Absent: /metrics is not served (the drain sidecar: prom-client alone is some 20 MB of RSS). */
  registry?: Registry;
  ready: () => Readiness;
  /** Current object statuses and problems, served as JSON on /statusz. */
  statusz?: () => unknown;
  /** More series in the text format, appended to /metrics (another process's, e.g. serve's AI extension). */
  extraMetrics?: () => Promise<string>;
  /** More GET paths and their answers (e.g. the AI extension's /envoy/drained). */
  routes?: ReadonlyMap<string, () => Promise<{ status: number; body: string }>>;
}

export interface HealthServer {
  port: number;
  close(): Promise<void>;
}

/** Serves /healthz, /readyz, /metrics and /statusz for kubelet probes, Prometheus and operators. */
export async function startHealthServer(options: HealthServerOptions): Promise<HealthServer> {
  const server = createServer((req, res) => {
    handle(options, req, res).catch((err: unknown) => {
      if (!res.headersSent) send(res, 500, 'text/plain; charset=utf-8', `internal error: ${err instanceof Error ? err.message : String(err)}\n`);
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '0.0.0.0', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  return {
    port,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        // Prometheus keeps connections alive; close() alone would wait for them.
        server.closeAllConnections();
      }),
  };
}

async function handle(options: HealthServerOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('allow', 'GET, HEAD');
    send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n');
    return;
  }
  const path = new URL(req.url ?? '/', 'http://health').pathname;
  switch (path) {
    case '/healthz':
      send(res, 200, 'text/plain; charset=utf-8', 'ok\n');
      return;
    case '/readyz': {
      const { ready, reason } = readiness(options.ready);
      send(res, ready ? 200 : 503, 'text/plain; charset=utf-8', `${ready ? 'ok' : `not ready: ${reason}`}\n`);
      return;
    }
    case '/metrics': {
      if (!options.registry) {
        send(res, 404, 'text/plain; charset=utf-8', 'metrics are not served by this command\n');
        return;
      }
      const own = await options.registry.metrics();
      const extra = options.extraMetrics ? await options.extraMetrics() : '';
      send(res, 200, options.registry.contentType, extra === '' ? own : `${own.endsWith('\n') ? own : `${own}\n`}${extra}`);
      return;
    }
    case '/statusz':
      if (!options.statusz) {
        send(res, 404, 'text/plain; charset=utf-8', 'statusz is not served by this command\n');
        return;
      }
      send(res, 200, 'application/json', `${JSON.stringify(options.statusz(), null, 2)}\n`);
      return;
    default: {
      const route = options.routes?.get(path);
      if (route !== undefined) {
        const answer = await route();
        send(res, answer.status, 'text/plain; charset=utf-8', answer.body);
        return;
      }
      send(res, 404, 'text/plain; charset=utf-8', 'not found: try /healthz, /readyz, /metrics or /statusz\n');
    }
  }
}

function readiness(check: () => Readiness): { ready: boolean; reason: string } {
  try {
    const r = check();
    if (typeof r === 'boolean') return { ready: r, reason: r ? '' : 'starting' };
    return r;
  } catch (err) {
    return { ready: false, reason: `readiness check failed: ${err instanceof Error ? err.message : String(err)}` };
  }
}

function send(res: ServerResponse, status: number, contentType: string, body: string): void {
  res.writeHead(status, { 'content-type': contentType, 'cache-control': 'no-store' });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}
