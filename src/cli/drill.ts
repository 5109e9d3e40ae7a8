import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { DRILL_KEY } from '../api/backend.js';
import { DRILL_ANSWER_HEADER, DRILL_HEADER, DRILL_NOT_READY_HEADER, parseDrillAnswer, signDrillHeader } from '../ai-extension/drill.js';
import { KubeClient, isNotFound } from '../providers/kubernetes/api-client.js';
import { loadKubeConfig } from '../providers/kubernetes/kubeconfig.js';
import { MIN_DRILL_KEY_LENGTH } from '../translate/credentials.js';
import { parseFlags, UsageError } from './flags.js';
import { readStatusz } from './statusz-client.js';

/**
 * `switchyard drill`: proves failover on a live Gateway. Each request carries a drill header
 * signed with the Backend's drill key; the AI extension fails the drilled priority's attempts
 * without calling their provider, Envoy retries on the next priority, and that priority's
 * provider really answers (max_tokens 1), so the whole path the failover takes is exercised.
 */

export { DRILL_USAGE } from './drill-usage.js';

export interface DrillPlan {
  backend: string;
  priority: number;
  requests: number;
  /** The OpenAI base URL, e.g. http://127.0.0.1:8080/v1. */
  gateway: URL;
  model: string;
  output: 'table' | 'json';
}

export interface DrillResult {
  index: number;
  /** HTTP status; undefined when no answer came (connection failure). */
  status: number | undefined;
  /** Who answered, from the drill answer header; undefined when the extension did not honour the drill. */
  answer: { priority: number; member: string; addedMs: number } | undefined;
  totalMs: number;
  failedOver: boolean;
  error?: string;
}

export interface DrillSummary {
  requests: number;
  failedOver: number;
  errors: number;
  addedMsP50: number | undefined;
  addedMsP95: number | undefined;
}

function nsName(flag: string, value: string | undefined, what: string): string {
  if (value === undefined) throw new UsageError(`drill needs ${flag} NS/NAME (${what})`, 'drill');
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?\/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(value)) throw new UsageError(`${flag} is NAMESPACE/NAME (${what}), got "${value}"`, 'drill');
  return value;
}

function count(flag: string, value: string | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`${flag} is a whole number from ${min} to ${max}, got "${value}"`, 'drill');
  return n;
}

const DRILL_OPTIONS = {
  backend: { type: 'string' },
  priority: { type: 'string' },
  requests: { type: 'string' },
  gateway: { type: 'string' },
  'key-secret': { type: 'string' },
  'key-file': { type: 'string' },
  model: { type: 'string' },
  from: { type: 'string' },
  kubeconfig: { type: 'string' },
  output: { type: 'string', short: 'o' },
} as const;

/** The command line as a plan, or a UsageError naming the flag and the fix. */
export function parseDrillArgs(args: string[]): { plan: DrillPlan; keySecret?: string; keyFile?: string; from?: string; kubeconfig?: string } {
  const { values } = parseFlags('drill', { args, options: DRILL_OPTIONS });
  const backend = nsName('--backend', values.backend, 'the Backend to drill, e.g. --backend ai/chat');
  if (values.gateway === undefined) throw new UsageError('drill needs --gateway URL: the OpenAI base URL the Gateway serves the Backend at, e.g. http://gw.example.com/v1 (kubectl get gateway -A shows its address)', 'drill');
  let gateway: URL;
  try {
    gateway = new URL(values.gateway);
  } catch {
    throw new UsageError(`--gateway is a URL such as http://gw.example.com/v1, got "${values.gateway}"`, 'drill');
  }
  if (gateway.protocol !== 'http:' && gateway.protocol !== 'https:') throw new UsageError(`--gateway must be http:// or https://, got "${values.gateway}"`, 'drill');
  if (gateway.pathname === '/' || gateway.pathname === '') gateway.pathname = '/v1';
  const keySecret = values['key-secret'];
  const keyFile = values['key-file'];
  if (keySecret !== undefined && keyFile !== undefined) throw new UsageError('give the drill key once: --key-secret NS/NAME or --key-file PATH, not both', 'drill');
  if (keySecret === undefined && keyFile === undefined) {
    throw new UsageError(`drill needs the Backend's drill key: --key-secret NS/NAME (the Secret its spec.drill.keySecretRef names, key "${DRILL_KEY}") or --key-file PATH`, 'drill');
  }
  if (keySecret !== undefined) nsName('--key-secret', keySecret, 'the Secret holding the drill key');
  const output = values.output ?? 'table';
  if (output !== 'table' && output !== 'json') throw new UsageError(`-o is table or json, got "${output}"`, 'drill');
  const plan: DrillPlan = {
    backend,
    priority: count('--priority', values.priority, 0, 0, 100),
    requests: count('--requests', values.requests, 5, 1, 10_000),
    gateway,
    model: values.model ?? 'switchyard-drill',
    output,
  };
  return {
    plan,
    ...(keySecret !== undefined ? { keySecret } : {}),
    ...(keyFile !== undefined ? { keyFile } : {}),
    ...(values.from !== undefined ? { from: values.from } : {}),
    ...(values.kubeconfig !== undefined ? { kubeconfig: values.kubeconfig } : {}),
  };
}

