import { stringify } from 'yaml';
import { z } from 'zod';
import { CONTROLLER_NAME } from '../api/gateway.js';
import { formatProblem } from '../api/manifest.js';
import { runPipeline } from '../pipeline.js';
import { FileProvider } from '../providers/file.js';
import { KubeClient } from '../providers/kubernetes/api-client.js';
import { collectionPath, WATCHED_KINDS } from '../providers/kubernetes/kinds.js';
import { loadKubeConfig } from '../providers/kubernetes/kubeconfig.js';
import type { ObjectStatus } from '../translate/status.js';
import { parseFlags, UsageError } from './flags.js';
import { badConditions, statusTable } from './status-view.js';
import { readStatusz } from './statusz-client.js';

/** What `switchyard status` shows, wherever it came from. */
export interface StatusView {
  source: string;
  statuses: ObjectStatus[];
  /** Configuration problems, one line each (file mode and /statusz). */
  problems: string[];
}

const SHOWN_KINDS: ReadonlySet<string> = new Set(['Gateway', 'HTTPRoute', 'Backend']);

const conditionSchema = z.object({
  type: z.string(),
  status: z.enum(['True', 'False', 'Unknown']),
  reason: z.string().default(''),
  message: z.string().default(''),
  observedGeneration: z.number().optional(),
  lastTransitionTime: z.string().optional(),
});
const conditions = z.array(conditionSchema).default([]);

/** The shape the status writer (src/status/desired.ts) and /statusz give; unknown fields are dropped. */
const statusBody = z.object({
  conditions,
  listeners: z.array(z.object({ name: z.string(), attachedRoutes: z.number().default(0), supportedKinds: z.array(z.object({ group: z.string().default(''), kind: z.string() })).default([]), conditions })).optional(),
  parents: z
    .array(z.object({ parentRef: z.object({ name: z.string(), namespace: z.string().optional(), sectionName: z.string().optional(), group: z.string().optional(), kind: z.string().optional(), port: z.number().optional() }), controllerName: z.string().default(''), conditions }))
    .optional(),
  priorities: z
    .array(z.object({ priority: z.number(), envoyPriority: z.number().optional(), members: z.array(z.object({ name: z.string(), provider: z.string().default(''), usable: z.boolean(), reason: z.string().optional(), message: z.string().optional() })).default([]) }))
    .optional(),
  usableMembers: z.number().optional(),
  totalMembers: z.number().optional(),
  servedPriorities: z.number().optional(),
});

/** An object's status as ObjectStatus: read from the API server's `.status` or from /statusz. */
export function toObjectStatus(kind: string, namespace: string, name: string, raw: unknown): ObjectStatus {
  const parsed = statusBody.safeParse(raw ?? {});
  const body = parsed.success ? parsed.data : { conditions: [] };
  if (kind === 'Gateway') return { kind, namespace, name, conditions: body.conditions, listeners: body.listeners ?? [] };
  if (kind === 'HTTPRoute') return { kind, namespace, name, parents: body.parents ?? [] };
  if (kind === 'Backend') {
    const priorities = body.priorities ?? [];
    const members = priorities.flatMap((p) => p.members);
    return {
      kind,
      namespace,
      name,
      conditions: body.conditions,
      priorities,
      usableMembers: body.usableMembers ?? members.filter((m) => m.usable).length,
      totalMembers: body.totalMembers ?? members.length,
      servedPriorities: body.servedPriorities ?? priorities.filter((p) => p.envoyPriority !== undefined).length,
    };
  }
  return { kind, namespace, name, conditions: body.conditions };
}

async function fromFile(path: string): Promise<StatusView> {
  const provider = new FileProvider({ path, resyncIntervalMs: 0 });
  const snapshot = await provider.start();
  await provider.stop();
  const statuses = runPipeline(snapshot.inputs).translation.statuses;
  return { source: path, statuses, problems: snapshot.problems.map(formatProblem) };
}

const statuszSchema = z.object({
  statuses: z.array(z.looseObject({ kind: z.string(), namespace: z.string().default(''), name: z.string() })),
  problems: z.array(z.looseObject({ text: z.string().optional() })).default([]),
});

