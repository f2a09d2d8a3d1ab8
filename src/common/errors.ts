/** Errors travel as errno names (`code`), as Node's fs does. */
export class FsError extends Error {
  readonly code: string;
  constructor(code: string, message?: string) {
    super(message ? `${code}: ${message}` : code);
    this.code = code;
    this.name = 'FsError';
  }
}

export function fsErr(code: string, message?: string): FsError {
  return new FsError(code, message);
}

/** The error code of anything thrown: errno names pass through, the rest is EIO. */
export function codeOf(e: unknown): string {
  const c = (e as { code?: unknown })?.code;
  return typeof c === 'string' && /^E[A-Z0-9]+$/.test(c) ? c : 'EIO';
}

/** Custom code: an entry operation carried a parent layout that differs from the brick's. */
export const ELAYOUT = 'ELAYOUT';
