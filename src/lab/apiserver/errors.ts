// Kubernetes API errors: each one knows its HTTP status, its metav1.Status reason and how to render itself.

export type ApiErrorCode =
  | 'NotFound'
  | 'AlreadyExists'
  | 'Conflict'
  | 'Invalid'
  | 'BadRequest'
  | 'Gone'
  | 'Expired'
  | 'MethodNotAllowed'
  | 'UnsupportedMediaType'
  | 'NotAcceptable'
  | 'Timeout'
  | 'Forbidden'
  | 'Unauthorized'
  | 'InternalError';

const HTTP_STATUS: Record<ApiErrorCode, number> = {
  NotFound: 404,
  AlreadyExists: 409,
  Conflict: 409,
  Invalid: 422,
  BadRequest: 400,
  Gone: 410,
  Expired: 410,
  MethodNotAllowed: 405,
  UnsupportedMediaType: 415,
  NotAcceptable: 406,
  Timeout: 504,
  Forbidden: 403,
  Unauthorized: 401,
  InternalError: 500,
};

export interface StatusCause {
  reason: string;
  message: string;
  field?: string;
}

export interface StatusDetails {
  name?: string;
  group?: string;
  kind?: string;
  causes?: StatusCause[];
}

/** A metav1.Status object as the API server returns it. */
export interface KubeStatus {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: Record<string, never>;
  status: 'Failure' | 'Success';
  message: string;
  reason: string;
  details?: StatusDetails;
  code: number;
}

export class ApiError extends Error {
  readonly code: ApiErrorCode;
  readonly httpStatus: number;
  readonly details: StatusDetails | undefined;

  constructor(code: ApiErrorCode, message: string, details?: StatusDetails) {
    super(message);
    this.name = 'ApiError';
    this.code = code;
    this.httpStatus = HTTP_STATUS[code];
    this.details = details;
  }

  toStatus(): KubeStatus {
    return {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: this.message,
      // Expired is Kubernetes' reason for a too-old continue token; Gone for a too-old resourceVersion.
      reason: this.code,
      ...(this.details === undefined ? {} : { details: this.details }),
      code: this.httpStatus,
    };
  }
}

/** `pods "x" not found` — the resource label Kubernetes uses in messages (plural, with group if not core). */
export function resourceLabel(plural: string, group: string): string {
  return group === '' ? plural : `${plural}.${group}`;
}

export function notFound(plural: string, group: string, name: string): ApiError {
  return new ApiError('NotFound', `${resourceLabel(plural, group)} "${name}" not found`, {
    name,
    group,
    kind: plural,
  });
}

export function alreadyExists(plural: string, group: string, name: string): ApiError {
  return new ApiError('AlreadyExists', `${resourceLabel(plural, group)} "${name}" already exists`, {
    name,
    group,
    kind: plural,
  });
}

export function conflict(plural: string, group: string, name: string, why: string): ApiError {
  return new ApiError('Conflict', `Operation cannot be fulfilled on ${resourceLabel(plural, group)} "${name}": ${why}`, {
    name,
    group,
    kind: plural,
  });
}

export function invalid(kind: string, group: string, name: string, causes: StatusCause[]): ApiError {
  const list = causes.map((c) => `${c.field ?? ''}: ${c.message}`).join(', ');
  const msg = causes.length === 1 ? list : `[${list}]`;
  return new ApiError('Invalid', `${kind} "${name}" is invalid: ${msg}`, { name, group, kind, causes });
}