function checkKey(key: string, where: string): string {
  const trimmed = key.trim();
  if (trimmed.length < MIN_DRILL_KEY_LENGTH) throw new Error(`${where} holds no drill key of at least ${MIN_DRILL_KEY_LENGTH} characters; put the value of the Secret's key "${DRILL_KEY}" there`);
  return trimmed;
}

function readKeyFile(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new Error(`--key-file ${path}: cannot read it (${err instanceof Error ? err.message : String(err)}); give the file holding the Backend's drill key`);
  }
  return checkKey(text, `--key-file ${path}`);
}

const secretSchema = z.object({ data: z.record(z.string(), z.string()).default({}) });
const backendSchema = z.object({ spec: z.looseObject({ drill: z.object({ keySecretRef: z.object({ name: z.string() }) }).optional() }) });

/** The drill key from the API server, after checking that the Backend exists and names that Secret. */
async function keyFromKubernetes(backend: string, keySecret: string, kubeconfig: string | undefined): Promise<string> {
  const kube = loadKubeConfig(kubeconfig !== undefined ? { kubeconfig } : {});
  const client = new KubeClient(kube.config);
  const [bns, bname] = backend.split('/') as [string, string];
  const [sns, sname] = keySecret.split('/') as [string, string];
  try {
    let raw: unknown;
    try {
      raw = await client.request({ path: `/apis/switchyard.dev/v1alpha1/namespaces/${bns}/backends/${bname}` });
    } catch (err) {
      if (isNotFound(err)) throw new Error(`--backend ${backend}: no such Backend on ${kube.server}; kubectl get backends -A lists them`);
      throw err;
    }
    const spec = backendSchema.safeParse(raw);
    const ref = spec.success ? spec.data.spec.drill?.keySecretRef.name : undefined;
    if (ref === undefined) throw new Error(`Backend ${backend} has no spec.drill: add spec.drill.keySecretRef naming a Secret with key "${DRILL_KEY}", or its extension ignores drill headers`);
    if (sns !== bns || ref !== sname) throw new Error(`--key-secret ${keySecret}: Backend ${backend} signs drills with Secret ${bns}/${ref} (spec.drill.keySecretRef); use --key-secret ${bns}/${ref}`);
    let secret: unknown;
    try {
      secret = await client.request({ path: `/api/v1/namespaces/${sns}/secrets/${sname}` });
    } catch (err) {
      if (isNotFound(err)) throw new Error(`--key-secret ${keySecret}: no such Secret on ${kube.server}; create it with key "${DRILL_KEY}" (e.g. openssl rand -hex 32)`);
      throw err;
    }
    const data = secretSchema.safeParse(secret);
    const encoded = data.success ? data.data.data[DRILL_KEY] : undefined;
    if (encoded === undefined) throw new Error(`--key-secret ${keySecret}: the Secret has no key "${DRILL_KEY}"; add it (e.g. openssl rand -hex 32)`);
    return checkKey(Buffer.from(encoded, 'base64').toString('utf8'), `Secret ${keySecret} key "${DRILL_KEY}"`);
  } finally {
    client.close();
  }
}

