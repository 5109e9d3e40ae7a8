import { DRILL_USAGE } from './drill-usage.js';

/** Each command's usage: printed by `switchyard CMD --help` and after a usage error of CMD. */
export const COMMAND_USAGE: Readonly<Record<string, string>> = {
  serve: `  switchyard serve --config PATH [--xds-port 18000] [--xds-host 0.0.0.0] [--metrics-port 9090]
                   [--metrics-host 0.0.0.0] [--listener-address 0.0.0.0] [--log-level info]
                   [--ai-extension-port 18001] [--ai-extension-address 127.0.0.1] [--no-ai-extension]
                   [--xds-tls-dir DIR] [--state-dir DIR] [--max-document-size 1.5Mi]
                   [--max-file-size 64Mi] [--max-config-size 128Mi] [--access-log json|off]
                   [--infrastructure host|none | --no-envoy] [--envoy-path PATH] [--envoy-concurrency N]
                   [--drain-time 60s] [--load-report-interval 2s] [--health-window 1m] [--otlp-endpoint URL]
                   [--limits-redis redis://HOST:PORT] [--no-ai-warmup]
      Watch PATH (a file or directory of Kubernetes-style manifests), serve Envoy over ADS, and run
      the AI extension (ext_proc) as a process of its own that keeps serving if serve dies; a
      restarted serve adopts it through --state-dir (default: per config path, under
      $XDG_RUNTIME_DIR or a 0700 temp directory). With the Envoys serve runs, they reach the
      extension over a Unix socket in that directory (no TCP port: its answers carry provider
      keys); with --no-envoy, or when --ai-extension-address or --ai-extension-port is given,
      Envoy dials it at --ai-extension-address:--ai-extension-port.
      A document, a file or the whole of PATH over its size limit is refused with an error naming
      it (sizes in bytes, or with Ki, Mi, Gi); what was served before keeps being served.
      --infrastructure host (the default when an Envoy binary is found: --envoy-path, else
      .toolchain/bin/envoy, else envoy on PATH) runs one Envoy per Gateway, each on a loopback
      address of its own (spec.addresses in 127.0.0.0/8, else 127.0.10.1 upwards, kept across
      restarts), restarted when it exits; its address is in the Gateway's status.addresses and
      its admin URL in /statusz. --no-envoy (--infrastructure none) leaves Envoy to you.
      An Envoy serve stops (serve stops, its Gateway is gone or moves) drains first: its listeners
      stop accepting at once, requests in flight get up to --drain-time (default 60s, 0s: none) to
      end, then it gets SIGTERM.
      --xds-tls-dir DIR serves xDS over TLS: DIR holds tls.crt and tls.key (like a kubernetes.io/tls
      Secret) and, optionally, ca.crt: client certificates are then required and verified (mTLS).
      --no-ai-warmup: do not send the warm-up requests that keep Envoy connected to every member
      of AI Backends whose attempts the extension may answer itself (skips, drills), after each
      configuration and every 20 minutes; without them such a skip to a member Envoy has no
      connection to waits for Envoy's connect timeout (5 s).
`,
  'ai-extension': `  switchyard ai-extension (--xds HOST:PORT [--xds-tls-dir DIR] | --xds-socket PATH)
                          [--port 18001 [--host 0.0.0.0] | --listen-socket PATH] [--metrics-port 9091]
                          [--log-level info] [--orphan-grace 10m]
                          [--otlp-endpoint URL] [--limits-redis redis://HOST:PORT] [--warmup-key-file PATH]
                          [--warmup-envoy-admin http://127.0.0.1:19000 | --warmup-envoys-dir DIR]
                          [--drain-envoy-admin http://127.0.0.1:19000 [--drain-wait 60s]]
      Run only the AI extension next to Envoy; provider keys come from the controller at --xds,
      which sends them only over mTLS to a client certificate of role ai-extension (URI SAN
      spiffe://switchyard.dev/role/ai-extension): --xds-tls-dir holds ca.crt (verifies the
      controller) and that certificate as tls.crt/tls.key; they are kept while it is away.
      --listen-socket: serve ext_proc on this Unix socket (a free path) instead of TCP; Envoy must
      run as a user who may connect to it (what serve does with the Envoys it runs). --orphan-grace: exit once neither the
      controller nor Envoy has been seen for that long (default: never). --limits-redis: the Redis
      where every extension (every Envoy replica) shares members' per-minute limit counts (default:
      counted in this process only); while it is unreachable limits are not enforced (fail open).
      --warmup-key-file: the key serve signs its warm-up requests with (serve passes it to the
      extension it runs; default: a random key, so only an extension inside serve is warmed).
      --warmup-envoy-admin: the admin API of the Envoy beside this extension (same pod): the
      extension then warms that Envoy's AI members itself, as serve does for its own, with
      requests signed by its own key; what to warm is read from the admin API every 15 s.
      --warmup-envoys-dir: the same for every Envoy \`controller --infrastructure host\` runs on this
      machine: DIR is the envoy/ folder of its --state-dir (each Envoy's admin address is there).
      --drain-envoy-admin URL [--drain-wait 60s]: GET /envoy/drained on the metrics port waits (at
      most --drain-wait) until that Envoy's listeners are stopped and nothing is in flight: a data
      plane pod's Envoy container waits there in its preStop while \`switchyard envoy-drain\` drains it.
`,
  controller: `  switchyard controller [--kubeconfig PATH] [--namespaces a,b] [--xds-port 18000] [--xds-host 0.0.0.0]
                        [--metrics-port 9090] [--metrics-host 0.0.0.0] [--listener-address 0.0.0.0]
                        [--ai-extension-address 127.0.0.1] [--ai-extension-port 18001]
                        [--lease-namespace NS] [--no-leader-election] [--xds-tls-dir DIR] [--log-level info]
                        [--access-log json|off] [--xds-tls-secrets PREFIX --xds-tls-dns NAMES]
                        [--infrastructure none|host] [--envoy-path PATH] [--envoy-concurrency N] [--state-dir DIR]
                        [--drain-time 60s] [--data-plane FILE] [--load-report-interval 2s] [--health-window 1m]
                        [--otlp-endpoint URL]
      Watch a Kubernetes API server (--kubeconfig, else $KUBECONFIG, the in-cluster service account,
      ~/.kube/config), serve Envoy over ADS; the replica holding the Lease writes status and Events
      (with --no-leader-election this replica writes them: run only one). The AI extension runs next
      to Envoy (switchyard ai-extension); --ai-extension-* say where Envoy dials it. --xds-tls-dir as
      for serve; --xds-tls-secrets PREFIX: the controller issues and renews the CA and a certificate
      per role itself, in Secrets PREFIX-{ca,controller,envoy,ai-extension} of its namespace, its
      own naming NAMES (--xds-tls-dns). --infrastructure host runs one Envoy per Gateway on this
      machine, as serve does (default none; each drains for up to --drain-time before it stops);
      they reach the AI extension on STATE_DIR/ext-proc.sock (0700 directory, no TCP port; its
      answers carry provider keys) unless --ai-extension-* are given: run it as the same user with
      \`switchyard ai-extension --xds-socket STATE_DIR/ads.sock --listen-socket STATE_DIR/ext-proc.sock
      --warmup-envoys-dir STATE_DIR/envoy\` (the controller logs the line). --data-plane FILE (JSON: namespace, xds, envoy,
      aiExtension; the chart writes it): the leader creates an Envoy Deployment, Service,
      ServiceAccount and ConfigMap per Gateway, and Gateway status.addresses come from that Service.
`,
  certs: `  switchyard certs --out DIR [--dns NAMES]
      Issue (or renew, when in the last third of their lifetime) an xDS CA and one certificate per
      role in DIR/{ca,controller,envoy,ai-extension}, each laid out for --xds-tls-dir; NAMES
      (comma-separated, default localhost) are the names clients dial the controller by.
`,
  translate: `  switchyard translate -f PATH [-o json|yaml] [--allow-problems] [--access-log json|off]
                       [--max-document-size ...] [--max-file-size ...] [--max-config-size ...]
      Print what would be served (secrets redacted) and every object's status. Exits 1, naming
      them on stderr, when an object has a condition that is False or the configuration has
      problems; --allow-problems exits 0 all the same.
`,
  status: `  switchyard status (-f PATH | --from http://HOST:9090 | --kubeconfig PATH [--namespaces a,b])
                    [-o table|json|yaml]
      Every Gateway, HTTPRoute and Backend with its conditions; for Backends, each priority and
      member (usable, or why not). -f translates PATH as translate does; --from reads a running
      serve or controller's /statusz (its --metrics-port); --kubeconfig reads .status from the API
      server (all namespaces, or --namespaces a,b).
`,
  drill: DRILL_USAGE,
  bootstrap: `  switchyard bootstrap --xds HOST:PORT --node-id ID [--gateway NS/NAME] [--admin-port 9901] [--delta]
                       [--xds-tls-dir DIR] [--no-load-reporting] [-o json|yaml]
      Print an Envoy bootstrap that connects a stock Envoy to the controller; with --xds-tls-dir
      (as Envoy sees it) over mTLS: ca.crt verifies the controller, tls.crt/tls.key are Envoy's.
      --gateway: this Envoy is the data plane of that one Gateway and gets only its configuration;
      without it, it serves every Gateway (a port two Gateways use goes to the older one).
`,
  'envoy-drain': `  switchyard envoy-drain --admin http://127.0.0.1:19000 [--accept-time 0s] [--drain-time 60s]
      Drain the Envoy whose admin API is at --admin before it is stopped (a data plane pod's
      preStop runs it; the Envoy image has no HTTP client): every connection is told to close at
      its next response, listeners keep accepting for --accept-time (while a load balancer stops
      sending here) and then stop, and requests in flight get up to --drain-time to end. Exits 0
      once none is left (or Envoy is gone), 1 when the drain time ran out first.
`,
  'drain-sidecar': `  switchyard drain-sidecar --admin http://127.0.0.1:19000 [--port 19002] [--host 0.0.0.0]
                           [--drain-wait 60s] [--log-level info]
      Run beside an Envoy whose pod has no AI extension (where there is one, the extension does
      this), until SIGTERM: GET /envoy/drained on --port waits (at most --drain-wait) until the
      Envoy at --admin has stopped its listeners and has nothing in flight, and starts nothing;
      /healthz and /readyz answer the probes. The pod's Envoy container waits on /envoy/drained in
      its preStop while this container's preStop runs \`switchyard envoy-drain\`, so Envoy gets
      SIGTERM once its requests in flight have ended. It holds no key and reaches no controller.
`,
  version: `  switchyard version [-o json|yaml]   (also: switchyard --version)
      Print Switchyard's version, the Node version it runs on and the Envoy version it expects.
`,
};

