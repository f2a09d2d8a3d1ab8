/**
 * Argument decoding for brick requests: each field is checked; anything unexpected is EINVAL.
 */
import { FsError } from '../common/errors.js';
import { ROOT_GFID, isGfid } from '../common/gfid.js';
import { MAX_RANGES_PER_BRICK, type LayoutRange } from '../dht/layout.js';
import type { Timespec } from '../storage/storage.js';
import type { LockMode } from './locks.js';
import { HANDLE_DIR, MAX_NAME, MAX_PATH, MAX_XATTR_VALUE } from './format.js';


export type Args = Record<string, unknown>;

/**
 * A request refused because it tried something no honest client does (a reserved or taken gfid, a
 * forged handle, a special file opened): the brick logs it with the client's name, once per request.
 */
export class Refused extends FsError {}

export function bad(field: string, why = 'invalid'): FsError {
  return new FsError('EINVAL', `argument '${field}': ${why}`);
}
export function str(a: Args, k: string): string {
  const v = a[k];
  if (typeof v !== 'string') throw bad(k, 'must be a string');
  return v;
}
export function int(a: Args, k: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const v = a[k];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) throw bad(k, `must be an integer in [${min}, ${max}]`);
  // A float64 -0 passes the checks above but makes Node's fs abort the process (a mode of -0): +0.
  return v === 0 ? 0 : v;
}
export function optInt(a: Args, k: string, min = 0, max = Number.MAX_SAFE_INTEGER): number | undefined {
  return a[k] === undefined || a[k] === null ? undefined : int(a, k, min, max);
}
export function optBool(a: Args, k: string): boolean {
  const v = a[k];
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') throw bad(k, 'must be a boolean');
  return v;
}
export function bytes(a: Args, k: string): Uint8Array {
  const v = a[k];
  if (!(v instanceof Uint8Array)) throw bad(k, 'must be binary');
  return v;
}
export function gfidArg(a: Args, k: string): string {
  const v = a[k];
  if (!isGfid(v)) throw bad(k, 'must be a gfid');
  return v;
}
export const NULL_GFID = '00000000-0000-0000-0000-000000000000';
/** The gfid of a new inode: any but the root's and the null gfid (no one may take those over). */
export function newGfidArg(a: Args, k: string): string {
  const v = gfidArg(a, k);
  if (v === ROOT_GFID || v === NULL_GFID) throw new Refused('EPERM', `argument '${k}': gfid ${v} is reserved`);
  return v;
}
export function optGfid(a: Args, k: string): string | undefined {
  return a[k] === undefined || a[k] === null ? undefined : gfidArg(a, k);
}
export function timespec(a: Args, k: string): Timespec | undefined {
  const v = a[k];
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || v.length !== 2 || !v.every((x) => Number.isSafeInteger(x)) || v[1] < 0 || v[1] >= 1e9) throw bad(k, 'must be [sec, nsec]');
  return [v[0] === 0 ? 0 : v[0], v[1] === 0 ? 0 : v[1]];
}
export const U32 = 0xffffffff;
export function oneRange(v: unknown, k: string): LayoutRange {
  if (typeof v !== 'object' || v === null) throw bad(k, 'must be a layout range');
  const r = v as Args;
  const out = { commit: int(r, 'commit', 0, U32), type: int(r, 'type', 0, 1), start: int(r, 'start', 0, U32), stop: int(r, 'stop', 0, U32) };
  if (out.start > out.stop) throw bad(k, 'start > stop');
  return out;
}
/** A list of layout ranges; `null` means none; undefined means the field is absent. */
export function rangesArg(a: Args, k: string): LayoutRange[] | null | undefined {
  const v = a[k];
  if (v === undefined) return undefined;
  if (v === null) return null;
  if (!Array.isArray(v) || v.length > MAX_RANGES_PER_BRICK) throw bad(k, `must be a list of at most ${MAX_RANGES_PER_BRICK} layout ranges`);
  return v.map((r) => oneRange(r, k));
}
/** A symlink's target: 1..4096 bytes, no NUL (any text else: it is the user's, never followed by a brick). */
export function symlinkTarget(a: Args): string {
  const t = str(a, 'target');
  if (t.length === 0 || Buffer.byteLength(t) > MAX_PATH || t.includes('\0')) throw bad('target', 'must be 1..4096 bytes without NUL');
  return t;
}
/** A file's xattrs as a migration carries them: at most 1024 [name, value] pairs, names of 1..255 bytes, values of 64 KiB at most. */
export function xattrPairs(a: Args, k: string): [string, Uint8Array][] {
  const v = a[k];
  if (!Array.isArray(v) || v.length > 1024) throw bad(k, 'must be at most 1024 [name, value] pairs');
  for (const x of v) {
    if (!Array.isArray(x) || x.length !== 2 || typeof x[0] !== 'string' || !(x[1] instanceof Uint8Array)) throw bad(k, 'must be [name, value] pairs');
    if (x[0].length === 0 || Buffer.byteLength(x[0]) > MAX_NAME || x[1].length > MAX_XATTR_VALUE) throw bad(k, `names of 1..${MAX_NAME} bytes, values of ${MAX_XATTR_VALUE} bytes at most`);
  }
  return v as [string, Uint8Array][];
}
export function lockMode(a: Args, k: string): LockMode | 'un' {
  const v = a[k];
  if (v !== 'rd' && v !== 'wr' && v !== 'un') throw bad(k, "must be 'rd', 'wr' or 'un'");
  return v;
}

/**
 * A volume path ('/a/b') to a brick-relative one ('a/b'; '' for the root). Rejects everything that could
 * name something outside the brick or inside its private handle directory.
 */
export function relPath(p: unknown, field = 'path'): string {
  if (typeof p !== 'string') throw bad(field, 'must be a string');
  if (Buffer.byteLength(p) > MAX_PATH) throw new FsError('ENAMETOOLONG', `${field} is longer than ${MAX_PATH} bytes`);
  if (!p.startsWith('/')) throw new FsError('EINVAL', `${field} must start with '/'`);
  if (p === '/') return '';
  const parts = p.slice(1).split('/');
  for (const c of parts) {
    if (c === '' || c === '.' || c === '..') throw new FsError('EINVAL', `${field} has an empty, '.' or '..' component`);
    if (c.includes('\0')) throw new FsError('EINVAL', `${field} contains NUL`);
    if (Buffer.byteLength(c) > MAX_NAME) throw new FsError('ENAMETOOLONG', `a name in ${field} is longer than ${MAX_NAME} bytes`);
  }
  if (parts[0] === HANDLE_DIR) throw new FsError('EPERM', `${HANDLE_DIR} is reserved`);
  return parts.join('/');
}
