import { AddressInUseError, type ServerRole } from '../app/ports.js';
import { closest, HelpRequested, UsageError } from './flags.js';
import { COMMAND_USAGE, commandSynopsis, commandUsage, USAGE } from './usage.js';

/**
 * The commands: each parses its own flags (parseFlags) and returns the exit code, and each is a
 * module of its own, loaded only when it runs: this dispatcher loads no package. Importing
 * @kubernetes/client-node alone cost serve some 55 MB of RSS (issue 9); @grpc/grpc-js (xDS TLS,
 * the extension's ADS client) kept the drain sidecar beside every data plane Envoy without the AI
 * extension at 66 MB resident instead of 57 while idle, and `envoy-drain` (a preStop), `version`
 * and help now load no package at all. Likewise the pipeline, the YAML readers and writer, the
 * manifest schemas and the Envoy bootstrap are loaded by the commands that use them: the AI
 * extension (serve's child process, or on its own next to Envoy) starts without them, 3 MB less
 * resident.
 */
const COMMANDS: Readonly<Record<string, (args: string[]) => Promise<number>>> = {
  serve: async (args) => (await import('./serve.js')).runServe(args),
  controller: async (args) => (await import('./controller.js')).runController(args),
  translate: async (args) => (await import('./translate.js')).runTranslate(args),
  status: async (args) => (await import('./status.js')).runStatus(args),
  drill: async (args) => (await import('./drill.js')).runDrill(args),
  bootstrap: async (args) => (await import('./bootstrap.js')).runBootstrap(args),
  'ai-extension': async (args) => (await import('./ai-extension.js')).runAiExtension(args),
  certs: async (args) => (await import('./certs.js')).runCerts(args),
  'envoy-drain': async (args) => (await import('./envoy-drain.js')).runEnvoyDrain(args),
  'drain-sidecar': async (args) => (await import('./drain-sidecar.js')).runDrainSidecar(args),
  version: async (args) => (await import('./version.js')).runVersion(args),
};

/** Which flag sets the port of each server, per command (for "address in use"). */
const PORT_FLAGS: Readonly<Record<string, Partial<Record<ServerRole, string>>>> = {
  serve: { xds: '--xds-port', metrics: '--metrics-port', 'ai-extension': '--ai-extension-port' },
  controller: { xds: '--xds-port', metrics: '--metrics-port', 'ai-extension': '--ai-extension-port' },
  'ai-extension': { metrics: '--metrics-port', 'ai-extension': '--port' },
  'drain-sidecar': { metrics: '--port' },
};

function addressInUseMessage(err: AddressInUseError, command: string): string {
  const flag = PORT_FLAGS[command]?.[err.role];
  const what = `address ${err.address} is in use (another switchyard or Envoy?)`;
  return flag ? `${flag} ${err.port}: ${what}; pick another port with ${flag}` : `the ${err.role} server's ${what}`;
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case undefined:
      case 'help':
      case '--help':
      case '-h': {
        const topic = rest[0];
        process.stdout.write(topic !== undefined && COMMAND_USAGE[topic] !== undefined ? commandUsage(topic) : USAGE);
        return command === undefined ? 2 : 0;
      }
      case '--version':
      case '-v':
        return await (await import('./version.js')).runVersion(rest);
      default: {
        const run = COMMANDS[command];
        if (run !== undefined) return await run(rest);
        const guess = closest(command, Object.keys(COMMANDS));
        throw new UsageError(`unknown command "${command}"${guess ? `; did you mean "${guess}"?` : ''}`);
      }
    }
  } catch (err) {
    const known = command !== undefined && COMMANDS[command] !== undefined ? command : undefined;
    if (err instanceof HelpRequested) {
      process.stdout.write(commandUsage(err.command));
      return 0;
    }
    if (err instanceof UsageError) {
      const about = err.command ?? known;
      const hint = about !== undefined ? `${commandSynopsis(about)}Run "switchyard ${about} --help" for details.\n` : `Run "switchyard --help" for the commands.\n`;
      process.stderr.write(`switchyard: ${err.message}\n\n${hint}`);
      return 2;
    }
    if (err instanceof AddressInUseError) {
      process.stderr.write(`switchyard: ${addressInUseMessage(err, known ?? '')}\n`);
      return 1;
    }
    process.stderr.write(`switchyard: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

// Run when executed directly (tsx src/cli/main.ts); bin/switchyard.js imports main() instead.
if (import.meta.url === `file://${process.argv[1]}`) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`switchyard: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
