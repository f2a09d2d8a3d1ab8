/**
 * The fd table: a session's open files, the brick-wide open counts, and the caps on both. Invariant: a
 * gfid's open count is the number of fds on it across every session (asserted as fds come and go).
 */
import assert from 'node:assert';
import { EMOVED, FsError, hasErrno } from '../common/errors.js';
import type { Attr } from '../wire/types.js';
import { handlePath } from './format.js';
import type { BrickCore, OpenFile, Session } from './core.js';

/**
 * Per session and brick-wide caps (wire/limits.ts), well below the process's fd limit. The brick-wide
 * count is kept as fds come and go (not summed over the sessions at each open: a brick may serve
 * thousands of connections).
 */
export function addFd(b: BrickCore, s: Session, f: OpenFile): number {
  const L = b.limits;
  const total = b.fdsOpen;
  const hit = s.fds.size >= L.maxFdsPerSession ? 'maxFdsPerSession' : total >= L.maxFds ? 'maxFds' : null;
  if (hit !== null) {
    // Never counted: the file is closed, and its gfid's count stays the other fds'.
    closeQuietly(b, f.h);
    b.limitHit(hit, s, hit === 'maxFds' ? `${total} fds open on the brick (limit ${L.maxFds})` : `${s.fds.size} fds open on the connection (limit ${L.maxFdsPerSession})`);
    throw new FsError('EMFILE', hit === 'maxFds' ? 'too many open files on this brick' : 'too many open files on this connection');
  }
  const fd = s.nextFd++;
  s.fds.set(fd, f);
  b.fdsOpen++;
  if (f.gfid) b.openCount.set(f.gfid, (b.openCount.get(f.gfid) ?? 0) + 1);
  return fd;
}

/** An fd leaves its session's table (its file is then released). */
export function forgetFd(b: BrickCore, s: Session, fd: number): void {
  if (s.fds.delete(fd)) b.fdsOpen--;
}

/** A session's fds all go (it closed): each file is released. */
export function releaseAll(b: BrickCore, s: Session): void {
  for (const f of s.fds.values()) release(b, f);
  b.fdsOpen -= s.fds.size;
  s.fds.clear();
}

/** An fd goes: its file is closed and its gfid counts one fd less. */
export function release(b: BrickCore, f: OpenFile): void {
  closeQuietly(b, f.h);
  if (f.gfid) {
    const n = b.openCount.get(f.gfid) ?? 0;
    assert.ok(n > 0, `fd table: an fd of ${f.gfid} is released, but the gfid counts no open fd`);
    if (n === 1) b.openCount.delete(f.gfid);
    else b.openCount.set(f.gfid, n - 1);
  }
}

/** Closes a storage handle whose close may fail (the file system's error is logged); a bug is rethrown. */
export function closeQuietly(b: BrickCore, h: number): void {
  try {
    b.st.close(h);
  } catch (e) {
    if (!hasErrno(e)) throw e;
    b.log('warn', `close failed: ${(e as Error).message}`);
  }
}

/** Checks the fd table against the open counts (tests, and a session's end): every count is its fds'. */
export function checkFdTable(b: BrickCore): void {
  const want = new Map<string, number>();
  let total = 0;
  for (const s of b.sessions.values()) {
    total += s.fds.size;
    for (const f of s.fds.values()) if (f.gfid) want.set(f.gfid, (want.get(f.gfid) ?? 0) + 1);
  }
  assert.equal(b.fdsOpen, total, 'fd table: the brick-wide count differs from the fds open');
  assert.deepStrictEqual(new Map([...b.openCount].sort()), new Map([...want].sort()), 'fd table: open counts differ from the fds open');
}

/** The open file an fd names; EMOVED once its migration committed (but for `closing` it). */
export function fdOf(b: BrickCore, s: Session, fd: number, closing = false): OpenFile {
  const f = s.fds.get(fd);
  if (!f) throw new FsError('EBADF', `fd ${fd} is not open on this connection`);
  if (f.moved && !closing) throw new FsError(EMOVED, 'file was migrated', { ...f.moved });
  return f;
}

export function fattr(b: BrickCore, f: OpenFile): Attr {
  const st = b.st.fstat(f.h);
  return b.attr(f.gfid ? handlePath(f.gfid) : '', st, f.gfid);
}
