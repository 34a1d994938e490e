// Entry script of the lab kubelet for tests and scripts until the CLI wiring exists:
//   nsenter --net=/run/netns/<lab>-<node> -- node main.js --lab LAB --node NODE
// Runs until SIGTERM/SIGINT; the pods it started keep running.
import { pathToFileURL } from 'node:url';
import { runLabKubelet } from './kubelet.js';

export function parseKubeletArgs(argv: readonly string[]): { lab: string; node: string } {
  const get = (flag: string): string => {
    const i = argv.indexOf(flag);
    const value = i === -1 ? undefined : argv[i + 1];
    if (value === undefined || value.startsWith('--')) throw new Error(`${flag}: required`);
    return value;
  };
  return { lab: get('--lab'), node: get('--node') };
}

async function main(): Promise<void> {
  const { lab, node } = parseKubeletArgs(process.argv.slice(2));
  const controller = new AbortController();
  process.once('SIGTERM', () => controller.abort());
  process.once('SIGINT', () => controller.abort());
  await runLabKubelet({ lab, node, signal: controller.signal });
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
