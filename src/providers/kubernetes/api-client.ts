import http from 'node:http';
import https from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';

/** A raw Kubernetes object as the API server sends it. */
export type RawObject = Record<string, unknown>;

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK';

export interface WatchEvent {
  type: WatchEventType;
  object: RawObject;
}

export interface RawList {
  resourceVersion: string;
  items: RawObject[];
}

/** A failure the API server answered with (a metav1.Status), or that stands for one (410 from a watch ERROR event). */
export class KubeApiError extends Error {
  override name = 'KubeApiError';
  constructor(
    readonly status: number,
    /** metav1.Status reason: NotFound, Expired, Forbidden, ... */
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

/** True for "the resourceVersion you asked for is gone": only a fresh list can continue. */
export function isGone(err: unknown): boolean {
  return err instanceof KubeApiError && (err.status === 410 || err.reason === 'Expired' || err.reason === 'Gone');
}

export function isNotFound(err: unknown): boolean {
  return err instanceof KubeApiError && err.status === 404;
}

/** A short reason for logs: the API server's message, or the network error's code. */
export function describeKubeError(err: unknown): string {
  if (err instanceof KubeApiError) return `${err.status} ${err.reason}: ${err.message}`;
  if (err instanceof Error) {
    const code = 'code' in err && typeof err.code === 'string' ? `${err.code}: ` : '';
    return `${code}${err.message}`;
  }
  return String(err);
}

export type QueryValue = string | number | boolean | undefined;

export interface KubeRequest {
  method?: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** API path, e.g. /apis/gateway.networking.k8s.io/v1/namespaces/ai/httproutes. */
  path: string;
  query?: Record<string, QueryValue>;
  body?: unknown;
  /** Content type of `body`; JSON by default (apply patches: application/apply-patch+yaml). */
  contentType?: string;
  signal?: AbortSignal;
  /** Socket idle time before the request is abandoned. */
  timeoutMs?: number;
}

export interface WatchRequest {
  path: string;
  query: Record<string, QueryValue>;
  signal: AbortSignal;
  /** Called for each event; an ERROR event rejects the watch instead. */
  onEvent(event: WatchEvent): void;
  /** Gives up when the server sends nothing for this long (it should close the stream itself at timeoutSeconds). */
  idleTimeoutMs: number;
}

const LIST_PAGE_SIZE = 500;
const DEFAULT_TIMEOUT_MS = 30_000;

function isRecord(v: unknown): v is RawObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function statusError(code: number, body: string): KubeApiError {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    parsed = undefined;
  }
  if (isRecord(parsed) && parsed['kind'] === 'Status') {
    const reason = typeof parsed['reason'] === 'string' ? parsed['reason'] : http.STATUS_CODES[code] ?? 'Unknown';
    const message = typeof parsed['message'] === 'string' ? parsed['message'] : reason;
    return new KubeApiError(code, reason, message);
  }
  const text = http.STATUS_CODES[code] ?? 'Unknown';
  return new KubeApiError(code, text.replace(/\s+/g, ''), `${text}${body ? `: ${body.slice(0, 200)}` : ''}`);
}

function abortError(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error('request aborted');
}

/**
 * Just enough of a Kubernetes client: JSON requests, paginated lists and streaming watches over
 * node's HTTP stack, authenticated from a kubeconfig (client certificates, bearer tokens,
 * exec and token-file plugins, all applied by @kubernetes/client-node on each request so rotated
 * credentials are picked up). Objects stay plain JSON: no class instances, no Date fields.
 */
export class KubeClient {
  readonly server: URL;
  private readonly httpsAgent = new https.Agent({ keepAlive: true });
  private readonly httpAgent = new http.Agent({ keepAlive: true });

  constructor(private readonly config: KubeConfig) {
    const cluster = config.getCurrentCluster();
    if (!cluster) throw new Error(`kubeconfig: the current context "${config.getCurrentContext()}" names no cluster`);
    this.server = new URL(cluster.server);
  }

  /** One request; resolves to the decoded JSON body of a 2xx answer, rejects with KubeApiError otherwise. */
  async request(req: KubeRequest): Promise<unknown> {
    const res = await this.open(req);
    const body = await readBody(res, req.signal);
    const code = res.statusCode ?? 0;
    if (code < 200 || code > 299) throw statusError(code, body);
    return body === '' ? undefined : (JSON.parse(body) as unknown);
  }

  /** Every item of a collection, page by page, with the list's resourceVersion (watches resume from it). */
  async list(path: string, signal?: AbortSignal): Promise<RawList> {
    const items: RawObject[] = [];
    let token: string | undefined;
    let resourceVersion = '';
    do {
      const page = await this.request({ path, query: { limit: LIST_PAGE_SIZE, continue: token }, ...(signal ? { signal } : {}) });
      if (!isRecord(page) || !Array.isArray(page['items'])) throw new Error(`GET ${path} did not return a list`);
      for (const item of page['items']) if (isRecord(item)) items.push(item);
      const meta = isRecord(page['metadata']) ? page['metadata'] : {};
      resourceVersion = typeof meta['resourceVersion'] === 'string' ? meta['resourceVersion'] : '';
      token = typeof meta['continue'] === 'string' && meta['continue'] !== '' ? meta['continue'] : undefined;
    } while (token);
    return { resourceVersion, items };
  }

