// `podroute lab apiserver`: the lab API server as its own process, listening on loopback TCP and on the lab's
// unix socket, persisting to the lab's store, with a kubeconfig for the host.
import fs from 'node:fs';
import path from 'node:path';
import { createLogger, type Logger } from '../../observe/log.js';
import { labPaths, type LabPaths } from '../paths.js';
import { renderKubeconfig } from './kubeconfig.js';
import { LabApiServer } from './server.js';

export interface ApiServerProcessOptions {
  lab: string;
  /** Loopback TCP port; 0 picks a free one (reported on stdout as `ready <port>`). */
  tcpPort: number;
  /** Overrides labPaths(lab) (tests use a temp dir). */
  paths?: Pick<LabPaths, 'dir' | 'apiSocket' | 'apiStore' | 'kubeconfig'>;
  eventWindow?: number;
  logger?: Logger;
  /** Where `ready <port>` goes; default process.stdout. */
  stdout?: NodeJS.WritableStream;
  /** Stops the server like SIGTERM does. */
  signal?: AbortSignal;
}

/** Serves until SIGTERM/SIGINT (or `signal`), then closes cleanly (store written, socket removed). */
export async function runApiServerProcess(opts: ApiServerProcessOptions): Promise<void> {
  const paths = opts.paths ?? labPaths(opts.lab);
  const logger = opts.logger ?? createLogger({ component: 'lab-apiserver', format: 'text' });
  const out = opts.stdout ?? process.stdout;
  await fs.promises.mkdir(paths.dir, { recursive: true });
  await fs.promises.mkdir(path.dirname(paths.apiSocket), { recursive: true });
  const server = new LabApiServer({ storePath: paths.apiStore, eventWindow: opts.eventWindow, logger });
  let onSignal: (sig: NodeJS.Signals) => void = () => undefined;
  const stopped = new Promise<string>((resolve) => {
    onSignal = (sig) => resolve(sig);
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
    opts.signal?.addEventListener('abort', () => resolve('abort'), { once: true });
    if (opts.signal?.aborted === true) resolve('abort');
  });
  try {
    const { tcpPort } = await server.start({ tcp: { host: '127.0.0.1', port: opts.tcpPort }, socketPath: paths.apiSocket });
    const tmp = `${paths.kubeconfig}.tmp-${process.pid}`;
    await fs.promises.writeFile(tmp, renderKubeconfig(`http://127.0.0.1:${tcpPort}`, `podroute-${opts.lab}`), { mode: 0o600 });
    await fs.promises.rename(tmp, paths.kubeconfig);
    out.write(`ready ${tcpPort}\n`);
    const why = await stopped;
    logger.info('lab API server stopping', { reason: why });
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    await server.close();
  }
}
