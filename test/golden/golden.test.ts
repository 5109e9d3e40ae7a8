/**
 * Golden translator tests: every test/golden/<case>.in.yaml is translated and printed as
 * `switchyard translate -f <case>.in.yaml -o yaml` prints it, then compared with <case>.out.yaml.
 * `UPDATE_GOLDEN=1 npx vitest run test/golden` (make golden) rewrites the .out.yaml files;
 * review the diff before committing. The same resources are then checked by the real Envoy.
 */
import { execFile } from 'node:child_process';
import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../../src/cli/main.js';
import type { JsonObject } from '../../src/envoy/resources.js';
import { displayName } from '../../src/providers/manifest-files.js';
import type { Inputs } from '../../src/translate/inputs.js';
import { envoyBinaryPath, requireEnvoyBinary, startEnvoy, type EnvoyProcess } from '../support/envoy.js';
import { freePort } from '../support/ports.js';
import { envoyResources, renderTranslateOutput, snapshotOf } from './render.js';
import { staticBootstrap, type PemPair } from './static-bootstrap.js';

const run = promisify(execFile);
const HERE = dirname(fileURLToPath(import.meta.url));
const EXAMPLES_DIR = join(HERE, '..', '..', 'examples');
const UPDATE = process.env['UPDATE_GOLDEN'] === '1';

interface GoldenCase {
  name: string;
  /** What `switchyard translate -f` is given. */
  path: string;
  files: string[];
}

/** Every <case>.in.yaml, plus the shipped example configuration (examples/*.yaml → examples.out.yaml). */
const CASES: GoldenCase[] = [
  ...readdirSync(HERE)
    .filter((f) => f.endsWith('.in.yaml'))
    .map((f) => ({ name: f.slice(0, -'.in.yaml'.length), path: join(HERE, f), files: [join(HERE, f)] })),
  {
    name: 'examples',
    path: EXAMPLES_DIR,
    files: readdirSync(EXAMPLES_DIR).filter((f) => f.endsWith('.yaml')).sort().map((f) => join(EXAMPLES_DIR, f)),
  },
].sort((a, b) => a.name.localeCompare(b.name));
const NAMES = CASES.map((c) => c.name);

function caseNamed(name: string): GoldenCase {
  const c = CASES.find((x) => x.name === name);
  if (!c) throw new Error(`no golden case ${name}`);
  return c;
}

/** Files are named as the command names them: relative to the working directory. */
function inputsOf(name: string): Inputs {
  const c = caseNamed(name);
  return snapshotOf(c.files.map((f) => ({ name: displayName(f, process.cwd()), text: readFileSync(f, 'utf8') }))).inputs;
}

function goldenPath(name: string): string {
  return join(HERE, `${name}.out.yaml`);
}

/** A line diff (longest common subsequence) showing changed lines with three lines of context. */
function lineDiff(expected: string, actual: string): string {
  const a = expected.split('\n');
  const b = actual.split('\n');
  const n = a.length;
  const m = b.length;
  const lcs: Uint32Array[] = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) {
    const row = lcs[i] as Uint32Array;
    const next = lcs[i + 1] as Uint32Array;
    for (let j = m - 1; j >= 0; j--) row[j] = a[i] === b[j] ? (next[j + 1] ?? 0) + 1 : Math.max(next[j] ?? 0, row[j + 1] ?? 0);
  }
  const ops: { sign: ' ' | '-' | '+'; line: string; at: number }[] = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) ops.push({ sign: ' ', line: a[i++] ?? '', at: j++ });
    else if (i < n && (j === m || (lcs[i + 1]?.[j] ?? 0) >= (lcs[i]?.[j + 1] ?? 0))) ops.push({ sign: '-', line: a[i++] ?? '', at: j });
    else ops.push({ sign: '+', line: b[j] ?? '', at: j++ });
  }
  const CONTEXT = 3;
  const keep = new Set<number>();
  ops.forEach((op, k) => {
    if (op.sign === ' ') return;
    for (let c = Math.max(0, k - CONTEXT); c <= Math.min(ops.length - 1, k + CONTEXT); c++) keep.add(c);
  });
  const out: string[] = [];
  let last = -1;
  for (const k of [...keep].sort((x, y) => x - y)) {
    const op = ops[k];
    if (!op) continue;
    if (k !== last + 1) out.push(`@@ output line ${op.at + 1} @@`);
    out.push(`${op.sign} ${op.line}`);
    last = k;
  }
  return out.join('\n');
}

