import { createHash } from 'node:crypto';
import { posix } from 'node:path';
import { z } from 'zod';
import { buildBootstrap, xdsTlsSdsFiles, type XdsTlsFiles } from '../envoy/bootstrap.js';
import { readinessResources } from '../envoy/readiness.js';
import type { JsonObject } from '../envoy/resources.js';
import type { GatewayIR } from '../ir/model.js';
import type { GatewayAddress } from '../translate/status.js';

/**
 * The Kubernetes objects of one Gateway's data plane (ServiceAccount, bootstrap ConfigMap,
 * Deployment of Envoy with the AI extension, or else the drain container, beside it, Service), as
 * plain JSON for server-side apply. Pure: the same Gateway and settings give the same objects.
 *
 * They live in the controller's namespace, not the Gateway's: the pod mounts the envoy and
 * ai-extension certificate Secrets the controller keeps there, and a Secret cannot be mounted
 * across namespaces. Copying them into every Gateway namespace would hand the ai-extension
 * certificate (the identity provider keys are served to) to whoever may read Secrets there.
 * Without ownerReferences (they cannot cross namespaces) the leader deletes a data plane whose
 * Gateway is gone, found by its labels.
 */

const k8sName = z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'a lowercase DNS label');
const port = z.number().int().min(1).max(65535);
const jsonRecord = z.record(z.string(), z.json());

/** What the controller is told about the data planes it creates (`controller --data-plane FILE`). */
export const DataPlaneSettingsSchema = z.strictObject({
  /** Where data planes are created: the controller's namespace. */
  namespace: k8sName,
  /** The controller's xDS Service as Envoy and the AI extension dial it. */
  xds: z.strictObject({
    host: z.string().min(1),
    port,
    /** pkiNames(prefix): Envoy mounts `<prefix>-envoy`, the AI extension `<prefix>-ai-extension`. Absent: plaintext xDS. */
    tlsSecretPrefix: k8sName.optional(),
  }),
  envoy: z.strictObject({
    image: z.string().min(1),
    replicas: z.number().int().min(0).default(1),
    adminPort: port.default(19000),
    /** Where the readiness probe reads admin /ready (src/envoy/readiness.ts). */
    readyPort: port.default(19001),
    logLevel: z.enum(['trace', 'debug', 'info', 'warning', 'warn', 'error', 'critical', 'off']).default('info'),
    resources: jsonRecord.optional(),
    /**
     * When a pod stops (rolling upgrade, scale-down): how long its listeners keep accepting, each
     * connection told to close, while the Service stops sending to it (endpoint removal takes seconds).
     */
    drainAcceptSeconds: z.number().int().min(0).max(300).default(5),
    /** Then how long requests in flight (AI streams run for minutes) get to end before SIGTERM. */
    drainTimeoutSeconds: z.number().int().min(0).max(3600).default(60),
  }),
  /** The AI extension container beside Envoy; absent: none (run it yourself). */
  aiExtension: z.strictObject({
    image: z.string().min(1),
    imagePullPolicy: z.enum(['Always', 'IfNotPresent', 'Never']).optional(),
    port,
    metricsPort: port,
    logLevel: z.string().default('info'),
    resources: jsonRecord.optional(),
    /** OTLP/gRPC receiver for its spans (--otlp-endpoint); absent: tracing off. */
    otlpEndpoint: z.string().url().optional(),
    /**
     * redis://HOST:PORT where every extension of every data plane counts pool members' limits
     * (--limits-redis); absent: each pod counts alone, so a Backend's limit holds per pod.
     */
    limitsRedis: z.string().regex(/^redis:\/\/[^/\s]+/, 'redis://HOST:PORT, e.g. redis://redis.switchyard-system:6379').optional(),
  }).optional(),
  /**
   * Beside an Envoy without the AI extension (aiExtension absent): a small container of the
   * Switchyard image (`switchyard drain-sidecar`) that drains Envoy when the pod stops, as the
   * extension does; the Envoy image has no HTTP client to do it. Absent: such pods stop undrained.
   */
  drainSidecar: z.strictObject({
    image: z.string().min(1),
    imagePullPolicy: z.enum(['Always', 'IfNotPresent', 'Never']).optional(),
    /** Where it serves /envoy/drained (Envoy's preStop) and /readyz, on the pod's address. */
    port: port.default(19002),
    resources: jsonRecord.optional(),
  }).optional(),
  podSecurityContext: jsonRecord.optional(),
  securityContext: jsonRecord.optional(),
  imagePullSecrets: z.array(z.strictObject({ name: z.string().min(1) })).default([]),
  nodeSelector: z.record(z.string(), z.string()).default({}),
  tolerations: z.array(jsonRecord).default([]),
}).superRefine((s, ctx) => {
  // One network namespace per pod: every port a container of it listens on must differ.
  const taken = podPorts(s);
  taken.forEach(([field, value], i) => {
    const first = taken.findIndex(([, v]) => v === value);
    if (first < i) ctx.addIssue({ code: 'custom', path: field.split('.'), message: `${value} is also ${taken[first]?.[0] ?? ''}; the containers of a data plane pod share its ports, give each its own` });
  });
});

