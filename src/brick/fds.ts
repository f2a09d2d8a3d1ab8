/** The fd table: a session's open files, the brick-wide open counts, and the caps on both. */
import { EMOVED, FsError } from '../common/errors.js';
import type { Attr } from '../wire/types.js';
import { handlePath } from './format.js';
import type { BrickCore, OpenFile, Session } from './core.js';

/** Per session and brick-wide caps (wire/limits.ts), well below the process's fd limit. */
export function addFd(b: BrickCore, s: Session, f: OpenFile): number {
  const L = b.limits;
  let total = 0;
  if (s.fds.size < L.maxFdsPerSession) for (const x of b.sessions.values()) total += x.fds.size;
  const hit = s.fds.size >= L.maxFdsPerSession ? 'maxFdsPerSession' : total >= L.maxFds ? 'maxFds' : null;
  if (hit !== null) {
    release(b, f);
    b.limitHit(hit, s, hit === 'maxFds' ? `${total} fds open on the brick (limit ${L.maxFds})` : `${s.fds.size} fds open on the connection (limit ${L.maxFdsPerSession})`);
    throw new FsError('EMFILE', hit === 'maxFds' ? 'too many open files on this brick' : 'too many open files on this connection');
  }
  const fd = s.nextFd++;
  s.fds.set(fd, f);
  if (f.gfid) b.openCount.set(f.gfid, (b.openCount.get(f.gfid) ?? 0) + 1);
  return fd;
}

export function release(b: BrickCore, f: OpenFile): void {
  try {
    b.st.close(f.h);
  } catch (e) {
    b.log('warn', `close failed: ${(e as Error).message}`);
  }
  if (f.gfid) {
    const n = (b.openCount.get(f.gfid) ?? 1) - 1;
    if (n <= 0) b.openCount.delete(f.gfid);
    else b.openCount.set(f.gfid, n);
  }
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