describe('golden translations (test/golden/*.in.yaml → *.out.yaml)', () => {
  it('finds the cases', () => {
    expect(NAMES.length).toBeGreaterThanOrEqual(10);
  });

  it.each(NAMES)('%s', (name) => {
    const actual = renderTranslateOutput(inputsOf(name));
    const outPath = goldenPath(name);
    if (UPDATE) {
      writeFileSync(outPath, actual);
      return;
    }
    if (!existsSync(outPath)) throw new Error(`${outPath} does not exist: run \`make golden\` (UPDATE_GOLDEN=1 npx vitest run test/golden) and review it`);
    const expected = readFileSync(outPath, 'utf8');
    if (actual !== expected) {
      throw new Error(
        `translation of ${name} differs from ${name}.out.yaml (- golden, + now).\n` +
          `If the change is intended, run \`make golden\` and review the diff.\n\n${lineDiff(expected, actual)}`,
      );
    }
  });

  it('prints no secret value: tokens and private keys stay out of the output', () => {
    // The values are in what Envoy receives, so their absence below means redaction, not a missing input.
    const unredacted = JSON.stringify([envoyResources(inputsOf('llm-tokens')), envoyResources(inputsOf('gateway-listeners'))]);
    // Fragments of the private scalars of gateway-listeners' test keys (chat-cert, apps-cert).
    const keys = ['s9FKLvqUzcFPo/1S', 'IusjkAXOWAR9mZEq'];
    for (const value of ['inline-token-value', 'sk-ant-bare', ...keys]) expect(unredacted).toContain(value);
    for (const name of NAMES) {
      const printed = renderTranslateOutput(inputsOf(name));
      for (const leak of ['sk-', ...keys, 'inline-token-value']) {
        expect(printed, `${name}: printed output holds "${leak}"`).not.toContain(leak);
      }
    }
  });
});

describe('`switchyard translate -o yaml` prints exactly the golden files', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it.each(NAMES)('%s', async (name) => {
    let stdout = '';
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array): boolean => {
      stdout += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
      return true;
    });
    // Invalid documents are also listed on stderr (and make the exit code 1); the report is what counts here.
    vi.spyOn(process.stderr, 'write').mockImplementation((): boolean => true);
    await main(['translate', '-f', caseNamed(name).path, '-o', 'yaml']);
    vi.restoreAllMocks();
    const expected = readFileSync(goldenPath(name), 'utf8');
    if (stdout !== expected) throw new Error(`switchyard translate differs from ${name}.out.yaml (- golden, + command):\n\n${lineDiff(expected, stdout)}`);
  });
});