export type DataPlaneSettings = z.infer<typeof DataPlaneSettingsSchema>;

/**
 * The ports the containers of a data plane pod listen on besides the Gateway's listeners, by
 * settings field: Envoy's admin and readiness, the AI extension's, else the drain container's.
 */
function podPorts(s: { envoy: { adminPort: number; readyPort: number }; aiExtension?: { port: number; metricsPort: number } | undefined; drainSidecar?: { port: number } | undefined }): [string, number][] {
  const taken: [string, number][] = [['envoy.adminPort', s.envoy.adminPort], ['envoy.readyPort', s.envoy.readyPort]];
  if (s.aiExtension) taken.push(['aiExtension.port', s.aiExtension.port], ['aiExtension.metricsPort', s.aiExtension.metricsPort]);
  else if (s.drainSidecar) taken.push(['drainSidecar.port', s.drainSidecar.port]);
  return taken;
}

/** Reads the settings file's JSON; the error names the file, the field and what is expected. */
export function parseDataPlaneSettings(json: unknown, source: string): DataPlaneSettings {
  const r = DataPlaneSettingsSchema.safeParse(json);
  if (r.success) return r.data;
  const issues = r.error.issues.map((i) => `${i.path.length > 0 ? i.path.join('.') : '(top level)'}: ${i.message}`);
  throw new Error(`${source}: invalid data plane settings: ${issues.join('; ')}`);
}

export const MANAGED_BY = 'switchyard';
/** On every object of a data plane: which Gateway it serves, "namespace/name". */
export const GATEWAY_ANNOTATION = 'switchyard.dev/gateway';
/** On every object and pod of a data plane: the data plane's name (the pod selector). */
export const DATA_PLANE_LABEL = 'switchyard.dev/data-plane';
/** Gateway API's label for objects created for a Gateway (GEP-1762). */
export const GATEWAY_NAME_LABEL = 'gateway.networking.k8s.io/gateway-name';
/** In spec.infrastructure.annotations: ClusterIP, NodePort or LoadBalancer (the default). */
export const SERVICE_TYPE_ANNOTATION = 'switchyard.dev/service-type';

export const SERVICE_TYPES = ['ClusterIP', 'NodePort', 'LoadBalancer'] as const;
export type ServiceType = (typeof SERVICE_TYPES)[number];

const TLS_MOUNT = '/etc/switchyard/xds-tls';
/** The CLI in the image (its entrypoint, README "The image"; no shell, no PATH lookup needed), for a preStop exec. */
const IMAGE_CLI = ['/usr/local/bin/node', '/app/bin/switchyard.js'];
/** What a stopping pod needs beyond its drain: the preStop's own start, Envoy's exit. */
const STOP_MARGIN_SECONDS = 15;
const BOOTSTRAP_MOUNT = '/etc/envoy';

export function gatewayKey(g: { namespace: string; name: string }): string {
  return `${g.namespace}/${g.name}`;
}

/**
 * `envoy-<namespace>-<name>-<hash>`: unique per Gateway in one namespace, a DNS-1035 label (a
 * Service name) of at most 63 characters; the hash keeps truncated names apart.
 */
