/**
 * Generated inputs through the whole pipeline and the real Envoy's `--mode validate`: the
 * property "whatever the translator serves, Envoy accepts" (refused parts are left out, the rest
 * must still pass). Values are drawn from what users write and from shapes Envoy was measured to
 * reject (pseudo-headers, CR/LF, "%", hostnames with spaces or ports, RE2 programs past the
 * limit, malformed patterns). Used by test/property/envoy-accepts.test.ts (a small sample) and by
 * `npm run bench` (a larger one).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import fc from 'fast-check';
import { parseManifest } from '../../src/api/manifest.js';
import { runPipeline } from '../../src/pipeline.js';
import { addToInputs, emptyInputs, type Inputs } from '../../src/translate/inputs.js';
import { staticBootstrap } from '../golden/static-bootstrap.js';
import { envoyBinaryPath } from './envoy.js';

const run = promisify(execFile);

type Doc = Record<string, unknown>;

/** Mostly values users write, sometimes (1 in `odds`) one Envoy or HTTP refuses. */
function mostly<T>(good: fc.Arbitrary<T>, bad: fc.Arbitrary<T>, odds = 12): fc.Arbitrary<T> {
  return fc.oneof({ weight: odds - 1, arbitrary: good }, { weight: 1, arbitrary: bad });
}

const headerName = mostly(fc.constantFrom('x-a', 'X-Trace-Id', 'x_b', 'content-type', 'x-model'), fc.constantFrom(':path', ':authority', 'host', 'Host', 'x bad', 'x\ny', 'x:y'));
const headerValue = mostly(
  fc.oneof(fc.constantFrom('v', '50%', '%REQ(authorization)%', 'é', 'tab\there', ''), fc.string({ maxLength: 12, unit: fc.constantFrom('a', 'Z', '0', ' ', '%', '-', '/', '"', "'", 'é') })),
  fc.constantFrom('a\nb', 'a\rb', 'a\u0000b', 'x'.repeat(5000)),
);
const hostname = mostly(fc.constantFrom('api.example.com', 'example', 'a-b.example', '*.example.com'), fc.constantFrom('API.example.com', 'a b.example', 'x.example:8080', 'a_b.example', '-a.example', 'x\ny.example'));
const path = mostly(fc.constantFrom('/', '/a', '/a/b/', '/v1', '/%41', '/a b'), fc.constantFrom('/x\ny', '/a\u0000'));

const regexPiece = fc.constantFrom('[a-z0-9]', '\\d', '.', '[^/]', '\\p{L}', '(a|bc)', '\\w', 'x', '[ãé]', '(?i)k');
const quantifier = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('', '+', '*', '?') },
  { weight: 3, arbitrary: fc.integer({ min: 1, max: 80 }).map((n) => `{${n}}`) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 700 }).map((n) => `{${n}}`) },
  { weight: 1, arbitrary: fc.tuple(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 300 })).map(([a, b]) => `{${Math.min(a, b)},${Math.max(a, b)}}`) },
);
const regex = fc.oneof(
  { weight: 8, arbitrary: fc.tuple(fc.constantFrom('/', '^/', '/v1/', ''), fc.array(fc.tuple(regexPiece, quantifier), { minLength: 1, maxLength: 3 })).map(([p, parts]) => p + parts.map(([a, q]) => a + q).join('')) },
  { weight: 1, arbitrary: fc.constantFrom('^/v2/((', '[z-a]', 'a++', '(?P<x>a)(?P<x>b)') },
);

const stringMatch = fc.oneof(
  fc.record({ type: fc.constant('Exact'), name: headerName, value: headerValue }),
  fc.record({ type: fc.constant('RegularExpression'), name: headerName, value: regex }),
);

