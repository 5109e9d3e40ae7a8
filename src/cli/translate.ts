import { parseFlags, UsageError } from './flags.js';
import { output } from './flag-values.js';
import { accessLog, configLimits, LIMIT_OPTIONS } from './gateway-flags.js';
import { badConditions } from './status-view.js';

export async function runTranslate(args: string[]): Promise<number> {
  const { values } = parseFlags('translate', { args, options: { file: { type: 'string', short: 'f' }, output: { type: 'string', short: 'o' }, 'allow-problems': { type: 'boolean' }, 'access-log': { type: 'string' }, ...LIMIT_OPTIONS } });
  if (!values.file) throw new UsageError('translate needs -f PATH (a manifest file or a directory of them)');
  const limits = await configLimits(values);
  const [{ FileProvider }, { runPipeline, translateReport }, { formatProblem }] = await Promise.all([import('../providers/file.js'), import('../pipeline.js'), import('../api/manifest.js')]);
  const provider = new FileProvider({ path: values.file, resyncIntervalMs: 0, limits });
  const snapshot = await provider.start();
  await provider.stop();
  const report = translateReport(runPipeline(snapshot.inputs, { accessLog: await accessLog(values['access-log']) }));
  process.stdout.write(await output(report, values.output));
  for (const p of snapshot.problems) process.stderr.write(`problem: ${formatProblem(p)}\n`);
  const bad = badConditions(report.statuses);
  for (const b of bad) process.stderr.write(`not ok: ${b}\n`);
  if (bad.length === 0 && snapshot.problems.length === 0) return 0;
  process.stderr.write(`switchyard translate: ${summary(bad.length, snapshot.problems.length)}${values['allow-problems'] ? ' (--allow-problems: exit 0)' : '; exit 1 (--allow-problems to exit 0)'}\n`);
  return values['allow-problems'] ? 0 : 1;
}

function summary(objects: number, problems: number): string {
  const parts = [
    ...(objects > 0 ? [`${objects} object${objects === 1 ? '' : 's'} with a False condition`] : []),
    ...(problems > 0 ? [`${problems} configuration problem${problems === 1 ? '' : 's'}`] : []),
  ];
  return parts.join(' and ');
}