export function dataPlaneName(g: { namespace: string; name: string }): string {
  const hash = createHash('sha256').update(gatewayKey(g)).digest('hex').slice(0, 8);
  const base = `envoy-${g.namespace}-${g.name}`.replace(/[^a-z0-9-]/g, '-').slice(0, 63 - 9).replace(/-+$/, '');
  return `${base}-${hash}`;
}

/** The Service type a Gateway asks for, or an error naming the field and the fix. */
export function serviceTypeOf(g: GatewayIR): { type: ServiceType } | { error: string } {
  const asked = g.infrastructure?.annotations[SERVICE_TYPE_ANNOTATION];
  if (asked === undefined) return { type: 'LoadBalancer' };
  if ((SERVICE_TYPES as readonly string[]).includes(asked)) return { type: asked as ServiceType };
  return { error: `Gateway ${gatewayKey(g)}: spec.infrastructure.annotations["${SERVICE_TYPE_ANNOTATION}"] is "${asked}"; use one of ${SERVICE_TYPES.join(', ')}` };
}

function labelsFor(g: GatewayIR, name: string): Record<string, string> {
  return {
    ...(g.infrastructure?.labels ?? {}),
    'app.kubernetes.io/name': 'envoy',
    'app.kubernetes.io/component': 'data-plane',
    'app.kubernetes.io/managed-by': MANAGED_BY,
    [DATA_PLANE_LABEL]: name,
    // Label values are at most 63 characters; Gateway names may be longer.
    ...(g.name.length <= 63 ? { [GATEWAY_NAME_LABEL]: g.name } : {}),
  };
}

function annotationsFor(g: GatewayIR): Record<string, string> {
  return { ...(g.infrastructure?.annotations ?? {}), [GATEWAY_ANNOTATION]: gatewayKey(g) };
}

function metadata(g: GatewayIR, name: string, namespace: string): JsonObject {
  return { name, namespace, labels: labelsFor(g, name), annotations: annotationsFor(g) };
}

/** The bootstrap files Envoy reads from its ConfigMap. */
export function bootstrapFiles(g: GatewayIR, s: DataPlaneSettings): Record<string, string> {
  const tls: XdsTlsFiles | undefined = s.xds.tlsSecretPrefix === undefined ? undefined : {
    caFile: posix.join(TLS_MOUNT, 'ca.crt'),
    certFile: posix.join(TLS_MOUNT, 'tls.crt'),
    keyFile: posix.join(TLS_MOUNT, 'tls.key'),
    sdsDir: BOOTSTRAP_MOUNT,
  };
  const bootstrap = buildBootstrap({
    xds: { host: s.xds.host, port: s.xds.port },
    // Replaced by --service-node (the pod name), so every Envoy of the fleet has its own id.
    nodeId: dataPlaneName(g),
    gateway: gatewayKey(g),
    adminPort: s.envoy.adminPort,
    ...(tls ? { xdsTls: tls } : {}),
  });
  const ready = readinessResources(s.envoy.adminPort, s.envoy.readyPort);
  const statics = bootstrap['static_resources'] as { clusters: JsonObject[]; listeners?: JsonObject[] };
  statics.clusters.push(ready.cluster);
  statics.listeners = [...(statics.listeners ?? []), ready.listener];
  const files: Record<string, string> = { 'envoy.json': JSON.stringify(bootstrap, null, 2) };
  if (tls) for (const [file, body] of Object.entries(xdsTlsSdsFiles(tls))) files[file] = JSON.stringify(body);
  return files;
}

/** Listener ports of the Gateway, ascending, without duplicates. */
function uniquePorts(ports: readonly number[]): number[] {
  return [...new Set(ports)].sort((a, b) => a - b);
}

export interface DataPlaneObjects {
  serviceAccount: JsonObject;
  configMap: JsonObject;
  deployment: JsonObject;
  /** Absent while the Gateway has no listener to expose (a Service needs a port). */
  service?: JsonObject;
  /** What the Gateway asked for and cannot get, each naming the field and the fix. */
  problems: string[];
}

