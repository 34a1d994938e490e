// The one way tests wait for a condition: poll it until it holds, and on timeout say what was awaited and why it
// was not there yet.

export interface PollOptions {
  /** Give up after this long (default 30 s). */
  timeoutMs?: number;
  /** Pause between two checks (default 100 ms). */
  intervalMs?: number;
}

/**
 * Calls `check` until it returns a value other than `undefined` or `false`, and returns that value. A check that
 * throws counts as "not yet": the last error is the reason given when the deadline passes (a check can throw to
 * say what is missing).
 */
export async function pollUntil<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, options: PollOptions = {}): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const intervalMs = options.intervalMs ?? 100;
  const deadline = Date.now() + timeoutMs;
  let reason = '';
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
      reason = 'the condition did not hold';
    } catch (error) {
      reason = error instanceof Error ? error.message : String(error);
    }
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}: ${reason}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