describe('the real Envoy accepts every golden translation (--mode validate)', () => {
  let dir = '';
  let pem: PemPair;

  beforeAll(async () => {
    requireEnvoyBinary();
    dir = mkdtempSync(join(tmpdir(), 'switchyard-golden-'));
    // Envoy parses serving certificates even in validate mode; the golden inputs hold dummy PEM text.
    const key = join(dir, 'key.pem');
    const crt = join(dir, 'crt.pem');
    await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', crt, '-subj', '/CN=golden.switchyard.test', '-days', '2']);
    pem = { certificateChain: readFileSync(crt, 'utf8'), privateKey: readFileSync(key, 'utf8') };
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function validate(bootstrap: JsonObject, name: string): Promise<{ code: number; output: string }> {
    const file = join(dir, `${name}.json`);
    writeFileSync(file, JSON.stringify(bootstrap, null, 1));
    try {
      const { stdout, stderr } = await run(envoyBinaryPath(), ['--mode', 'validate', '-c', file, '--disable-hot-restart', '-l', 'warning']);
      return { code: 0, output: stdout + stderr };
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      return { code: typeof e.code === 'number' ? e.code : -1, output: `${e.stdout ?? ''}${e.stderr ?? ''}` };
    }
  }

  it.each(NAMES)('%s', async (name) => {
    const result = await validate(staticBootstrap(envoyResources(inputsOf(name)), pem), name);
    expect(result.code, `Envoy rejected ${name}:\n${result.output}`).toBe(0);
    expect(result.output, 'Envoy warned about the configuration').not.toMatch(/\]\[(warning|error|critical)\]/);
  });

  it('fails when Envoy meets a value it rejects (the check can fail)', async () => {
    const bootstrap = staticBootstrap(envoyResources(inputsOf('multipool-providers')), pem);
    const clusters = (bootstrap.static_resources as { clusters: JsonObject[] }).clusters;
    const first = clusters[0];
    if (!first) throw new Error('multipool-providers produces no cluster to break');
    first.lb_policy = 'NOT_A_POLICY';
    const result = await validate(bootstrap, 'broken');
    expect(result.code).not.toBe(0);
    expect(result.output).toMatch(/NOT_A_POLICY/);
  });
});

describe('route-filters through the real Envoy: what the upstream and the client see', () => {
  interface Seen {
    host: string;
    path: string;
    headers: IncomingHttpHeaders;
  }
  interface Answer {
    status: number;
    headers: IncomingHttpHeaders;
    body: string;
    seen: Seen | undefined;
  }
  let upstream: Server;
  let envoy: EnvoyProcess | undefined;
  let port = 0;
  const seen: Seen[] = [];

  beforeAll(async () => {
    const upstreamPort = await freePort();
    upstream = createServer((req, res) => {
      seen.push({ host: req.headers.host ?? '', path: req.url ?? '', headers: req.headers });
      // Says which backendRef's edits the request carried, so the client side can be matched to it.
      const backend = req.headers['x-backend'];
      if (typeof backend === 'string') res.setHeader('x-upstream-saw', backend);
      res.setHeader('x-upstream-version', '1');
      res.end('ok');
    });
    await new Promise<void>((resolve) => upstream.listen(upstreamPort, '127.0.0.1', resolve));
    // The golden input, with its echo Backend pointed at the local upstream.
    const text = readFileSync(join(HERE, 'route-filters.in.yaml'), 'utf8')
      .replaceAll('{host: 10.0.0.1, port: 8000}', `{host: 127.0.0.1, port: ${upstreamPort}}`)
      .replaceAll('{name: http, port: 8000, protocol: TCP}', `{name: http, port: ${upstreamPort}, protocol: TCP}`)
      .replaceAll('addresses: [10.0.0.1]', 'addresses: [127.0.0.1]');
    if (!text.includes(`{host: 127.0.0.1, port: ${upstreamPort}}`) || !text.includes(`{name: http, port: ${upstreamPort}, protocol: TCP}`) || !text.includes('addresses: [127.0.0.1]')) {
      throw new Error('route-filters.in.yaml no longer has the echo host, Service port or endpoint address this test rewrites');
    }
    const bootstrap = staticBootstrap(envoyResources(snapshotOf([{ name: 'route-filters.in.yaml', text }]).inputs));
    port = await freePort();
    const listener = (bootstrap.static_resources as { listeners: JsonObject[] }).listeners[0];
    if (!listener) throw new Error('route-filters produces no listener');
    listener.address = { socket_address: { address: '127.0.0.1', port_value: port } };
    envoy = await startEnvoy({ bootstrap, adminPort: 0, logLevel: 'warning', id: 'golden-route-filters' });
    await envoy.waitForListener(String(listener.name));
  });
  afterAll(async () => {
    await envoy?.stop();
    await new Promise<void>((resolve) => (upstream ? upstream.close(() => resolve()) : resolve()));
  });

  function get(path: string, headers: Record<string, string> = {}): Promise<Answer> {
    seen.length = 0;
    return new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path, headers: { host: 'api.example.com', ...headers } }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, seen: seen[0] }));
      });
      req.on('error', reject);
      req.end();
    });
  }

  it.each([
    ['/strip/three', '/three'],
    ['/strip', '/'],
    ['/v2', '/api/v2'],
    ['/v2/x', '/api/v2/x'],
    ['/health/deep?q=1', '/healthz?q=1'],
  ])('URLRewrite: %s reaches the upstream as %s', async (path, expected) => {
    const answer = await get(path);
    expect(answer.status).toBe(200);
    expect(answer.seen?.path).toBe(expected);
  });

  it('URLRewrite hostname and prefix: Host internal.example.com, /old-api/x → /api/x', async () => {
    const answer = await get('/old-api/x');
    expect(answer.seen).toMatchObject({ host: 'internal.example.com', path: '/api/x' });
  });

  it('RequestHeaderModifier and ResponseHeaderModifier edit both directions', async () => {
    const answer = await get('/headers', { 'x-tenant': 'other', 'x-debug': '1' });
    expect(answer.seen?.headers['x-tenant']).toBe('acme');
    expect(answer.seen?.headers['x-trace']).toBe('gateway');
    expect(answer.seen?.headers['x-debug']).toBeUndefined();
    expect(answer.headers['cache-control']).toBe('no-store');
    expect(answer.headers['x-served-by']).toBe('switchyard');
    expect(answer.headers['x-upstream-version']).toBeUndefined();
  });

  it('a rule whose Backend is missing answers 500 naming it, and keeps its response header edits', async () => {
    const answer = await get('/gone');
    expect(answer.status).toBe(500);
    expect(answer.body).toContain('backendRef Backend ai/not-there not found');
    expect(answer.headers['cache-control']).toBe('no-store');
    expect(answer.seen).toBeUndefined();
  });

  it('RequestRedirect: scheme, host, port, prefix and status code', async () => {
    const docs = await get('/docs/a');
    expect(docs.status).toBe(301);
    expect(docs.headers.location).toBe('https://docs.example.com:8443/manual/a');
    // No scheme and no port: Gateway API wants the listener's port (10080), which Envoy would drop.
    const login = await get('/login');
    expect(login.status).toBe(302);
    expect(login.headers.location).toBe('http://api.example.com:10080/auth/login');
  });

  it('RequestRedirect without a port: the scheme\'s well-known port, left out of Location', async () => {
    const secure = await get('/to-https/a');
    expect(secure.status).toBe(302);
    expect(secure.headers.location).toBe('https://secure.example.com/to-https/a');
    const plain = await get('/to-port-80');
    expect(plain.headers.location).toBe('http://plain.example.com/to-port-80');
  });

  it('backendRef filters edit only the requests and responses of their own backend', async () => {
    const saw = new Set<string>();
    for (let i = 0; i < 40 && saw.size < 2; i++) {
      const answer = await get('/per-backend');
      expect(answer.status).toBe(200);
      const backend = answer.seen?.headers['x-backend'];
      expect(['a', 'b']).toContain(backend);
      expect(answer.headers['x-upstream-saw']).toBe(backend);
      // Only backendRef "a" has a ResponseHeaderModifier.
      expect(answer.headers['x-from-a']).toBe(backend === 'a' ? 'yes' : undefined);
      saw.add(String(backend));
    }
    expect([...saw].sort()).toEqual(['a', 'b']);
    const one = await get('/one-backend');
    expect(one.seen?.headers['x-backend']).toBe('only');
  });

  it('a Host with a port is matched by its hostname alone and reaches the upstream unchanged', async () => {
    // Gateway API: hostnames match without the port; the backend still sees the Host the client sent.
    const answer = await get('/service', { host: 'api.example.com:1234' });
    expect(answer.status).toBe(200);
    expect(answer.seen?.host).toBe('api.example.com:1234');
    const other = await get('/service', { host: 'other.example.com:1234' });
    expect(other.status).toBe(404);
    expect(other.seen).toBeUndefined();
  });

  it('a redirect from a Host with a port keeps the Gateway API port rules', async () => {
    expect((await get('/docs/a', { host: 'api.example.com:1234' })).headers.location).toBe('https://docs.example.com:8443/manual/a');
    expect((await get('/login', { host: 'api.example.com:1234' })).headers.location).toBe('http://api.example.com:10080/auth/login');
    expect((await get('/to-https/a', { host: 'api.example.com:1234' })).headers.location).toBe('https://secure.example.com/to-https/a');
    expect((await get('/to-port-80', { host: 'api.example.com:1234' })).headers.location).toBe('http://plain.example.com/to-port-80');
  });

  it('a rule filter Switchyard cannot apply is never skipped: RequestMirror drops its rule, ExtensionRef answers 500', async () => {
    const mirrored = await get('/mirrored');
    expect(mirrored.status).toBe(404);
    expect(mirrored.seen).toBeUndefined();
    const extension = await get('/extension');
    expect(extension.status).toBe(500);
    expect(extension.body).toContain('spec.rules[14].filters[0].extensionRef example.com/Auth strict cannot be resolved');
    expect(extension.seen).toBeUndefined();
  });

  it('a backendRef filter Switchyard cannot apply answers 500 naming it, never silently skipped', async () => {
    const answer = await get('/backend-rewrite');
    expect(answer.status).toBe(500);
    expect(answer.body).toContain('spec.rules[11].backendRefs[0].filters[0]: filter type URLRewrite is not supported on a backendRef');
    expect(answer.seen).toBeUndefined();
  });
});