/** Every object of one Gateway's data plane; `ports` are its served listener ports. */
export function dataPlaneObjects(g: GatewayIR, ports: readonly number[], s: DataPlaneSettings): DataPlaneObjects {
  const name = dataPlaneName(g);
  const ns = s.namespace;
  const problems: string[] = [];
  const listenerPorts = uniquePorts(ports);
  for (const [field, taken] of podPorts(s)) {
    // Envoy could not bind that listener (or the container of ours its port): the pod shares one network.
    if (listenerPorts.includes(taken)) problems.push(`Gateway ${gatewayKey(g)}: a listener's port ${taken} is taken in its data plane pod by ${field} (the controller's data plane settings); give the listener (spec.listeners[].port) another port, or move ${field}`);
  }
  const files = bootstrapFiles(g, s);
  const params = g.infrastructure?.parametersRef;
  if (params) problems.push(`Gateway ${gatewayKey(g)}: spec.infrastructure.parametersRef (${params.kind} ${params.name}) is not read by Switchyard's Kubernetes data plane; set the Service type with spec.infrastructure.annotations["${SERVICE_TYPE_ANNOTATION}"] and remove parametersRef`);
  const bootstrapHash = createHash('sha256').update(JSON.stringify(files)).digest('hex').slice(0, 16);

  const serviceAccount: JsonObject = { apiVersion: 'v1', kind: 'ServiceAccount', metadata: metadata(g, name, ns), automountServiceAccountToken: false };
  const configMap: JsonObject = { apiVersion: 'v1', kind: 'ConfigMap', metadata: metadata(g, name, ns), data: files };

  const tlsPrefix = s.xds.tlsSecretPrefix;
  const envoy: JsonObject = {
    name: 'envoy',
    image: s.envoy.image,
    // Access log lines reach stdout within a second (Envoy's default buffers them for 10 s).
    // A drain tells every connection to close at its next response at once (src/infrastructure/envoy-drain.ts).
    args: ['-c', posix.join(BOOTSTRAP_MOUNT, 'envoy.json'), '--service-node', '$(POD_NAME)', '--log-level', s.envoy.logLevel, '--file-flush-interval-msec', '1000', '--drain-strategy', 'immediate'],
    env: [{ name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }],
    ports: [
      ...listenerPorts.map((p) => ({ name: `listener-${p}`.slice(0, 15), containerPort: p, protocol: 'TCP' })),
      { name: 'ready', containerPort: s.envoy.readyPort, protocol: 'TCP' },
    ],
    readinessProbe: { httpGet: { path: '/ready', port: 'ready' }, periodSeconds: 5 },
    ...(s.envoy.resources ? { resources: s.envoy.resources } : {}),
    ...(s.securityContext ? { securityContext: s.securityContext } : {}),
    volumeMounts: [
      { name: 'bootstrap', mountPath: BOOTSTRAP_MOUNT, readOnly: true },
      // Envoy's own certificate (role envoy): it gets its configuration, never a provider key.
      ...(tlsPrefix !== undefined ? [{ name: 'xds-tls', mountPath: TLS_MOUNT, readOnly: true }] : []),
    ],
  };
  const containers: JsonObject[] = [envoy];
  const ai = s.aiExtension;
  const adminUrl = `http://127.0.0.1:${s.envoy.adminPort}`;
  const drainSeconds = s.envoy.drainAcceptSeconds + s.envoy.drainTimeoutSeconds;
  // A stopping pod drains its Envoy before SIGTERM. Envoy's image has no HTTP client to drive its
  // admin API, so a container of ours (the AI extension, else the drain container) runs the drain
  // in its preStop, while Envoy's preStop waits on that container's /envoy/drained (which starts
  // nothing: anyone reaching the port can only wait).
  const drainPreStop = { exec: { command: [...IMAGE_CLI, 'envoy-drain', '--admin', adminUrl, '--accept-time', `${s.envoy.drainAcceptSeconds}s`, '--drain-time', `${s.envoy.drainTimeoutSeconds}s`] } };
  // kubelet resolves a hook's named port among the ports of the hook's own container only
  // (k8s.io/kubernetes pkg/probe/util.go, ResolveContainerPort): a name from the other container
  // fails the hook (FailedPreStopHook) and Envoy is stopped at once. Hence the number.
  const envoyWaitsOn = (waitPort: number): JsonObject => ({ preStop: { httpGet: { path: '/envoy/drained', port: waitPort } } });
  const drainWait = `--drain-wait=${drainSeconds + 5}s`;
  if (ai) {
    // The extension drains (and so lives on for the requests in flight, which need it).
    envoy['lifecycle'] = envoyWaitsOn(ai.metricsPort);
    containers.push({
      name: 'ai-extension',
      image: ai.image,
      ...(ai.imagePullPolicy ? { imagePullPolicy: ai.imagePullPolicy } : {}),
      // Loopback only: its answers carry provider keys.
      args: [
        'ai-extension', `--xds=${s.xds.host}:${s.xds.port}`, '--host=127.0.0.1', `--port=${ai.port}`, `--metrics-port=${ai.metricsPort}`, `--log-level=${ai.logLevel}`,
        ...(ai.otlpEndpoint !== undefined ? [`--otlp-endpoint=${ai.otlpEndpoint}`] : []),
        ...(ai.limitsRedis !== undefined ? [`--limits-redis=${ai.limitsRedis}`] : []),
        ...(tlsPrefix !== undefined ? [`--xds-tls-dir=${TLS_MOUNT}`] : []),
        // The controller reaches no Envoy: the extension warms its own (src/app/ai-warmup.ts).
        `--warmup-envoy-admin=${adminUrl}`,
        `--drain-envoy-admin=${adminUrl}`,
        drainWait,
      ],
      lifecycle: { preStop: drainPreStop },
      ports: [{ name: 'ai-metrics', containerPort: ai.metricsPort, protocol: 'TCP' }],
      livenessProbe: { httpGet: { path: '/healthz', port: 'ai-metrics' }, periodSeconds: 10, failureThreshold: 3 },
      readinessProbe: { httpGet: { path: '/readyz', port: 'ai-metrics' }, periodSeconds: 5 },
      ...(ai.resources ? { resources: ai.resources } : {}),
      ...(s.securityContext ? { securityContext: s.securityContext } : {}),
      // The ai-extension certificate: the only identity the controller sends provider keys to.
      ...(tlsPrefix !== undefined ? { volumeMounts: [{ name: 'xds-tls-ai-extension', mountPath: TLS_MOUNT, readOnly: true }] } : {}),
    });
  } else if (s.drainSidecar) {
    // No extension in this pod: a container that only drains. It holds no key and mounts nothing
    // (it reaches Envoy's loopback admin API, no controller), and serves on the pod's address
    // only what kubelet calls: Envoy's preStop (which can only wait) and its own readiness.
    const d = s.drainSidecar;
    envoy['lifecycle'] = envoyWaitsOn(d.port);
    containers.push({
      name: 'drain',
      image: d.image,
      ...(d.imagePullPolicy ? { imagePullPolicy: d.imagePullPolicy } : {}),
      args: ['drain-sidecar', `--admin=${adminUrl}`, `--port=${d.port}`, drainWait],
      lifecycle: { preStop: drainPreStop },
      ports: [{ name: 'drain', containerPort: d.port, protocol: 'TCP' }],
      readinessProbe: { httpGet: { path: '/readyz', port: 'drain' }, periodSeconds: 5 },
      ...(d.resources ? { resources: d.resources } : {}),
      ...(s.securityContext ? { securityContext: s.securityContext } : {}),
    });
  }
  const volumes: JsonObject[] = [{ name: 'bootstrap', configMap: { name } }];
  if (tlsPrefix !== undefined) {
    volumes.push({ name: 'xds-tls', secret: { secretName: `${tlsPrefix}-envoy` } });
    if (ai) volumes.push({ name: 'xds-tls-ai-extension', secret: { secretName: `${tlsPrefix}-ai-extension` } });
  }
  const podLabels = labelsFor(g, name);
  const deployment: JsonObject = {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: metadata(g, name, ns),
    spec: {
      replicas: s.envoy.replicas,
      selector: { matchLabels: { [DATA_PLANE_LABEL]: name } },
      template: {
        metadata: {
          labels: podLabels,
          // A new bootstrap (controller address, certificates, ports of the admin API) restarts the pods.
          annotations: { ...annotationsFor(g), 'switchyard.dev/bootstrap-sha256': bootstrapHash },
        },
        spec: {
          serviceAccountName: name,
          automountServiceAccountToken: false,
          // The drain's accept and request time, and a margin: kubelet's SIGKILL comes after this.
          terminationGracePeriodSeconds: drainSeconds + STOP_MARGIN_SECONDS,
          // Gateway listeners are ports like 80 and 443; Envoy runs as a non-root user. A
          // namespaced, "safe" sysctl (Kubernetes 1.22+) instead of the NET_BIND_SERVICE capability.
          securityContext: { ...(s.podSecurityContext ?? {}), sysctls: [{ name: 'net.ipv4.ip_unprivileged_port_start', value: '0' }] },
          ...(s.imagePullSecrets.length > 0 ? { imagePullSecrets: s.imagePullSecrets } : {}),
          ...(Object.keys(s.nodeSelector).length > 0 ? { nodeSelector: s.nodeSelector } : {}),
          ...(s.tolerations.length > 0 ? { tolerations: s.tolerations } : {}),
          containers,
          volumes,
        },
      },
    },
  };

  let service: JsonObject | undefined;
  if (listenerPorts.length > 0) {
    const typed = serviceTypeOf(g);
    const type: ServiceType = 'type' in typed ? typed.type : 'LoadBalancer';
    if ('error' in typed) problems.push(`${typed.error}; using LoadBalancer`);
    const spec: JsonObject = {
      type,
      selector: { [DATA_PLANE_LABEL]: name },
      ports: listenerPorts.map((p) => ({ name: `listener-${p}`, port: p, targetPort: p, protocol: 'TCP' })),
    };
    Object.assign(spec, addressFields(g, type, problems));
    service = { apiVersion: 'v1', kind: 'Service', metadata: metadata(g, name, ns), spec };
  }
  return { serviceAccount, configMap, deployment, ...(service ? { service } : {}), problems };
}

