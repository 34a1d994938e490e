// Waiting inside the lab: a sleep that an AbortSignal ends, and polling until a condition holds.
import { LabError } from './errors.js';

export async function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Polls `check` until it returns undefined (done) or the deadline passes; `check` returns what is still missing. */
export async function waitFor(what: string, deadline: number, signal: AbortSignal | undefined, check: () => Promise<string | undefined>): Promise<void> {
  let missing: string | undefined = 'not checked yet';
  while (Date.now() < deadline) {
    signal?.throwIfAborted();
    try {
      missing = await check();
    } catch (err) {
      missing = err instanceof Error ? err.message : String(err);
    }
    if (missing === undefined) return;
    await sleep(300, signal);
  }
  throw new LabError('LAB_NOT_CONVERGED', `${what}: still waiting after the deadline: ${missing}`);
}
