// The one error type of the lab's commands: its code tells the CLI and tests what went wrong.
export class LabError extends Error {
  constructor(
    readonly code: 'LAB_BAD_NAME' | 'LAB_EXISTS' | 'LAB_NOT_FOUND' | 'LAB_UNSAFE' | 'LAB_START_FAILED' | 'LAB_NOT_CONVERGED' | 'LAB_BAD_TARGET' | 'LAB_API_FAILED',
    message: string,
  ) {
    super(message);
    this.name = 'LabError';
  }
}
