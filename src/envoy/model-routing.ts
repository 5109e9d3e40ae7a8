import { MODEL_HEADER } from '../api/models.js';
import type { ListenerIR } from '../ir/model.js';
import { ANY, METADATA_NAMESPACE } from './names.js';
import type { JsonObject } from './resources.js';

/**
 * Routing by the `model` of a JSON request body, on listeners whose routes match MODEL_HEADER.
 * Seen on Envoy 1.40 (src/ai-extension/README.md, "Model routing"): json_to_metadata reads the
 * body's model into dynamic metadata and clears the route cache; header_mutation, the next
 * filter, copies it into MODEL_HEADER before the router picks the route again; a client's own
 * MODEL_HEADER is removed before the first route lookup (early header mutation), so a request
 * without a body model cannot pick a model route by sending the header itself.
 */

const MODEL_METADATA_KEY = 'model';

/**
 * json_to_metadata buffers the body under the limit of the route Envoy picked from the headers
 * alone, and with MODEL_HEADER removed no model rule matches then: the listener's own limit
 * (1 MiB by default) applied, and a larger chat request answered 413 before its model was read.
 * A model-routing listener gets the largest limit of the AI clusters its routes reach.
 */
export function modelRoutingBufferLimit(l: ListenerIR, bodyLimits: ReadonlyMap<string, number> | undefined): number | undefined {
  if (!usesModelRouting(l) || bodyLimits === undefined) return undefined;
  let limit = 0;
  for (const vh of l.virtualHosts) {
    for (const r of vh.routes) if (r.action.kind === 'forward') for (const c of r.action.clusters) limit = Math.max(limit, bodyLimits.get(c.name) ?? 0);
  }
  return limit > 0 ? limit : undefined;
}

export function usesModelRouting(l: ListenerIR): boolean {
  return l.virtualHosts.some((vh) => vh.routes.some((r) => r.match.headers.some((h) => h.name === MODEL_HEADER)));
}

export function modelHeaderRemoval(): JsonObject {
  return {
    name: 'envoy.http.early_header_mutation.header_mutation',
    typed_config: { '@type': ANY.earlyHeaderMutation, mutations: [{ remove: MODEL_HEADER }] },
  };
}

/** The HTTP filters that set MODEL_HEADER from the body; they go before the router. */
export function modelHeaderFilters(): JsonObject[] {
  return [
    {
      name: 'envoy.filters.http.json_to_metadata',
      typed_config: {
        '@type': ANY.jsonToMetadata,
        request_rules: {
          rules: [{ selectors: [{ key: MODEL_METADATA_KEY }], on_present: { metadata_namespace: METADATA_NAMESPACE, key: MODEL_METADATA_KEY, type: 'STRING' } }],
          // allow_content_types compares the whole header: "application/json; charset=utf-8" (many
          // clients) would not be read. The regex must match all of it; no content-type at all is read too.
          allow_content_types_regex: { regex: '(?i)application/json\\s*(;.*)?' },
          allow_empty_content_type: true,
        },
      },
    },
    {
      name: 'envoy.filters.http.header_mutation',
      typed_config: {
        '@type': ANY.headerMutation,
        mutations: {
          request_mutations: [{
            // An absent model expands to "", and an empty value is not added (keep_empty_value false).
            append: { header: { key: MODEL_HEADER, value: `%DYNAMIC_METADATA(${METADATA_NAMESPACE}:${MODEL_METADATA_KEY})%` }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' },
          }],
        },
      },
    },
  ];
}

/**
 * No route for the model the client named: OpenAI's 404 (NotFoundError in its SDKs) instead of
 * Envoy's empty one. A request without a model keeps Gateway API's plain 404.
 */
export function unknownModelReply(): JsonObject {
  return {
    filter: {
      and_filter: {
        filters: [
          { response_flag_filter: { flags: ['NR'] } },
          { header_filter: { header: { name: MODEL_HEADER, present_match: true } } },
        ],
      },
    },
    status_code: 404,
    body_format_override: {
      json_format: {
        error: {
          message: `The model \`%REQ(${MODEL_HEADER})%\` does not exist or is not served by this gateway for %REQ(:method)% %REQ(:path)%; GET /v1/models lists the models it serves.`,
          type: 'invalid_request_error',
          param: 'model',
          code: 'model_not_found',
        },
      },
    },
  };
}