/**
 * spec.addresses on the Service: a LoadBalancer asks its provider for the first IP, a ClusterIP
 * Service takes it as its cluster IP (immutable once created), a NodePort Service lists them as
 * external IPs. Hostnames cannot be asked of a Service.
 */
function addressFields(g: GatewayIR, type: ServiceType, problems: string[]): JsonObject {
  const ips: string[] = [];
  g.addresses.forEach((a, i) => {
    if (a.type === 'IPAddress') ips.push(a.value);
    else problems.push(`Gateway ${gatewayKey(g)}: spec.addresses[${i}] has type ${a.type}; a Kubernetes data plane can only be asked for IPAddress addresses; remove it or use an IP`);
  });
  if (ips.length === 0) return {};
  switch (type) {
    case 'LoadBalancer':
      if (ips.length > 1) problems.push(`Gateway ${gatewayKey(g)}: spec.addresses asks for ${ips.length} IPs; a LoadBalancer Service takes one (${ips[0] ?? ''})`);
      return { loadBalancerIP: ips[0] ?? '' };
    case 'ClusterIP':
      if (ips.length > 1) problems.push(`Gateway ${gatewayKey(g)}: spec.addresses asks for ${ips.length} IPs; a ClusterIP Service takes one (${ips[0] ?? ''})`);
      return { clusterIP: ips[0] ?? '' };
    case 'NodePort':
      return { externalIPs: ips };
  }
}

/** The Gateway API addresses a data plane's Service has: load balancer ingress, else its cluster IP. */
export function serviceAddresses(service: unknown): GatewayAddress[] {
  const rec = (v: unknown): Record<string, unknown> => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {});
  const spec = rec(rec(service)['spec']);
  const ingress = rec(rec(rec(service)['status'])['loadBalancer'])['ingress'];
  const out: GatewayAddress[] = [];
  if (Array.isArray(ingress)) {
    for (const i of ingress) {
      const e = rec(i);
      if (typeof e['ip'] === 'string' && e['ip'] !== '') out.push({ type: 'IPAddress', value: e['ip'] });
      else if (typeof e['hostname'] === 'string' && e['hostname'] !== '') out.push({ type: 'Hostname', value: e['hostname'] });
    }
  }
  // Gateway status.addresses holds at most 16.
  if (out.length > 0) return out.slice(0, 16);
  const clusterIP = spec['clusterIP'];
  if (typeof clusterIP === 'string' && clusterIP !== '' && clusterIP !== 'None') return [{ type: 'IPAddress', value: clusterIP }];
  return [];
}
