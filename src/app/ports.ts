import { createServer } from 'node:net';

/** Which of a command's servers could not bind: the CLI maps it to the flag that sets its port. */
export type ServerRole = 'xds' | 'metrics' | 'ai-extension';

/** A server's address is taken by another process (EADDRINUSE). */
export class AddressInUseError extends Error {
  constructor(
    readonly role: ServerRole,
    readonly host: string,
    readonly port: number,
  ) {
    super(`the ${role} server's address ${formatAddress(host, port)} is in use`);
  }

  get address(): string {
    return formatAddress(this.host, this.port);
  }
}

export function formatAddress(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** `err` as an AddressInUseError when it is one (Node's code, or grpc-js's wording), else unchanged. */
export function asAddressInUse(err: unknown, role: ServerRole, host: string, port: number): unknown {
  if (err instanceof AddressInUseError) return err;
  const inUse = (err instanceof Error && 'code' in err && err.code === 'EADDRINUSE') || (err instanceof Error && err.message.includes('EADDRINUSE'));
  return inUse ? new AddressInUseError(role, host, port) : err;
}

/**
 * Fails with AddressInUseError when `host:port` cannot be bound right now. Checked before a command
 * starts anything, so that a taken port is one clear line, not a half-started process that logs
 * and unwinds. Port 0 (any free port) always passes.
 */
export async function assertPortFree(role: ServerRole, host: string, port: number): Promise<void> {
  if (port === 0) return;
  const server = createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port, host, exclusive: true }, () => resolve());
    });
  } catch (err) {
    throw asAddressInUse(err, role, host, port);
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

/** The xDS and metrics ports of a serving command (serve, controller), checked before anything starts. */
export async function assertServingPortsFree(opts: { xdsHost: string; xdsPort: number; metricsHost: string; metricsPort: number }): Promise<void> {
  await assertPortFree('xds', opts.xdsHost, opts.xdsPort);
  await assertPortFree('metrics', opts.metricsHost, opts.metricsPort);
}
