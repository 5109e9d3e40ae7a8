import { DrillNonces, signDrillHeader, verifyDrillHeader, type VerifiedDrill } from './drill.js';

export { WARMUP_CLUSTER_HEADER, WARMUP_DOMAIN, WARMUP_HEADER, WARMUP_HOST_HEADER, WARMUP_RETRIES, WARMUP_ROUTE_HEADER } from '../envoy/ai-warmup-routes.js';

/**
 * Warm-up requests (issue 11): serve sends one per priority of each AI Backend so that Envoy has
 * a connection ready to every member before a client's request needs a stand-in there (a skip, a
 * credential hand-over). Without one the stand-in waits out Envoy's connect timeout (README,
 * "Standing in for the upstream").
 *
 * The header is a drill order (drill.ts) signed for the purpose `warmup` with a key only this
 * extension and the serve that started it know: `priority` is the pool to warm. The extension
 * answers every attempt itself and never calls a provider:
 * - at the warmed priority, a local reply (safe while Envoy is still connecting; Envoy goes on
 *   connecting, and the cluster's preconnect ratio keeps a spare connection) naming the member
 *   and whether its connection was ready;
 * - at an earlier priority with a connection ready, a stand-in the route retries, so the request
 *   walks on to the warmed pool; without one, the same local reply as above (that member is
 *   being warmed by it), and the sender asks again.
 */

/**
 * On every answer to a warm-up request: `priority=<n>;member=<name>;ready=<0|1>[;worker=<id>]`.
 * `worker` names the Envoy worker thread that ran the attempt (its ext_proc connection): each
 * worker has connection pools of its own, so a member is warm for the workers that answered ready.
 */
export const WARMUP_ANSWER_HEADER = 'x-switchyard-warmup-answer';
/** Status of the local reply to a warm-up attempt: no content, nothing to retry. */
export const WARMUP_ANSWER_STATUS = 204;
/** Status of the answer on a warm-up route to a request whose order is not honoured (forged, stale, replayed). */
export const WARMUP_REFUSED_STATUS = 403;

export interface WarmupAnswer {
  priority: number;
  member: string;
  /** Envoy had a connection to the member ready as the attempt began. */
  ready: boolean;
  /** The Envoy worker's ext_proc connection (BidiCall.connection: `address:port`, or `unix-<pid>-<n>`), when the extension knows it. */
  worker?: string;
}

export function warmupAnswerHeader(a: WarmupAnswer): string {
  return `priority=${a.priority};member=${a.member};ready=${a.ready ? 1 : 0}${a.worker !== undefined ? `;worker=${a.worker}` : ''}`;
}

/** Reads warmupAnswerHeader's value; undefined when malformed. */
export function parseWarmupAnswer(value: string): WarmupAnswer | undefined {
  const fields = new Map(value.split(';').map((p) => [p.slice(0, p.indexOf('=')).trim(), p.slice(p.indexOf('=') + 1).trim()] as const));
  const priority = Number(fields.get('priority'));
  const member = fields.get('member') ?? '';
  const ready = fields.get('ready');
  if (!Number.isInteger(priority) || member === '' || (ready !== '0' && ready !== '1')) return undefined;
  const worker = fields.get('worker');
  return { priority, member, ready: ready === '1', ...(worker !== undefined && worker !== '' ? { worker } : {}) };
}

export function signWarmupHeader(key: string, backend: string, priority: number, nowMs = Date.now()): string {
  return signDrillHeader(key, backend, priority, nowMs, undefined, 'warmup');
}

/** The extension's side: its key and the nonces honoured (a warm-up header is good for one request). */
export class WarmupOrders {
  private readonly nonces = new DrillNonces();

  constructor(readonly key: string) {}

  /** The verified order of this attempt (its own header, or an earlier attempt's of the same request); undefined otherwise. */
  verify(header: string | undefined, input: { backend: string; requestId: string; attempt: number; nowMs: number }): VerifiedDrill | undefined {
    if (header === undefined) {
      if (input.requestId === '') return undefined;
      const earlier = this.nonces.forRequest(input.requestId, input.attempt, input.nowMs);
      return earlier?.backend === input.backend ? earlier : undefined;
    }
    const checked = verifyDrillHeader(header, { ...input, key: this.key, nonces: this.nonces, purpose: 'warmup' });
    if ('rejected' in checked) return undefined;
    this.nonces.remember(input.requestId, checked.nonce, checked);
    return checked;
  }
}