async function fromStatusz(base: string): Promise<StatusView> {
  const { url, json } = await readStatusz(base, 'status');
  const parsed = statuszSchema.safeParse(json);
  if (!parsed.success) throw new Error(`--from ${base}: ${url.href} is not a switchyard /statusz (${parsed.error.issues[0]?.message ?? 'unexpected shape'})`);
  return {
    source: url.href,
    statuses: parsed.data.statuses.map((s) => toObjectStatus(s.kind, s.namespace, s.name, s)),
    problems: parsed.data.problems.map((p) => p.text ?? JSON.stringify(p)),
  };
}

async function fromKubernetes(kubeconfig: string | undefined, namespaces: readonly string[]): Promise<StatusView> {
  let kube: ReturnType<typeof loadKubeConfig>;
  try {
    kube = loadKubeConfig(kubeconfig !== undefined ? { kubeconfig } : {});
  } catch (err) {
    // With no source named, the cluster was only a guess: say what else status reads.
    if (kubeconfig !== undefined) throw err;
    throw new Error(`${err instanceof Error ? err.message : String(err)}; or read a file with -f PATH, or a running serve with --from http://HOST:METRICS_PORT`, { cause: err });
  }
  const client = new KubeClient(kube.config);
  const statuses: ObjectStatus[] = [];
  try {
    for (const k of WATCHED_KINDS.filter((w) => SHOWN_KINDS.has(w.kind))) {
      for (const ns of namespaces.length > 0 ? namespaces : [undefined]) {
        let items: Record<string, unknown>[];
        try {
          items = (await client.list(collectionPath(k, ns))).items;
        } catch (err) {
          throw new Error(`listing ${k.kind}s${ns ? ` in ${ns}` : ''} on ${kube.server} (kubeconfig ${kube.source}): ${err instanceof Error ? err.message : String(err)}${k.whenAbsent ? `; if the CRD is missing: ${k.whenAbsent}` : ''}`);
        }
        for (const item of items) {
          const meta = z.object({ name: z.string(), namespace: z.string().default('') }).safeParse(item['metadata']);
          if (!meta.success) continue;
          statuses.push(toObjectStatus(k.kind, meta.data.namespace, meta.data.name, ownStatus(k.kind, item['status'])));
        }
      }
    }
  } finally {
    client.close();
  }
  return { source: `${kube.server} (kubeconfig ${kube.source})`, statuses, problems: [] };
}

/** HTTPRoute parents written by other controllers are theirs to explain: only ours are shown. */
export function ownStatus(kind: string, status: unknown): unknown {
  if (kind !== 'HTTPRoute' || typeof status !== 'object' || status === null || !('parents' in status) || !Array.isArray(status.parents)) return status;
  const parents: unknown[] = status.parents;
  return { ...status, parents: parents.filter((p) => typeof p === 'object' && p !== null && 'controllerName' in p && p.controllerName === CONTROLLER_NAME) };
}

export async function runStatus(args: string[]): Promise<number> {
  const { values } = parseFlags('status', {
    args,
    options: {
      file: { type: 'string', short: 'f' },
      from: { type: 'string' },
      kubeconfig: { type: 'string' },
      namespaces: { type: 'string' },
      output: { type: 'string', short: 'o' },
    },
  });
  const format = values.output ?? 'table';
  if (!['table', 'json', 'yaml'].includes(format)) throw new UsageError(`-o must be table, json or yaml, got "${format}"`, 'status');
  const sources = [values.file, values.from, values.kubeconfig].filter((v) => v !== undefined);
  if (sources.length > 1) throw new UsageError('give one of -f PATH, --from URL, --kubeconfig PATH', 'status');
  const namespaces = (values.namespaces ?? '').split(',').map((n) => n.trim()).filter((n) => n !== '');
  const view =
    values.file !== undefined ? await fromFile(values.file)
    : values.from !== undefined ? await fromStatusz(values.from)
    : await fromKubernetes(values.kubeconfig, namespaces);
  const shown = view.statuses.filter((s) => SHOWN_KINDS.has(s.kind));
  if (format === 'json') process.stdout.write(`${JSON.stringify({ source: view.source, statuses: shown, problems: view.problems }, null, 2)}\n`);
  else if (format === 'yaml') process.stdout.write(stringify({ source: view.source, statuses: shown, problems: view.problems }, { lineWidth: 0, aliasDuplicateObjects: false }));
  else process.stdout.write(statusTable(shown, view.problems));
  // Like translate: a script can tell at once whether everything is fine.
  return badConditions(shown).length > 0 || view.problems.length > 0 ? 1 : 0;
}