  /**
   * Streams a watch until the server ends it (resolves) or it fails (rejects: KubeApiError for an
   * HTTP error or an ERROR event, such as 410 when the resourceVersion is too old).
   */
  async watch(w: WatchRequest): Promise<void> {
    const res = await this.open({ path: w.path, query: { ...w.query, watch: true }, signal: w.signal, timeoutMs: w.idleTimeoutMs });
    const code = res.statusCode ?? 0;
    if (code !== 200) throw statusError(code, await readBody(res, w.signal));
    // Half-open connections (a dropped network path) otherwise wait for the idle timeout.
    res.socket.setKeepAlive(true, 15_000);
    res.setEncoding('utf8');
    await new Promise<void>((resolve, reject) => {
      let buffered = '';
      let failed = false;
      const fail = (err: Error): void => {
        if (failed) return;
        failed = true;
        res.destroy();
        reject(err);
      };
      const onAbort = (): void => fail(abortError(w.signal));
      w.signal.addEventListener('abort', onAbort, { once: true });
      res.on('data', (chunk: string) => {
        buffered += chunk;
        let nl = buffered.indexOf('\n');
        while (nl >= 0 && !failed) {
          const line = buffered.slice(0, nl).trim();
          buffered = buffered.slice(nl + 1);
          nl = buffered.indexOf('\n');
          if (line === '') continue;
          let event: unknown;
          try {
            event = JSON.parse(line);
          } catch {
            fail(new Error(`watch ${w.path}: the server sent a line that is not JSON`));
            return;
          }
          if (!isRecord(event) || typeof event['type'] !== 'string' || !isRecord(event['object'])) {
            fail(new Error(`watch ${w.path}: the server sent an event without type or object`));
            return;
          }
          const type = event['type'];
          const object = event['object'];
          if (type === 'ERROR') {
            const status = typeof object['code'] === 'number' ? object['code'] : 500;
            fail(statusError(status, JSON.stringify(object)));
            return;
          }
          if (type !== 'ADDED' && type !== 'MODIFIED' && type !== 'DELETED' && type !== 'BOOKMARK') continue;
          try {
            w.onEvent({ type, object });
          } catch (err) {
            fail(err instanceof Error ? err : new Error(String(err)));
            return;
          }
        }
      });
      res.on('error', (err) => fail(err));
      res.on('end', () => {
        w.signal.removeEventListener('abort', onAbort);
        if (!failed) resolve();
      });
      res.on('close', () => {
        w.signal.removeEventListener('abort', onAbort);
        if (!failed && !res.complete) fail(new Error('the watch connection closed'));
      });
    });
  }

  /** Closes idle keep-alive connections. Open watches end through their AbortSignal. */
  close(): void {
    this.httpsAgent.destroy();
    this.httpAgent.destroy();
  }

  private async open(req: KubeRequest): Promise<http.IncomingMessage> {
    const base = this.server.href.replace(/\/+$/, '');
    const url = new URL(base + req.path);
    for (const [k, v] of Object.entries(req.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const opts: https.RequestOptions = {};
    await this.config.applyToHTTPSOptions(opts);
    const secure = url.protocol === 'https:';
    const body = req.body === undefined ? undefined : typeof req.body === 'string' ? req.body : JSON.stringify(req.body);
    // The kubeconfig sets headers as a record (Authorization, Impersonate-User), never as a raw array.
    const given = opts.headers && !Array.isArray(opts.headers) ? (opts.headers as http.OutgoingHttpHeaders) : {};
    const headers: http.OutgoingHttpHeaders = { ...given, Accept: 'application/json' };
    if (body !== undefined) {
      headers['Content-Type'] = req.contentType ?? 'application/json';
      headers['Content-Length'] = Buffer.byteLength(body);
    }
    const options: https.RequestOptions = {
      ...opts,
      agent: secure ? this.httpsAgent : this.httpAgent,
      protocol: url.protocol,
      hostname: url.hostname.replace(/^\[|\]$/g, ''),
      port: url.port || (secure ? 443 : 80),
      path: `${url.pathname}${url.search}`,
      method: req.method ?? 'GET',
      headers,
    };
    const signal = req.signal;
    if (signal?.aborted) throw abortError(signal);
    return new Promise<http.IncomingMessage>((resolve, reject) => {
      const r = (secure ? https : http).request(options, (res) => {
        signal?.removeEventListener('abort', onAbort);
        resolve(res);
      });
      const onAbort = (): void => {
        if (signal) r.destroy(abortError(signal));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      r.setTimeout(req.timeoutMs ?? DEFAULT_TIMEOUT_MS, () => r.destroy(new Error(`no answer from the API server within ${req.timeoutMs ?? DEFAULT_TIMEOUT_MS} ms`)));
      r.on('error', (err) => {
        signal?.removeEventListener('abort', onAbort);
        reject(err);
      });
      r.end(body);
    });
  }
}

function readBody(res: http.IncomingMessage, signal: AbortSignal | undefined): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    res.setEncoding('utf8');
    const onAbort = (): void => {
      res.destroy();
      if (signal) reject(abortError(signal));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    res.on('data', (chunk: string) => {
      text += chunk;
    });
    res.on('end', () => {
      signal?.removeEventListener('abort', onAbort);
      resolve(text);
    });
    res.on('error', (err) => {
      signal?.removeEventListener('abort', onAbort);
      reject(err);
    });
  });
}
