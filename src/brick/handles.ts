/** gfid handles (`.glusterfs/ab/cd/<gfid>`): made, checked, re-pointed and resolved. A handle is the brick's to keep unique. */
import { FsError, codeOf, ignoreCodes, rethrowBug } from '../common/errors.js';
import { ROOT_GFID, isGfid } from '../common/gfid.js';
import type { Stat } from '../storage/storage.js';
import { HANDLE_DIR, MAX_PATH, parentOf, baseOf, handlePath, isDir, isLnk } from './format.js';
import { Refused, relPath } from '../wire/ops.js';
import type { BrickCore } from './core.js';

export function ensureHandleDir(b: BrickCore, gfid: string): void {
  const top = gfid.slice(0, 2);
  const d = top + '/' + gfid.slice(2, 4);
  if (b.handleDirs.has(d)) return;
  if (!b.handleDirs.has(top)) {
    b.ensureDir(`${HANDLE_DIR}/${top}`, 0o700);
    b.st.pinDir?.(`${HANDLE_DIR}/${top}`);
    b.handleDirs.add(top);
  }
  b.ensureDir(`${HANDLE_DIR}/${d}`, 0o700);
  b.handleDirs.add(d);
}

/**
 * Gives a new name's inode its gfid handle. A gfid is the brick's to keep unique: a handle that is a
 * live inode's (a directory's, or a file's with a name) is never taken over (EEXIST). Only a stale
 * handle, a file's whose last name went, is replaced.
 */
export function linkHandle(b: BrickCore, rel: string, gfid: string): void {
  ensureHandleDir(b, gfid);
  const hp = handlePath(gfid);
  try {
    b.st.link(rel, hp);
  } catch (e) {
    ignoreCodes(e, 'EEXIST');
    if (!handleIsStale(b, gfid)) throw new Refused('EEXIST', `gfid ${gfid} is already in use on ${b.cfg.name}`);
    b.st.unlink(hp);
    b.st.link(rel, hp);
  }
}

/**
 * Whether the gfid's handle names no live inode: a file's (or symlink's, FIFO's) handle that is its
 * last link, or a directory's handle that leads to no directory of that gfid. False for a live one.
 */
export function handleIsStale(b: BrickCore, gfid: string): boolean {
  if (gfid === ROOT_GFID) return false;
  const h = b.st.lstat(handlePath(gfid));
  if (isDir(h)) return false;
  if (h.nlink > 1) return false;
  return !isLnk(h) || dirOfHandle(b, gfid) === null;
}

/** A file's gfid handle becomes a link of the inode at `rel` (a migration installed it there). */
export function pointHandleAt(b: BrickCore, rel: string, gfid: string): void {
  ensureHandleDir(b, gfid);
  // A new link renamed over the old one: the handle names one inode or the other at every moment, never
  // none (an unlink and then a link that failed, EIO, left the installed file without a handle: every fd
  // reopened by gfid answered ENOENT; the simulator found it, seed 42).
  const hp = handlePath(gfid);
  const next = `${hp}.new`;
  try {
    b.st.unlink(next); // a leftover of a crash between the two steps
  } catch (e) {
    ignoreCodes(e, 'ENOENT');
  }
  b.st.link(rel, next);
  try {
    b.st.rename(next, hp);
  } catch (e) {
    try {
      b.st.unlink(next);
    } catch {
      /* the original error matters */
    }
    throw e;
  }
}

export function dirHandleTarget(b: BrickCore, rel: string): string {
  const parent = parentOf(rel);
  const pg = parent === '' ? ROOT_GFID : b.readGfid(parent);
  if (!pg) throw new FsError('EIO', `parent of /${rel} has no gfid`);
  return `../../${pg.slice(0, 2)}/${pg.slice(2, 4)}/${pg}/${baseOf(rel)}`;
}

