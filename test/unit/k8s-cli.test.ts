import { afterEach, describe, expect, it, vi } from 'vitest';
import { main } from '../../src/cli/main.js';

/** `switchyard controller` refuses bad flags with a usage message before touching any cluster. */

afterEach(() => {
  vi.restoreAllMocks();
});

async function run(args: string[]): Promise<{ code: number; stderr: string }> {
  let stderr = '';
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array): boolean => {
    stderr += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    return true;
  });
  const code = await main(args);
  return { code, stderr };
}

describe('switchyard controller flags', () => {
  it('refuses a namespace list with something that is not a namespace name', async () => {
    const r = await run(['controller', '--namespaces', 'ai,Bad_Name']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('not a namespace name: "Bad_Name"');
  });

  it('refuses a port out of range and an unknown log level', async () => {
    expect((await run(['controller', '--xds-port', '70000'])).stderr).toContain('--xds-port must be a port number');
    expect((await run(['controller', '--log-level', 'loud'])).stderr).toContain('--log-level must be one of');
  });

  it('fails with what to do when no kubeconfig can be found', async () => {
    const r = await run(['controller', '--kubeconfig', '/nonexistent/kubeconfig', '--log-level', 'silent']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('switchyard: kubeconfig /nonexistent/kubeconfig (from --kubeconfig) does not exist: check the path, or leave --kubeconfig out to use $KUBECONFIG, the in-cluster service account or ~/.kube/config\n');
  });

  it('is listed in the usage', async () => {
    let stdout = '';
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array): boolean => {
      stdout += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
      return true;
    });
    await main(['help']);
    expect(stdout).toMatch(/switchyard controller \[--kubeconfig PATH\] \[--namespaces a,b\]/);
  });
});