export const USAGE = `switchyard: Gateway API and AI Backends to Envoy, over xDS

Usage:
${Object.values(COMMAND_USAGE).join('')}
  --xds-tls-dir DIR on serve and controller serves xDS over TLS: DIR holds tls.crt and tls.key
  (like a kubernetes.io/tls Secret) and, optionally, ca.crt: client certificates are then
  required and verified against it (mTLS), and each stream's identity is the role in its
  certificate's URI SAN (spiffe://switchyard.dev/role/{controller,envoy,ai-extension}); provider
  keys go to the ai-extension role only.
  --access-log json (default) makes every Gateway listener write one JSON line per request to
  Envoy's stdout: method, path (no query), response code and flags, route, Backend, the final
  attempt's member, priority and host, the attempt count, durations, request id; never a header
  that can carry a key. --access-log off writes none.
  --otlp-endpoint URL (serve, controller, ai-extension; default: off) turns tracing on: every
  Gateway listener's Envoy and the AI extension send OpenTelemetry spans over OTLP/gRPC to URL
  (http://HOST:4317, or https:// for TLS verified against the system CAs): Envoy one span per
  request and per attempt, the extension one GenAI span per attempt (member, priority, models,
  tokens, failure cause), all in the request's trace. No header or key is ever put in a span.
  --load-report-interval: how often each Envoy reports its per-endpoint load (LRS; the bootstrap
  enables it unless --no-load-reporting). --health-window: the sliding window over which Backend
  status counts each member's requests and errors and decides Degraded; status follows it at most
  every sixth of the window (10 s by default).

Run "switchyard COMMAND --help" for one command's usage.
`;

export function commandUsage(command: string): string {
  const usage = COMMAND_USAGE[command];
  return usage === undefined ? USAGE : `Usage:\n${usage}`;
}

/** The synopsis of a command (its usage without the description), shown after a usage error. */
export function commandSynopsis(command: string): string {
  const usage = COMMAND_USAGE[command] ?? '';
  const lines = usage.split('\n');
  // Descriptions are indented six spaces; a synopsis' continuation lines, more.
  const end = lines.findIndex((l) => /^ {6}\S/.test(l));
  return `Usage:\n${lines.slice(0, end < 0 ? lines.length : end).join('\n')}\n`;
}
