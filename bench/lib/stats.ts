// Summaries of repeated measurements: median with min and max, and ratios between figures of the same run.

export interface Summary {
  median: number;
  min: number;
  max: number;
  /** Repetitions that produced a value. */
  n: number;
}

/** Median (the lower middle for an even count), min and max; NaNs when there is no value. */
export function summarize(values: readonly number[]): Summary {
  const finite = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (finite.length === 0) return { median: NaN, min: NaN, max: NaN, n: 0 };
  return {
    median: finite[Math.floor((finite.length - 1) / 2)] as number,
    min: finite[0] as number,
    max: finite[finite.length - 1] as number,
    n: finite.length,
  };
}

/** The nearest-rank percentile (p in 0–100) of the values; NaN when there is none. */
export function percentile(values: readonly number[], p: number): number {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

/** a / b of two medians; NaN when either is missing or b is zero. */
export function ratio(a: Summary | undefined, b: Summary | undefined): number {
  if (a === undefined || b === undefined || !(b.median > 0) || !Number.isFinite(a.median)) return NaN;
  return a.median / b.median;
}

/** Milliseconds with sensible precision. */
export function formatMs(ms: number): string {
  if (!Number.isFinite(ms)) return 'n/a';
  if (ms >= 10_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms >= 10) return `${ms.toFixed(0)} ms`;
  return `${ms.toFixed(1)} ms`;
}

/** `median (min–max)` in the given unit formatter. */
export function formatSummary(s: Summary | undefined, format: (v: number) => string = formatMs): string {
  if (s === undefined || s.n === 0) return 'n/a';
  if (s.n === 1) return format(s.median);
  return `${format(s.median)} (${format(s.min)}–${format(s.max)})`;
}

export function formatRatio(r: number): string {
  return Number.isFinite(r) ? `${r.toFixed(2)}x` : 'n/a';
}

/** Elapsed milliseconds since a process.hrtime.bigint() reading. */
export function msSince(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e6;
}

/** A markdown table. */
export function markdownTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  return [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}
