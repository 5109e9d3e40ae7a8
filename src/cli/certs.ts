import { parseFlags, UsageError } from './flags.js';

export async function runCerts(args: string[]): Promise<number> {
  const { values } = parseFlags('certs', { args, options: { out: { type: 'string' }, dns: { type: 'string' } } });
  if (!values.out) throw new UsageError('certs needs --out DIR (where the CA and the certificate of each role are written)');
  const dnsNames = (values.dns ?? 'localhost').split(',').map((n) => n.trim()).filter((n) => n !== '');
  const { directoryStore, ensurePki, pkiNames } = await import('../app/xds-pki.js');
  const state = await ensurePki({ store: directoryStore(values.out), names: pkiNames(''), controllerDnsNames: dnsNames, now: new Date() });
  const lines = [
    `xDS certificates in ${values.out} (${state.written.length > 0 ? `written: ${state.written.join(', ')}` : 'all current, nothing written'}):`,
    `  ca/             the CA (keep ca.key private; it is only needed to issue again)`,
    `  controller/     serve --xds-tls-dir / controller --xds-tls-dir (names: ${dnsNames.join(', ')})`,
    `  envoy/          switchyard bootstrap --xds-tls-dir (Envoy gets no provider key)`,
    `  ai-extension/   ai-extension --xds-tls-dir (the only identity that gets provider keys)`,
    `Run again to renew what is in the last third of its lifetime.`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}
