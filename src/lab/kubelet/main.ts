// Entry script of the lab kubelet for tests and scripts until the CLI wiring exists:
//   nsenter --net=/run/netns/<lab>-<node> -- node main.js --lab LAB --node NODE [--resync-ms MS]
// Runs until SIGTERM/SIGINT; the pods it started keep running.
import { pathToFileURL } from 'node:url';
import { runLabKubelet } from './kubelet.js';

export function parseKubeletArgs(argv: readonly string[]): { lab: string; node: string; resyncMs?: number } {
  const get = (flag: string, required = true): string | undefined => {
    const i = argv.indexOf(flag);
    const value = i === -1 ? undefined : argv[i + 1];
    if ((value === undefined && required) || value?.startsWith('--')) throw new Error(`${flag}: required`);
    return value;
  };
  const resync = get('--resync-ms', false);
  const resyncMs = resync === undefined ? undefined : Number(resync);
  if (resyncMs !== undefined && !(resyncMs >= 100)) throw new Error('--resync-ms: a number of milliseconds >= 100');
  return { lab: get('--lab') ?? '', node: get('--node') ?? '', ...(resyncMs === undefined ? {} : { resyncMs }) };
}

async function main(): Promise<void> {
  const args = parseKubeletArgs(process.argv.slice(2));
  const controller = new AbortController();
  process.once('SIGTERM', () => controller.abort());
  process.once('SIGINT', () => controller.abort());
  await runLabKubelet({ ...args, signal: controller.signal });
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`lab kubelet: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
}
