import { TypeUrl } from '../envoy/resources.js';
import type { NodeInfo } from './wire.js';

/** The node cluster the AI extension announces: the only client that needs provider keys. */
export const AI_EXTENSION_NODE_CLUSTER = 'switchyard-ai-extension';

/** Provider credentials are SDS secrets under this prefix (src/translate/credentials.ts names them). */
const CREDENTIAL_PREFIX = 'credential/';

/**
 * Which client may receive a resource. Provider keys go to the AI extension only: an Envoy never
 * needs them, and one that asked (a hand-written SDS reference) must not get them. Node identity
 * is what the client says; the boundary that holds against a hostile client is xDS mTLS plus a
 * network policy on the xDS port (the chart has both).
 */
export function mayReceive(node: NodeInfo | undefined, typeUrl: string, name: string): boolean {
  if (typeUrl === TypeUrl.secret && name.startsWith(CREDENTIAL_PREFIX)) return node?.cluster === AI_EXTENSION_NODE_CLUSTER;
  return servesGateway(node, typeUrl, name);
}

/**
 * An Envoy that names its Gateway (node metadata, see buildBootstrap) gets only that Gateway's
 * listeners and routes, so that Envoys of Gateways on the same port do not bind each other's
 * addresses. Listener and RouteConfiguration names start with "<namespace>/<gateway>/".
 * Clusters, endpoints and certificates stay shared: unused ones cost an Envoy nothing.
 */
export function servesGateway(node: NodeInfo | undefined, typeUrl: string, name: string): boolean {
  if (node?.gateway === undefined || (typeUrl !== TypeUrl.listener && typeUrl !== TypeUrl.route)) return true;
  return name.startsWith(`${node.gateway}/`);
}