const statuszBackends = z.object({
  statuses: z.array(z.looseObject({ kind: z.string(), namespace: z.string().default(''), name: z.string(), priorities: z.array(z.object({ priority: z.number(), envoyPriority: z.number().optional() })).optional() })),
});

/** Asks a running serve or controller (/statusz) whether the Backend exists and can fail over from the priority. */
async function checkFromStatusz(base: string, plan: DrillPlan): Promise<void> {
  const { url, json } = await readStatusz(base, 'drill');
  const parsed = statuszBackends.safeParse(json);
  if (!parsed.success) throw new Error(`--from ${base}: ${url.href} is not a switchyard /statusz`);
  const found = parsed.data.statuses.find((s) => s.kind === 'Backend' && `${s.namespace}/${s.name}` === plan.backend);
  if (found === undefined) {
    const known = parsed.data.statuses.filter((s) => s.kind === 'Backend').map((s) => `${s.namespace}/${s.name}`);
    throw new Error(`--backend ${plan.backend}: no such Backend at ${url.href}${known.length > 0 ? ` (it has ${known.join(', ')})` : ''}; switchyard status --from ${base} lists them`);
  }
  const served = (found.priorities ?? []).filter((p) => p.envoyPriority !== undefined).map((p) => p.priority);
  if (!served.includes(plan.priority)) throw new Error(`--priority ${plan.priority}: Backend ${plan.backend} serves no priority ${plan.priority} (served: ${served.join(', ') || 'none'}); pick one of those`);
  if (!served.some((p) => p > plan.priority)) throw new Error(`--priority ${plan.priority}: Backend ${plan.backend} has no priority after ${plan.priority} to fail over to; drill an earlier priority`);
}

/** How often a drill request is sent again when Envoy had no connection to the drilled member ready. */
const NOT_READY_RESENDS = 3;
const NOT_READY_PAUSE_MS = 100;

/** Sends the drill's requests one after the other. */
export async function runDrillRequests(plan: DrillPlan, key: string, fetchImpl: typeof fetch = fetch): Promise<DrillResult[]> {
  const url = new URL(`${plan.gateway.pathname.replace(/\/+$/, '')}/chat/completions`, plan.gateway);
  const results: DrillResult[] = [];
  const send = async (): Promise<Response> => {
    const res = await fetchImpl(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', [DRILL_HEADER]: signDrillHeader(key, plan.backend, plan.priority) },
      body: JSON.stringify({ model: plan.model, max_tokens: 1, messages: [{ role: 'user', content: 'switchyard failover drill: answer with one token' }] }),
      signal: AbortSignal.timeout(60_000),
    });
    await res.arrayBuffer();
    return res;
  };
  for (let i = 1; i <= plan.requests; i++) {
    const started = performance.now();
    try {
      let res = await send();
      // Envoy was still connecting to the drilled member (the extension cannot fail the attempt
      // then, and did not call its provider): the connection is there a moment later.
      for (let again = 0; again < NOT_READY_RESENDS && res.headers.get(DRILL_NOT_READY_HEADER) !== null; again++) {
        await new Promise((resolve) => setTimeout(resolve, NOT_READY_PAUSE_MS));
        res = await send();
      }
      const header = res.headers.get(DRILL_ANSWER_HEADER);
      const answer = header === null ? undefined : parseDrillAnswer(header);
      const ok = res.status >= 200 && res.status < 300;
      results.push({ index: i, status: res.status, answer, totalMs: performance.now() - started, failedOver: ok && answer !== undefined && answer.priority > plan.priority });
    } catch (err) {
      results.push({ index: i, status: undefined, answer: undefined, totalMs: performance.now() - started, failedOver: false, error: err instanceof Error ? err.message : String(err) });
    }
  }
  return results;
}

