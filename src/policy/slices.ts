// Long pure work of the policy reconciler (a compile, a plan) is written as generators that pause after each unit
// of work. Tests and one-off callers run them at once; the reconciler runs them in slices that give the event loop
// back, so watches and BGP are served while a large policy is compiled and planned.
import { setImmediate as nextTurn } from 'node:timers/promises';

/** How long inSlices() holds the event loop at most before giving it back (plus one unit of work). */
export const SLICE_MS = 20;

/** Runs the steps to their end without pausing. */
export function atOnce<T>(steps: Generator<void, T>): T {
  for (;;) {
    const step = steps.next();
    if (step.done === true) return step.value;
  }
}

/**
 * Runs the steps to their end, giving the event loop back whenever they have held it for `sliceMs`. The first slice
 * starts on a turn of its own: work just before (the last slice of other steps) does not count into it.
 */
export async function inSlices<T>(steps: Generator<void, T>, sliceMs = SLICE_MS): Promise<T> {
  await nextTurn();
  let sliceStart = performance.now();
  for (;;) {
    const step = steps.next();
    if (step.done === true) return step.value;
    if (performance.now() - sliceStart >= sliceMs) {
      await nextTurn();
      sliceStart = performance.now();
    }
  }
}