const match = fc.record(
  {
    path: fc.oneof(
      fc.record({ type: fc.constantFrom('PathPrefix', 'Exact'), value: path }),
      fc.record({ type: fc.constant('RegularExpression'), value: regex }),
    ),
    headers: fc.array(stringMatch, { maxLength: 2 }),
    queryParams: fc.array(stringMatch, { maxLength: 1 }),
    method: fc.constantFrom('GET', 'POST'),
  },
  { requiredKeys: ['path'] },
);

const headerModifier = fc.record(
  {
    set: fc.array(fc.record({ name: headerName, value: headerValue }), { minLength: 1, maxLength: 2 }),
    add: fc.array(fc.record({ name: headerName, value: headerValue }), { minLength: 1, maxLength: 2 }),
    remove: fc.array(headerName, { minLength: 1, maxLength: 2 }),
  },
  { requiredKeys: [] },
);

const pathModifier = fc.oneof(
  fc.record({ type: fc.constant('ReplaceFullPath'), replaceFullPath: path }),
  fc.record({ type: fc.constant('ReplacePrefixMatch'), replacePrefixMatch: path }),
);

const filter = fc.oneof(
  headerModifier.map((m) => ({ type: 'RequestHeaderModifier', requestHeaderModifier: m })),
  headerModifier.map((m) => ({ type: 'ResponseHeaderModifier', responseHeaderModifier: m })),
  fc.record({ hostname, path: pathModifier }, { requiredKeys: [] }).map((u) => ({ type: 'URLRewrite', urlRewrite: u })),
  fc.record({ hostname, path: pathModifier, statusCode: fc.constantFrom(301, 302), scheme: fc.constantFrom('http', 'https') }, { requiredKeys: [] }).map((r) => ({ type: 'RequestRedirect', requestRedirect: r })),
);

const rule = fc.record({
  matches: fc.array(match, { maxLength: 2 }),
  filters: fc.uniqueArray(filter, { maxLength: 2, selector: (f) => f.type }),
  backendRefs: fc.constant([{ group: 'switchyard.dev', kind: 'Backend', name: 'b' }]),
});

const route = fc.record({ hostnames: fc.array(hostname, { maxLength: 2 }), rules: fc.array(rule, { minLength: 1, maxLength: 3 }) });

const host = mostly(fc.constantFrom('10.0.0.1', 'svc.local', 'My-Host.example', '::1'), fc.constantFrom('a b', 'x\ny', 'h:80'));
const backendSpec = fc.oneof(
  fc.record({ host, port: fc.integer({ min: 1, max: 65535 }) }).map((h) => ({ type: 'Static', static: { priorities: [{ hosts: [h] }] } })),
  fc.record({ host, authHeader: headerName, path: path, override: fc.option(host, { nil: undefined }), resetHeader: fc.option(headerName, { nil: undefined }) }).map((a) => ({
    type: 'AI',
    ai: {
      llm: {
        provider: { openaiCompatible: { host: a.host, port: 8080, tls: false, authHeader: a.authHeader, path: a.path, authToken: { kind: 'Passthrough' } } },
        ...(a.override ? { hostOverride: { host: a.override, port: 8443 } } : {}),
      },
    },
    ...(a.resetHeader ? { retry: { rateLimitedBackoff: { resetHeaders: [{ name: a.resetHeader, format: 'Seconds' }] } } } : {}),
  })),
);

/** One generated case: a Backend and one or two HTTPRoutes, placed in a namespace of its own. */
export interface GeneratedCase {
  backend: Doc;
  routes: Doc[];
}

export const generatedCase: fc.Arbitrary<GeneratedCase> = fc.record({
  backend: backendSpec as fc.Arbitrary<Doc>,
  routes: fc.array(route as fc.Arbitrary<Doc>, { minLength: 1, maxLength: 2 }),
});