function percentile(sorted: number[], p: number): number | undefined {
  if (sorted.length === 0) return undefined;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

export function summarizeDrill(results: readonly DrillResult[]): DrillSummary {
  const added = results.filter((r) => r.failedOver && r.answer !== undefined).map((r) => r.answer?.addedMs ?? 0).sort((a, b) => a - b);
  return {
    requests: results.length,
    failedOver: results.filter((r) => r.failedOver).length,
    errors: results.filter((r) => r.status === undefined || r.status >= 400).length,
    addedMsP50: percentile(added, 50),
    addedMsP95: percentile(added, 95),
  };
}

const ms = (v: number | undefined): string => (v === undefined ? '-' : `${Math.round(v)} ms`);

/** The table, the summary line and, when failover did not happen, why and what to check. */
export function drillReport(plan: DrillPlan, results: readonly DrillResult[]): string {
  const rows = [['#', 'STATUS', 'ANSWERED BY', 'ADDED LATENCY', 'TOTAL', 'FAILED OVER']];
  for (const r of results) {
    rows.push([
      String(r.index),
      r.status === undefined ? 'error' : String(r.status),
      r.answer === undefined ? '-' : `priority ${r.answer.priority} / ${r.answer.member}`,
      ms(r.answer?.addedMs),
      ms(r.totalMs),
      r.failedOver ? 'yes' : 'no',
    ]);
  }
  const widths = rows[0]?.map((_, c) => Math.max(...rows.map((row) => (row[c] ?? '').length))) ?? [];
  const lines = rows.map((row) => row.map((cell, c) => cell.padEnd(widths[c] ?? 0)).join('  ').trimEnd());
  const s = summarizeDrill(results);
  const out = [
    `Drill of Backend ${plan.backend}: priority ${plan.priority} failed by the AI extension, ${plan.requests} request${plan.requests === 1 ? '' : 's'} to ${plan.gateway.href}`,
    ...lines,
    `Summary: ${s.requests} requests, ${s.failedOver} failed over, ${s.errors} errors; added latency p50 ${ms(s.addedMsP50)}, p95 ${ms(s.addedMsP95)}`,
  ];
  if (s.failedOver < s.requests) out.push(drillDiagnosis(plan, results));
  return `${out.join('\n')}\n`;
}

function drillDiagnosis(plan: DrillPlan, results: readonly DrillResult[]): string {
  const failed = results.filter((r) => !r.failedOver);
  if (failed.every((r) => r.error !== undefined)) return `Failover not proven: the Gateway at ${plan.gateway.href} did not answer (${failed[0]?.error ?? ''}); check --gateway.`;
  if (failed.some((r) => r.answer === undefined && r.status !== undefined && r.status < 300)) {
    return `Failover not proven: answers came without the drill answer header, so the AI extension ignored the drill header (it logs why once: "drill header ignored"). Check that Backend ${plan.backend} has spec.drill.keySecretRef and that the key given here is that Secret's "${DRILL_KEY}".`;
  }
  if (failed.some((r) => r.answer !== undefined && r.answer.priority <= plan.priority)) return `Failover not proven: a drilled priority answered itself; check the Backend's route and its retry policy.`;
  return `Failover not proven: ${failed.length} request${failed.length === 1 ? '' : 's'} ended in an error (status ${[...new Set(failed.map((r) => r.status ?? 'none'))].join(', ')}): is there a usable priority after ${plan.priority}, and retries left (spec.retry.attempts)?`;
}

export async function runDrill(args: string[], write: (text: string) => void = (t) => process.stdout.write(t)): Promise<number> {
  const parsed = parseDrillArgs(args);
  const { plan } = parsed;
  if (parsed.from !== undefined) await checkFromStatusz(parsed.from, plan);
  const key = parsed.keyFile !== undefined ? readKeyFile(parsed.keyFile) : await keyFromKubernetes(plan.backend, parsed.keySecret ?? '', parsed.kubeconfig);
  const results = await runDrillRequests(plan, key);
  if (plan.output === 'json') write(`${JSON.stringify({ backend: plan.backend, priority: plan.priority, gateway: plan.gateway.href, results, summary: summarizeDrill(results) }, null, 2)}\n`);
  else write(drillReport(plan, results));
  return summarizeDrill(results).failedOver === results.length ? 0 : 1;
}
