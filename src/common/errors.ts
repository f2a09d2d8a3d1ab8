/** Errors travel as errno names (`code`), as Node's fs does. */
export class FsError extends Error {
  readonly code: string;
  /** The message without the code prefix, as it travels on the wire. */
  readonly detail: string;
  /** Machine-readable details that travel with the error (e.g. where a moved file went). */
  readonly info?: Record<string, unknown>;
  constructor(code: string, message?: string, info?: Record<string, unknown>) {
    super(message ? `${code}: ${message}` : code);
    this.code = code;
    this.detail = message ?? '';
    this.info = info;
    this.name = 'FsError';
  }

  /**
   * An error without a captured stack, for outcomes that code expects and handles: an error a brick's
   * reply carries (its stack would only show the RPC layer's frames), a name that is not there. Capturing
   * a stack costs more than the rest of a negative lookup's handling.
   */
  static quiet(code: string, message?: string, info?: Record<string, unknown>): FsError {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      return new FsError(code, message, info);
    } finally {
      Error.stackTraceLimit = limit;
    }
  }
}

/** Custom code: the file was migrated; `info` = { dst, token }. Clients follow it to dst. */
export const EMOVED = 'EMOVED';

export function infoOf(e: unknown): Record<string, unknown> | undefined {
  return e instanceof FsError ? e.info : undefined;
}

export function fsErr(code: string, message?: string): FsError {
  return new FsError(code, message);
}

/** The error code of anything thrown: errno names pass through, the rest is EIO. */
export function codeOf(e: unknown): string {
  const c = (e as { code?: unknown })?.code;
  return typeof c === 'string' && /^E[A-Z0-9]+$/.test(c) ? c : 'EIO';
}

/**
 * Rethrows `e` unless its errno name is one of `codes`: the outcomes a caller expects and goes on from
 * (`ignoreCodes(e, 'ENOENT')`: the name was not there, which is what it wanted).
 */
export function ignoreCodes(e: unknown, ...codes: string[]): void {
  if (!codes.includes(codeOf(e))) throw e;
}

/**
 * The codes a best-effort call fails with when another client, a migration or a brick going down got
 * there first: expected, so not logged.
 */
export const RACED = ['ENOENT', 'ENODATA', 'ESTALE', 'ENOTCONN', 'EBUSY', 'EMOVED', 'EFENCED', 'ETIMEDOUT', 'EBADF', 'ELAYOUT', 'EEXIST', 'ENOTEMPTY', 'EAGAIN'] as const;

/**
 * A handler for a call the caller may go on without (a cleanup, a repair, an acknowledgement): an error
 * with an errno name is the call's outcome: quiet if its code is `expected` (by default RACED), else
 * logged with `what`; anything else (a TypeError, a RangeError: a bug, not an outcome) is rethrown, never
 * swallowed.
 */
export function bestEffort(what: string, log?: (level: 'warn', msg: string) => void, expected: readonly string[] = RACED): (e: unknown) => void {
  return (e) => {
    if (!hasErrno(e)) throw e;
    if (expected.includes(codeOf(e))) return;
    log?.('warn', `${what}: ${(e as Error).message}`);
  };
}

/**
 * In a catch that goes on from any outcome of a storage or brick call (its errno), a bug is still thrown:
 * `catch (e) { rethrowBug(e); ... }`.
 */
export function rethrowBug(e: unknown): void {
  if (!hasErrno(e)) throw e;
}

/** As bestEffort, for a call whose value the caller can do without: null on an errno failure. */
export function nullOnFailure(what: string, log?: (level: 'warn', msg: string) => void, expected: readonly string[] = RACED): (e: unknown) => null {
  const h = bestEffort(what, log, expected);
  return (e) => {
    h(e);
    return null;
  };
}

/** Whether `e` is an outcome with an errno name (an FsError, a system error), not a bug. */
export function hasErrno(e: unknown): boolean {
  if (e instanceof FsError) return true;
  const c = (e as { code?: unknown })?.code;
  return e instanceof Error && typeof c === 'string' && /^E[A-Z0-9]+$/.test(c);
}

/** Custom code: an entry operation carried a parent layout that differs from the brick's. */
export const ELAYOUT = 'ELAYOUT';

/** The message of anything thrown, without an errno prefix. */
export function detailOf(e: unknown): string {
  if (e instanceof FsError) return e.detail;
  return (e as Error)?.message ?? String(e);
}

/**
 * A Node system error (fs's: `EEXIST: file already exists, mkdir '/srv/b0/a'`) as an FsError that names
 * the volume's path, not the brick's: `mkdir /a: file already exists`. A brick never tells its clients
 * where on its host its files are; and the code travels once, as the code. Anything else passes as is.
 */
export function brickError(e: unknown, root: string): unknown {
  const se = e as { code?: unknown; syscall?: unknown; path?: unknown; dest?: unknown; message?: unknown };
  if (e instanceof FsError || !se || typeof se.code !== 'string' || typeof se.syscall !== 'string') return e;
  const code = se.code;
  const msg = typeof se.message === 'string' ? se.message : '';
  // Node's form: `${code}: ${description}, ${syscall} '${path}' -> '${dest}'`.
  const m = /^[A-Z0-9]+: (.*?), [a-z_0-9]+(?: '.*)?$/s.exec(msg);
  const what = m ? m[1] : code;
  const paths = [se.path, se.dest].filter((p): p is string => typeof p === 'string').map((p) => volumePathOf(p, root));
  return FsError.quiet(code, `${se.syscall}${paths.length ? ' ' + paths.join(' -> ') : ''}: ${what}`);
}

/** `p` (a path on the brick's host) as the volume names it; a path outside the brick is not shown. */
function volumePathOf(p: string, root: string): string {
  const r = root.endsWith('/') ? root.slice(0, -1) : root;
  if (p === r) return '/';
  if (r !== '' && p.startsWith(r + '/')) return p.slice(r.length);
  return p.startsWith('/') ? '(outside the brick)' : '/' + p;
}
