/** Volume paths as the DHT client uses them: joined, split and normalised. */
import { FsError } from '../common/errors.js';

/** Linux's PATH_MAX: a path with its NUL; one of PATH_MAX bytes or more is ENAMETOOLONG, as a local disk answers. */
const PATH_MAX = 4096;

/** A directory's path and a name in it, as one volume path. */
export function joinPath(dir: string, name: string): string {
  return dir === '/' ? `/${name}` : `${dir}/${name}`;
}

/** A volume path's parent directory and name. */
export function splitPath(path: string): { parent: string; name: string } {
  const i = path.lastIndexOf('/');
  return { parent: i <= 0 ? '/' : path.slice(0, i), name: path.slice(i + 1) };
}

/** A path that normPath would return unchanged: '/'-separated names, none empty, '.' or '..', no NUL. */
const NORMAL_PATH = /^(?:\/(?!\.\.?(?:\/|$))[^/\0]+)+$/;

/**
 * Normalises a volume path: absolute, no trailing or repeated slashes. `.` and `..` are resolved. A path
 * of PATH_MAX bytes or more is ENAMETOOLONG, as a local disk answers (before any lookup of its parent).
 */
export function normPath(p: string): string {
  if (typeof p === 'string' && p.length > PATH_MAX / 3 && Buffer.byteLength(p) >= PATH_MAX) throw new FsError('ENAMETOOLONG', `${p.slice(0, 64)}...: the path is longer than ${PATH_MAX - 1} bytes`);
  if (typeof p === 'string' && NORMAL_PATH.test(p)) return p;
  if (typeof p !== 'string' || p.length === 0) throw new FsError('EINVAL', 'path must be a non-empty string');
  if (p.includes('\0')) throw new FsError('EINVAL', 'path contains NUL');
  return walkPath(p);
}

/** normPath's component walk: empty and '.' components dropped, '..' removes the one before. */
export function walkPath(p: string): string {
  const out: string[] = [];
  for (const c of p.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') out.pop();
    else out.push(c);
  }
  return '/' + out.join('/');
}
