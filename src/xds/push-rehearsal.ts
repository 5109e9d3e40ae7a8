import { encodedStandIn } from '../envoy/encoded.js';
import { encodeMessage } from '../envoy/proto.js';
import { TypeUrl, type EnvoyResource, type JsonObject, type XdsResources } from '../envoy/resources.js';
import type { DataPlanes } from '../envoy/data-planes.js';
import { GATEWAY_NODE_METADATA } from '../envoy/bootstrap.js';
import { collectAfterPushRehearsal, collectionLogFields, type CollectionResult } from '../observability/idle-compaction.js';
import type { SnapshotCache } from './cache.js';
import type { DirectCall, FramedMessage } from './grpc-framing.js';
import { decodeDeltaDiscoveryRequest, decodeDiscoveryRequest, deltaReplyAt, type DeltaDiscoveryRequest, type DiscoveryRequest } from './wire.js';

/**
 * A rehearsal of the push of an edit, run once the server has streams and is idle, so that the
 * first edit a fleet is pushed runs code V8 has compiled with what a change push meets (issue 9),
 * in the protocol the fleet speaks (SotW and delta streams share the fan-out but not the code that
 * selects, diffs and encodes a push). Connecting a fleet runs the code that answers first requests; a change runs other
 * branches of it (a Cluster update and the assignments resent with it in one write, shared
 * responses from one snapshot to the next, their ACKs), and V8, which compiled that code without
 * feedback for them, threw its optimized code away on the first edit's first streams (about 16
 * deoptimizations: the flush loop, the responses, the outbox, the framing of a pair) and ran the
 * rest of the fleet's pushes unoptimized while compiling it again: at 50 Backends x 1,000 delta
 * streams, the first edit reached every stream 20-30 ms later than the next ones.
 *
 * The rehearsal is a private server over a private cache (the caller builds both: the same
 * classes and the same closures as the real ones, so V8 sees the same code), a few dozen streams
 * of a stand-in client that subscribes as Envoy does and ACKs every response, and a run of edits
 * of its Clusters, one Cluster an edit, in turn. Nothing of it reaches a real stream, the real
 * cache, the real server's ledger, events or metrics. It runs one edit per turn of the event loop
 * and waits while the real server has work. A completed rehearsal ends with a full GC of a small
 * heap (collectAfterPushRehearsal): the garbage of the fleet's connecting and of the rehearsal.
 */

/** A stream of the private server, as the rehearsal drives it: requests go in, responses come out through the transport it was given. */
export interface RehearsalStreams<Request = DeltaDiscoveryRequest> {
  /** The private server's cache, which the rehearsal fills and edits. */
  readonly cache: SnapshotCache;
  /** How the stand-in clients speak: DELTA_CLIENT or SOTW_CLIENT, as the streams `open` opens. */
  readonly client: StandInClient<Request>;
  /** Opens a stream on the private server that writes through `transport`; returns how it is handed requests. */
  open(transport: DirectCall): (request: Request) => void;
  /** The real server has work (a push under way, requests waiting, requests read lately): the rehearsal waits. */
  busy(): boolean;
  /** The private server has nothing left to push or to read. */
  settled(): boolean;
  /** The real server stopped: the rehearsal ends. */
  cancelled(): boolean;
}

export interface RehearsalResult {
  /** Responses the stand-in clients were pushed after the edits (each ACKed). */
  pushed: number;
  /** Edits rehearsed. */
  edits: number;
  /** False when the rehearsal gave up (the real server stayed busy, or the stand-in clients stopped getting what they expect). */
  completed: boolean;
  /** The full GC run after a completed rehearsal (collectAfterPushRehearsal), for the server's debug line; absent when none ran. */
  collected?: ReturnType<typeof collectionLogFields>;
}

/**
 * Streams and edits: each per-stream function of a push runs some ten thousand times. V8 wants
 * about 3,000 calls after its first optimization (--invocation-count-for-turbofan), counted again
 * after every change of type feedback; with 60 edits (3,840 pushes a function) the delta push's
 * per-stream functions (sendResponse, resendShared, sharedDelta, pushChange, the pacer's) still
 * reached TurboFan during a 1,000-stream fleet's edits 2 to 9 (--trace-opt, 50 Backends), each
 * compile 2-9 ms of a V8 thread beside the edit.
 */
