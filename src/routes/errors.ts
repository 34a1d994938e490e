// Errors of the route code. Each has a stable `code`; callers branch on the code, people read the message.

/** Bad input handed to the route code by its caller (a context field, a desired route): names the field. */
export class RouteInputError extends Error {
  readonly code = 'ROUTES_INVALID_INPUT';
  constructor(
    /** Path of the bad field, e.g. "context.acceptRanges[1]" or "routes[3].nextHops[0]". */
    readonly field: string,
    readonly value: unknown,
    reason: string,
  ) {
    super(`${field}: ${reason} (got ${JSON.stringify(value)})`);
    this.name = 'RouteInputError';
  }
}

export type KernelRouteErrorCode = 'ROUTES_KERNEL_READ_FAILED' | 'ROUTES_BATCH_FAILED';

export interface FailedBatchLine {
  /** 1-based line of the batch input. */
  line: number;
  command: string;
  error: string;
}

export class KernelRouteError extends Error {
  constructor(
    readonly code: KernelRouteErrorCode,
    message: string,
    /** For ROUTES_BATCH_FAILED: the lines the kernel refused (the rest of the batch was applied). */
    readonly failedLines: FailedBatchLine[] = [],
  ) {
    super(message);
    this.name = 'KernelRouteError';
  }
}
