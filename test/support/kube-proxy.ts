import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';

/** One request the proxy passed on (or refused). */
export interface ProxiedRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  watch: boolean;
  /** The resourceVersion the API server was asked for (after any rewrite). */
  resourceVersion: string | undefined;
  refused: boolean;
  time: number;
}

/**
 * A plain-HTTP proxy in front of the real API server, authenticating with the test kubeconfig,
 * so a test can do to a client what networks and API servers do: drop every connection at once,
 * refuse new ones for a while, or make the next watches ask for a long-gone resourceVersion.
 */
export class KubeApiProxy {
  readonly requests: ProxiedRequest[] = [];
  private readonly sockets = new Set<Socket>();
  private readonly upstream = new Set<http.ClientRequest>();
  private refusing = false;
  private stale = { count: 0, resourceVersion: '1', pathSuffix: '', redirectTo: '' };
  private port = 0;

  private constructor(
    private readonly server: http.Server,
    private readonly target: KubeConfig,
  ) {}

  static async start(target: KubeConfig): Promise<KubeApiProxy> {
    const server = http.createServer();
    const proxy = new KubeApiProxy(server, target);
    server.on('connection', (socket) => {
      proxy.sockets.add(socket);
      socket.on('close', () => proxy.sockets.delete(socket));
      if (proxy.refusing) socket.destroy();
    });
    server.on('request', (req, res) => void proxy.forward(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('proxy has no TCP address');
    proxy.port = address.port;
    return proxy;
  }

  /** A kubeconfig that reaches the API server through this proxy (the proxy adds the credentials). */
  kubeConfig(): KubeConfig {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'proxy', server: `http://127.0.0.1:${this.port}`, skipTLSVerify: true }],
      users: [{ name: 'proxy' }],
      contexts: [{ name: 'proxy', cluster: 'proxy', user: 'proxy' }],
      currentContext: 'proxy',
    });
    return kc;
  }

  /** Closes every open connection, client side and API server side, as a network failure would. */
  dropConnections(): void {
    for (const r of this.upstream) r.destroy();
    for (const s of this.sockets) s.destroy();
  }

  /** While true, new connections are closed at once. */
  refuse(refusing: boolean): void {
    this.refusing = refusing;
  }

  /**
   * The next `count` watch requests (on paths ending in `pathSuffix`) ask the API server for
   * `resourceVersion` instead of what the client sent, and, with `redirectTo`, for another
   * collection. Most kinds are watched from the API server's watch cache, which keeps every event
   * since it started and answers an old resourceVersion from what it holds; collections it does
   * not cache (core Events) go to etcd, which answers a compacted resourceVersion with a real 410.
   */
  makeNextWatchesStale(count: number, opts: { pathSuffix?: string; resourceVersion?: string; redirectTo?: string } = {}): void {
    this.stale = { count, resourceVersion: opts.resourceVersion ?? '1', pathSuffix: opts.pathSuffix ?? '', redirectTo: opts.redirectTo ?? '' };
  }

  async close(): Promise<void> {
    this.dropConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async forward(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://proxy');
    const watch = url.searchParams.get('watch') === 'true' || url.searchParams.get('watch') === '1';
    if (watch && !this.refusing && this.stale.count > 0 && url.pathname.endsWith(this.stale.pathSuffix)) {
      this.stale.count--;
      url.searchParams.set('resourceVersion', this.stale.resourceVersion);
      if (this.stale.redirectTo) url.pathname = this.stale.redirectTo;
    }
    const record: ProxiedRequest = {
      method: req.method ?? 'GET',
      path: url.pathname,
      query: url.searchParams,
      watch,
      resourceVersion: url.searchParams.get('resourceVersion') ?? undefined,
      refused: this.refusing,
      time: Date.now(),
    };
    this.requests.push(record);
    if (this.refusing) {
      req.socket.destroy();
      return;
    }
    const cluster = this.target.getCurrentCluster();
    if (!cluster) throw new Error('proxy: target kubeconfig has no cluster');
    const server = new URL(cluster.server);
    const opts: https.RequestOptions = {};
    await this.target.applyToHTTPSOptions(opts);
    const headers: http.OutgoingHttpHeaders = { ...req.headers };
    delete headers['host'];
    delete headers['connection'];
    const given = opts.headers && !Array.isArray(opts.headers) ? (opts.headers as http.OutgoingHttpHeaders) : {};
    const upstream = https.request(
      {
        ...opts,
        agent: undefined,
        hostname: server.hostname,
        port: server.port,
        path: `${url.pathname}${url.search}`,
        method: req.method,
        headers: { ...headers, ...given },
      },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
        up.on('error', () => res.destroy());
      },
    );
    this.upstream.add(upstream);
    upstream.on('close', () => this.upstream.delete(upstream));
    upstream.on('error', () => res.destroy());
    res.on('close', () => upstream.destroy());
    req.pipe(upstream);
  }
}