export const REHEARSAL_STREAMS = 64;
export const REHEARSAL_EDITS = 200;
/**
 * More Clusters than a snapshot keeps shared resends for (delta.ts RESENDS_KEPT), edited in turn:
 * every edit's assignment resend is then a new one, as a real edit of another Backend's Cluster
 * is, and not only the first edit's. With one Cluster edited over and over, the code that builds
 * a resend ran once, without type feedback, and V8 threw the optimized code away on the fleet's
 * first edit (sharedResendOf, "Insufficient type feedback for call").
 */
const CLUSTERS = 20;
const GATEWAY = 'switchyard-rehearsal/rehearsal';
const NAME = 'switchyard-rehearsal';
/** How long the rehearsal waits, in all, for the real server to be idle before it gives up. */
const BUSY_LIMIT_MS = 60_000;
const BUSY_WAIT_MS = 50;
/** Turns of the event loop one step may take for its responses and ACKs before the rehearsal gives up. */
const STEP_TURNS = 64;

function clusterJson(index: number, edit: number): EnvoyResource {
  return {
    '@type': TypeUrl.cluster,
    name: `${NAME}-${index}`,
    type: 'EDS',
    eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' } },
    connect_timeout: `${1 + (edit % 2)}s`,
  } as EnvoyResource;
}

function assignmentJson(index: number): EnvoyResource {
  return {
    '@type': TypeUrl.endpoint,
    cluster_name: `${NAME}-${index}`,
    endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '192.0.2.1', port_value: 8000 + index } } } }] }],
  } as EnvoyResource;
}

/**
 * A small configuration of the kinds a cluster edit touches, built as the Envoy stage builds them
 * (stand-ins for Clusters and assignments), and its edits: `edited(n)` is the configuration after
 * edit n, which changed Cluster n % CLUSTERS (each Cluster has two versions, taken in turn).
 */
function configuration(): { initial: XdsResources; edited: (edit: number) => XdsResources; planes: DataPlanes } {
  const listener = { '@type': TypeUrl.listener, name: NAME, address: { socket_address: { address: '127.0.0.1', port_value: 10080 } } } as EnvoyResource;
  const route = {
    '@type': TypeUrl.route,
    name: NAME,
    virtual_hosts: [{ name: NAME, domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: `${NAME}-0` } }] }],
  } as EnvoyResource;
  const endpoints = Array.from({ length: CLUSTERS }, (_, i) => encodedStandIn(assignmentJson(i)));
  const versions = Array.from({ length: CLUSTERS }, (_, i) => [encodedStandIn(clusterJson(i, 0)), encodedStandIn(clusterJson(i, 1))] as const);
  const clusters = versions.map(([first]) => first);
  const names = {
    listeners: [NAME],
    routes: [NAME],
    clusters: clusters.map((_, i) => `${NAME}-${i}`),
    endpoints: clusters.map((_, i) => `${NAME}-${i}`),
    secrets: [],
  };
  const planes: DataPlanes = { gateways: new Map([[GATEWAY, names]]), shared: { excluded: {}, problems: [] } };
  const base = { listeners: [listener], routes: [route], endpoints, secrets: [] };
  const current = [...clusters];
  const edits = current.map(() => 0);
  const edited = (edit: number): XdsResources => {
    const index = edit % CLUSTERS;
    const times = ++edits[index]!;
    current[index] = versions[index]![times % 2]!;
    return { ...base, clusters: [...current] };
  };
  return { initial: { ...base, clusters }, edited, planes };
}

/** A response as a stand-in client reads it: enough to ACK it. */
export interface Reply {
  typeUrl: string;
  nonce: string;
  /** version_info (SotW); a delta response's system_version_info, which its ACK does not carry. */
  version: string;
}

/** How a stand-in client speaks one protocol: its first requests and its ACKs, as the server reads them. */
export interface StandInClient<Request> {
  /** The first requests of stand-in client `id`: CDS and LDS wildcard, then EDS and RDS by name, as Envoy asks (the first names its node and Gateway). */
  firstRequests(id: number): Request[];
  /** The bytes of the ACK of `reply` (the rehearsal keeps them: a fleet's streams share their responses' nonces). */
  ackBytes(reply: Reply): Buffer;
  /** `bytes` read as the server reads a request of this protocol. */
  read(bytes: Buffer): Request;
}