/** A directory's handle: a symlink to its parent's handle and its name. Refuses a gfid in use by another inode. */
export function setDirHandle(b: BrickCore, rel: string, gfid: string): void {
  ensureHandleDir(b, gfid);
  const hp = handlePath(gfid);
  try {
    // Its own handle (a rename moves it) or a stale one may be replaced; another live inode's may not.
    const was = dirOfHandle(b, gfid);
    if (was === null && !handleIsStale(b, gfid)) throw new Refused('EEXIST', `gfid ${gfid} is already in use on ${b.cfg.name}`);
    if (was !== null && was !== rel) {
      // The handle leads to a live directory of this gfid elsewhere: only a rename (which moved it to rel) may re-point it.
      let there = false;
      try {
        there = isDir(b.st.lstat(was)) && b.readGfid(was) === gfid;
      } catch (e) {
        ignoreCodes(e, 'ENOENT');
      }
      if (there) throw new Refused('EEXIST', `gfid ${gfid} is already in use on ${b.cfg.name}`);
    }
    b.st.unlink(hp);
  } catch (e) {
    ignoreCodes(e, 'ENOENT');
  }
  b.st.symlink(dirHandleTarget(b, rel), hp);
}

/** After a name of a file went away: drop its handle when the handle is its last link. */
export function dropHandleIfLast(b: BrickCore, gfid: string | null): void {
  if (!gfid || gfid === ROOT_GFID) return;
  try {
    if (handleIsStale(b, gfid)) b.st.unlink(handlePath(gfid));
  } catch (e) {
    ignoreCodes(e, 'ENOENT');
  }
}

/**
 * Resolves a gfid to a brick-relative path: the handle for files, the real path for directories. A
 * directory's handle is only trusted once the path it spells out is made of plain names, walks through
 * real directories, and ends at a directory that carries this very gfid: a symlink a client made can
 * never lead anywhere (a user's symlink is also a file's handle, and its text is the user's).
 */
export function resolveGfid(b: BrickCore, gfid: string): { rel: string; st: Stat } {
  if (gfid === ROOT_GFID) return { rel: '', st: b.st.lstat('') };
  const hp = handlePath(gfid);
  const st = b.st.lstat(hp);
  if (isLnk(st) && st.nlink === 1) {
    const rel = dirOfHandle(b, gfid);
    if (rel === null) throw new Refused('ESTALE', `gfid ${gfid} has a handle that leads to no directory of it on ${b.cfg.name}`);
    return { rel, st: b.st.lstat(rel) };
  }
  return { rel: hp, st };
}

/**
 * The directory a gfid's handle leads to, checked (see resolveGfid); null when the handle is no
 * directory's (a file's, a symlink's, a stale one, or a forged one). Never a path outside the brick.
 */
export function dirOfHandle(b: BrickCore, gfid: string): string | null {
  const names: string[] = [];
  let g = gfid;
  for (let depth = 0; g !== ROOT_GFID; depth++) {
    if (depth > MAX_PATH / 2) return null; // a chain longer than any path: a loop
    let target: string;
    try {
      const h = b.st.lstat(handlePath(g));
      if (!isLnk(h) || h.nlink !== 1) return null;
      target = b.st.readlink(handlePath(g));
    } catch (e) {
      if (codeOf(e) === 'ENOENT' || codeOf(e) === 'EINVAL') return null;
      throw e;
    }
    const m = /^\.\.\/\.\.\/([0-9a-f]{2})\/([0-9a-f]{2})\/([0-9a-f-]{36})\/([^/]+)$/.exec(target);
    if (!m || !isGfid(m[3]) || m[1] !== m[3].slice(0, 2) || m[2] !== m[3].slice(2, 4)) return null;
    names.push(m[4]);
    g = m[3];
  }
  const rel = names.reverse().join('/');
  try {
    if (relPath('/' + rel) !== rel) return null;
    const st = b.st.lstat(rel);
    if (!isDir(st) || b.readGfid(rel) !== gfid) return null;
  } catch (e) {
    if (e instanceof FsError || ['ENOENT', 'ENOTDIR', 'ELOOP', 'EINVAL', 'ENAMETOOLONG', 'EPERM'].includes(codeOf(e))) return null;
    throw e;
  }
  return rel;
}

/** Whether the gfid's handle is a link of this very inode. */
export function handleOf(b: BrickCore, gfid: string, st: Stat): boolean {
  try {
    return b.st.lstat(handlePath(gfid)).ino === st.ino;
  } catch (e) {
    rethrowBug(e);
    return false;
  }
}