/** The documents of case `i`: namespace s<i>, its own Gateway on port 20000 + i. */
function documents(c: GeneratedCase, i: number): Doc[] {
  const ns = `s${i}`;
  return [
    { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'gw', namespace: ns }, spec: { gatewayClassName: 'switchyard', listeners: [{ name: 'http', protocol: 'HTTP', port: 20000 + i }] } },
    { apiVersion: 'switchyard.dev/v1alpha1', kind: 'Backend', metadata: { name: 'b', namespace: ns }, spec: c.backend },
    ...c.routes.map((spec, k) => ({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: `r${k}`, namespace: ns }, spec: { parentRefs: [{ name: 'gw' }], ...spec } })),
  ];
}

function inputsOf(cases: readonly { c: GeneratedCase; i: number }[]): Inputs {
  const inputs = emptyInputs();
  const docs: Doc[] = [
    { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name: 'switchyard' }, spec: { controllerName: 'switchyard.dev/gateway-controller' } },
    ...cases.flatMap(({ c, i }) => documents(c, i)),
  ];
  docs.forEach((doc, n) => {
    const parsed = parseManifest(doc, `generated#${n}`);
    if (parsed.ok === true) addToInputs(inputs, parsed.object);
    else if (parsed.ok === false) inputs.invalid.push({ kind: String(doc['kind']), namespace: String((doc['metadata'] as Doc)['namespace'] ?? ''), name: String((doc['metadata'] as Doc)['name']), problems: parsed.problems, servingLastGood: false });
  });
  return inputs;
}

export interface AcceptanceFailure {
  case: GeneratedCase;
  envoy: string;
}

export interface AcceptanceReport {
  generated: number;
  /** Cases where the schema or the translator refused something (an object or part of a route). */
  withRefusals: number;
  /** Cases whose served configuration the real Envoy accepted. */
  nackFree: number;
  envoyRuns: number;
  failures: AcceptanceFailure[];
}

async function validate(dir: string, inputs: Inputs, name: string): Promise<string | undefined> {
  const file = join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify(staticBootstrap(runPipeline(inputs, { listenerAddress: '127.0.0.1' }).xds)));
  try {
    await run(envoyBinaryPath(), ['--mode', 'validate', '-c', file, '--disable-hot-restart', '-l', 'critical'], { maxBuffer: 64 * 1024 * 1024 });
    return undefined;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    return `${e.stderr ?? ''}${e.stdout ?? ''}`.slice(0, 2000);
  }
}

function refusedSomething(inputs: Inputs): boolean {
  if (inputs.invalid.length > 0) return true;
  return runPipeline(inputs).translation.statuses.some((s) =>
    'parents' in s && s.parents.some((p) => p.conditions.some((c) => c.reason === 'UnsupportedValue')),
  );
}

/**
 * Generates `runs` cases (seeded), translates them `batch` at a time (one Gateway each) and has
 * the real Envoy validate each batch; a rejected batch is validated case by case to name the case.
 */
export async function checkEnvoyAcceptance(opts: { runs: number; batch: number; seed: number }): Promise<AcceptanceReport> {
  const cases = fc.sample(generatedCase, { numRuns: opts.runs, seed: opts.seed });
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-accept-'));
  const report: AcceptanceReport = { generated: cases.length, withRefusals: 0, nackFree: 0, envoyRuns: 0, failures: [] };
  try {
    for (let start = 0; start < cases.length; start += opts.batch) {
      const batch = cases.slice(start, start + opts.batch).map((c, k) => ({ c, i: start + k }));
      report.withRefusals += batch.filter((b) => refusedSomething(inputsOf([b]))).length;
      report.envoyRuns++;
      const whole = await validate(dir, inputsOf(batch), `batch-${start}`);
      if (whole === undefined) {
        report.nackFree += batch.length;
        continue;
      }
      for (const b of batch) {
        report.envoyRuns++;
        const alone = await validate(dir, inputsOf([b]), `case-${b.i}`);
        if (alone === undefined) report.nackFree++;
        else report.failures.push({ case: b.c, envoy: alone });
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return report;
}