const standInNode = (id: number): JsonObject => ({ id: `${NAME}-${id}`, cluster: NAME, metadata: { [GATEWAY_NODE_METADATA]: GATEWAY } });
const CLUSTER_NAMES = Array.from({ length: CLUSTERS }, (_, i) => `${NAME}-${i}`);
/** What a stand-in client subscribes to by name, per type: what its ACKs repeat in SotW. */
const NAMED: Readonly<Record<string, readonly string[]>> = { [TypeUrl.endpoint]: CLUSTER_NAMES, [TypeUrl.route]: [NAME] };

const DELTA_REQUEST = 'envoy.service.discovery.v3.DeltaDiscoveryRequest';
const SOTW_REQUEST = 'envoy.service.discovery.v3.DiscoveryRequest';

/** A delta stand-in client. */
export const DELTA_CLIENT: StandInClient<DeltaDiscoveryRequest> = {
  firstRequests: (id) =>
    ([
      { node: standInNode(id), type_url: TypeUrl.cluster },
      { type_url: TypeUrl.listener },
      { type_url: TypeUrl.endpoint, resource_names_subscribe: [...CLUSTER_NAMES] },
      { type_url: TypeUrl.route, resource_names_subscribe: [NAME] },
    ] as JsonObject[]).map((json) => decodeDeltaDiscoveryRequest(encodeMessage(DELTA_REQUEST, json))),
  ackBytes: ({ typeUrl, nonce }) => Buffer.from(encodeMessage(DELTA_REQUEST, { type_url: typeUrl, response_nonce: nonce })),
  read: (bytes) => {
    // Read as the server reads an ACK in a DATA frame (grpc-framing.ts).
    const request = deltaReplyAt(bytes, 0, bytes.length);
    if (request === undefined) throw new Error('rehearsal: an ACK the server would not read as one');
    return request;
  },
};

/** A SotW stand-in client: its ACKs carry the version and repeat the names it subscribed to, as Envoy's do. */
export const SOTW_CLIENT: StandInClient<DiscoveryRequest> = {
  firstRequests: (id) =>
    ([
      { node: standInNode(id), type_url: TypeUrl.cluster },
      { type_url: TypeUrl.listener },
      { type_url: TypeUrl.endpoint, resource_names: [...CLUSTER_NAMES] },
      { type_url: TypeUrl.route, resource_names: [NAME] },
    ] as JsonObject[]).map((json) => decodeDiscoveryRequest(encodeMessage(SOTW_REQUEST, json))),
  ackBytes: ({ typeUrl, nonce, version }) =>
    Buffer.from(encodeMessage(SOTW_REQUEST, { type_url: typeUrl, response_nonce: nonce, version_info: version, resource_names: [...(NAMED[typeUrl] ?? [])] })),
  // As the server's deserializer reads every SotW request (server.ts adsService).
  read: (bytes) => decodeDiscoveryRequest(bytes),
};

/** What a stand-in client was written and not yet ACKed. */
interface Written {
  replies: Reply[];
  flushed: (() => void)[];
}

/**
 * The version (field 1), type URL (field 4) and nonce (field 5) of each response framed in
 * `frame`: a DiscoveryResponse and a DeltaDiscoveryResponse number them alike.
 */
function repliesIn(frame: FramedMessage, into: Reply[]): void {
  const bytes = frame.pieces.length === 1 ? (frame.pieces[0] as Buffer) : Buffer.concat(frame.pieces as Buffer[], frame.byteLength);
  for (let at = 0; at + 5 <= bytes.length; ) {
    const end = at + 5 + bytes.readUInt32BE(at + 1);
    let typeUrl = '';
    let nonce = '';
    let version = '';
    for (let p = at + 5; p < end; ) {
      const [tag, afterTag] = varint(bytes, p);
      const wire = tag & 7;
      if (wire === 0) p = varint(bytes, afterTag)[1];
      else if (wire === 2) {
        const [length, start] = varint(bytes, afterTag);
        const field = tag >>> 3;
        if (field === 1) version = bytes.toString('latin1', start, start + length);
        if (field === 4) typeUrl = bytes.toString('latin1', start, start + length);
        if (field === 5) nonce = bytes.toString('latin1', start, start + length);
        p = start + length;
      } else throw new Error(`rehearsal: unexpected wire type ${wire} in a response`);
    }
    into.push({ typeUrl, nonce, version });
    at = end;
  }
}

function varint(bytes: Buffer, at: number): [number, number] {
  let value = 0;
  let shift = 0;
  for (;;) {
    const byte = bytes[at++] as number;
    value += (byte & 0x7f) * 2 ** shift;
    if (byte < 0x80) return [value, at];
    shift += 7;
  }
}

/** ACKs by response: a fleet's streams share their responses' nonces, so one ACK's bytes serve them all; each is read anew, as the server reads each. */
class Acks<Request> {
  private readonly known = new Map<string, Buffer>();

  constructor(private readonly client: StandInClient<Request>) {}

  of(reply: Reply): Request {
    const key = `${reply.typeUrl}\n${reply.nonce}\n${reply.version}`;
    let bytes = this.known.get(key);
    if (bytes === undefined) {
      bytes = this.client.ackBytes(reply);
      this.known.set(key, bytes);
    }
    return this.client.read(bytes);
  }
}

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms).unref());

/**
 * Runs the rehearsal on `streams` (see the top of this file). Resolves when done or given up;
 * never throws (a rehearsal that fails costs the first edit its speed, nothing else). A completed
 * rehearsal ends with `collect` (collectAfterPushRehearsal: a full GC when the heap is small and a
 * core is free); one given up does not (the real server had work).
 */
export async function rehearsePushes<Request>(
  streams: RehearsalStreams<Request>,
  sizes: { streams?: number; edits?: number } = {},
  collect: () => CollectionResult | undefined = collectAfterPushRehearsal,
): Promise<RehearsalResult> {
  const result: RehearsalResult = { pushed: 0, edits: 0, completed: false };
  const streamCount = sizes.streams ?? REHEARSAL_STREAMS;
  const editCount = sizes.edits ?? REHEARSAL_EDITS;
  let waitedMs = 0;
  const whenIdle = async (): Promise<boolean> => {
    while (streams.busy()) {
      if (waitedMs >= BUSY_LIMIT_MS || streams.cancelled()) return false;
      await sleep(BUSY_WAIT_MS);
      waitedMs += BUSY_WAIT_MS;
    }
    return true;
  };
  try {
    const { initial, edited, planes } = configuration();
    const acks = new Acks(streams.client);
    const clients: { receive: (request: Request) => void; written: Written }[] = [];
    for (let i = 0; i < streamCount; i++) {
      const written: Written = { replies: [], flushed: [] };
      const transport: DirectCall = {
        write: (message, flushed) => {
          repliesIn(message, written.replies);
          written.flushed.push(flushed);
        },
      };
      clients.push({ receive: streams.open(transport), written });
    }
    /** Turns until every stream has been written what is due and has ACKed it; the number of responses. */
    const settle = async (): Promise<number | undefined> => {
      let replies = 0;
      for (let turn = 0; turn < STEP_TURNS; turn++) {
        await nextTurn();
        let quiet = true;
        for (const { receive, written } of clients) {
          // The transport took the writes (the server's next push of a type waits for it), then the client reads and ACKs them.
          for (const flushed of written.flushed.splice(0)) flushed();
          for (const reply of written.replies.splice(0)) {
            quiet = false;
            replies++;
            receive(acks.of(reply));
          }
        }
        if (quiet && streams.settled()) return replies;
      }
      return undefined;
    };
    streams.cache.setResources(initial, planes);
    if (!(await whenIdle())) return result;
    for (let i = 0; i < clients.length; i++) for (const request of streams.client.firstRequests(i)) clients[i]?.receive(request);
    if ((await settle()) === undefined) return result;
    for (let edit = 1; edit <= editCount; edit++) {
      if (!(await whenIdle()) || streams.cancelled()) return result;
      streams.cache.setResources(edited(edit), planes);
      const replies = await settle();
      // Each stream is pushed the Cluster and the assignment it makes Envoy wait for.
      if (replies === undefined || replies < clients.length * 2) return result;
      result.pushed += replies;
      result.edits++;
    }
    result.completed = true;
    // The fleet's garbage and the rehearsal's own, collected while the server idles (see
    // collectAfterPushRehearsal), not by V8's marking during the fleet's first edits.
    const collected = collect();
    if (collected !== undefined) result.collected = collectionLogFields(collected);
    return result;
  } catch {
    return result;
  }
  // The private server and its streams are not ended: they hold no socket and no timer, and are
  // garbage once this returns, while ending them would change fields (a call's end, the server's
  // stop) that the compiled code of the real streams depends on, and V8 would throw it away.
}
