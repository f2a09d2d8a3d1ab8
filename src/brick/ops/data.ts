/** Data operations on open files: open, read, write, fsync, truncate, fstat, seek, close, and local reads. */
import { planted } from '../../common/plant.js';
import { FsError } from '../../common/errors.js';
import { ioBuffers } from '../../wire/pool.js';
import type { Attr } from '../../wire/types.js';
import {
  O_ACCMODE,
  O_APPEND,
  O_RDONLY,
  O_CREAT,
  O_DIRECTORY,
  O_EXCL,
  O_TRUNC,
  O_WRONLY,
  S_ISGID,
  S_ISUID,
  S_IXGRP,
  FALLOC_FL_COLLAPSE_RANGE,
  FALLOC_FL_INSERT_RANGE,
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  FALLOC_FL_ZERO_RANGE,
  type FdLocal,
  type Stat,
} from '../../storage/storage.js';
import { LINKTO_MODE, handlePath, isReg, isDir, isLnk } from '../format.js';
import { Refused, bad, type Decoded } from '../../wire/ops.js';
import type { BrickCore, OpenFile, Session } from '../core.js';
import { addFd, fattr, fdOf, forgetFd, release } from '../fds.js';
import { resolveGfid } from '../handles.js';

export function open(b: BrickCore, s: Session, a: Decoded<'open'>): { fd: number; attr: Attr } {
  const flags = a.flags;
  if (flags & (O_CREAT | O_EXCL)) throw new FsError('EINVAL', 'open does not create; use create');
  const g = a.gfid;
  let rel: string;
  if (g !== undefined) rel = resolveGfid(b, g).rel;
  else if (a.path !== undefined) rel = b.walk(a.path);
  else throw bad('path', 'must be a string');
  const gfid0 = g ?? b.readGfid(rel);
  // A client that looked the name up says which file it expects: a rename or migration may have put
  // another file, or a linkto, at the name since.
  const expect = a.expect;
  if (expect !== undefined && g === undefined && (gfid0 !== expect || b.st.lstat(rel).mode === LINKTO_MODE)) {
    throw new FsError('ESTALE', `/${rel} is not the file looked up any more`);
  }
  // By path or by gfid, the commit record on disk counts (this process may have restarted since).
  b.refuseMoved(rel, gfid0);
  if (flags & O_TRUNC && gfid0 && b.mig.isActive(gfid0)) throw new FsError('EBUSY', 'O_TRUNC on a file being migrated: truncate after open');
  // FIFOs, sockets and devices are the kernel's to open (a mount never asks); a brick opens none: an
  // open of a FIFO would wait for a writer (Storage.open adds O_NONBLOCK too, and the type is checked
  // again on the descriptor).
  const was = b.st.lstat(rel);
  // As open(2) with O_NOFOLLOW says; by gfid, no honest client opens a symlink (a forged handle may be one).
  if (isLnk(was)) throw new (g === undefined ? FsError : Refused)('ELOOP', `${g === undefined ? '/' + rel : 'gfid ' + g} is a symlink`);
  if (!isReg(was) && !isDir(was)) throw new Refused('ENXIO', `/${rel} is a special file; a brick opens regular files and directories only`);
  const h = b.st.open(rel, flags & (O_ACCMODE | O_TRUNC | O_APPEND | O_DIRECTORY), 0);
  let st: Stat;
  try {
    st = b.st.fstat(h);
    if (st.ino !== was.ino || (!isReg(st) && !isDir(st))) throw new FsError('ESTALE', `/${rel} changed while it was opened`);
  } catch (e) {
    b.st.close(h);
    throw e;
  }
  // (addFd closes the file itself when it refuses it.)
  const fd = addFd(b, s, { h, gfid: gfid0, flags });
  return { fd, attr: b.attr(rel, st, gfid0) };
}

export async function read(b: BrickCore, s: Session, a: Decoded<'read'>): Promise<{ data: Buffer; attr: Attr }> {
  const offset = a.offset;
  const length = a.length;
  const f = fdOf(b, s, a.fd, planted.has('read-ignores-moved'));
  if ((f.flags & O_ACCMODE) === O_WRONLY) throw new FsError('EBADF', 'fd is not open for reading');
  b.mig.checkRead(f.gfid);
  const data = await b.st.read(f.h, offset, length, ioBuffers.take(length));
  b.mig.checkRead(f.gfid);
  return { data, attr: fattr(b, f) };
}

export async function write(b: BrickCore, s: Session, a: Decoded<'write'>): Promise<{ written: number; attr: Attr }> {
  const offset = a.offset;
  const data = a.data;
  const f = fdOf(b, s, a.fd);
  if ((f.flags & O_ACCMODE) === O_RDONLY) throw new FsError('EBADF', 'fd is not open for writing');
  const append = (f.flags & O_APPEND) !== 0;
  const dropping = a.dropPrivs && !f.tempRel && f.gfid !== null;
  return b.change(
    f.tempRel ? null : f.gfid,
    async () => {
      if (dropping) dropPrivs(b, f);
      let written = 0;
      while (written < data.length) {
        let n: number;
        try {
          n = await b.st.write(f.h, offset + written, data.subarray(written));
        } catch (e) {
          // As write(2): what was written counts (a full disk after part of it); an error only if nothing was.
          if (written === 0) throw e;
          break;
        }
        if (n <= 0) break;
        written += n;
      }
      return { written, attr: fattr(b, f) };
    },
    (r) => (append ? [r.attr.size - r.written, r.attr.size] : [offset, offset + r.written]),
  );
}

/**
 * A write by a caller without CAP_FSETID (`dropPrivs`, from a FUSE mount) drops the set-user-ID bit,
 * and the set-group-ID bit where the group may execute, as the kernel does on a local disk (this
 * process writes as root, whom the rule spares).
 */
export function dropPrivs(b: BrickCore, f: OpenFile): void {
  const mode = b.st.fstat(f.h).mode & 0o7777;
  let keep = mode & ~S_ISUID;
  if ((mode & (S_ISGID | S_IXGRP)) === (S_ISGID | S_IXGRP)) keep &= ~S_ISGID;
  if (keep !== mode) b.st.chmod(handlePath(f.gfid!), keep);
}

export async function fsync(b: BrickCore, s: Session, a: Decoded<'fsync'>): Promise<Attr> {
  const f = fdOf(b, s, a.fd);
  b.mig.checkRead(f.gfid);
  // `all`: the whole file system (a migration about to switch, so that the switch's own fsyncs find
  // nothing else to write out); the file alone where the storage cannot.
  if (a.all && b.st.syncAll) await b.st.syncAll(f.h);
  else await b.st.fsync(f.h, a.datasync);
  b.mig.checkRead(f.gfid);
  return fattr(b, f);
}

export function ftruncate(b: BrickCore, s: Session, a: Decoded<'ftruncate'>): Promise<Attr> {
  const size = a.size;
  const f = fdOf(b, s, a.fd);
  if ((f.flags & O_ACCMODE) === O_RDONLY) throw new FsError('EBADF', 'fd is not open for writing');
  let old = 0;
  return b.change(
    f.tempRel ? null : f.gfid,
    () => {
      old = b.st.fstat(f.h).size;
      b.st.ftruncate(f.h, size);
      return fattr(b, f);
    },
    () => [Math.min(old, size), Math.max(old, size)],
  );
}

/** fallocate(2)'s modes ext4 has; others are EOPNOTSUPP (as Linux answers PUNCH_HOLE without KEEP_SIZE). */
const FALLOC_MODES = new Set([0, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, FALLOC_FL_ZERO_RANGE, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_INSERT_RANGE]);

/**
 * fallocate(2) on an open file, under the migration rules of any change (docs/MIGRATION.md, "fallocate"):
 * refused once the file moved, held while its migration is frozen, and recorded in the dirty record as
 * the bytes it may change: none for an allocation (the size, if it grows, goes with the freeze's
 * attributes), the range for a punched or zeroed one, and from `offset` to the end (the larger of the
 * old and new ends) for a collapse or an insert, which shift everything after the range.
 */
export function fallocate(b: BrickCore, s: Session, a: Decoded<'fallocate'>): Promise<Attr> {
  const { mode, offset, length } = a;
  const f = fdOf(b, s, a.fd);
  if ((f.flags & O_ACCMODE) === O_RDONLY) throw new FsError('EBADF', 'fd is not open for writing');
  if (!FALLOC_MODES.has(mode)) throw new FsError('EOPNOTSUPP', `fallocate mode ${mode} is not supported`);
  const falloc = b.st.fallocate?.bind(b.st);
  if (!falloc) throw new FsError('EOPNOTSUPP', `${b.cfg.name} cannot fallocate`);
  // An allocation larger than the free space fails at once: the file system would allocate until it is
  // full and keep what it allocated (ext4 does), leaving the brick's disk full for everyone.
  if (!(mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE))) {
    const sf = b.st.statfs();
    if (length > sf.bavail * sf.bsize) throw new FsError('ENOSPC', `fallocate of ${length} bytes: ${sf.bavail * sf.bsize} bytes free on ${b.cfg.name}`);
  }
  let old = 0;
  let now = 0;
  return b.change(
    f.tempRel ? null : f.gfid,
    () => {
      const st = b.st.fstat(f.h);
      if (!isReg(st)) throw new FsError(isDir(st) ? 'EISDIR' : 'ENODEV', 'fallocate needs a regular file');
      old = st.size;
      falloc(f.h, mode, offset, length);
      const attr = fattr(b, f);
      now = attr.size;
      return attr;
    },
    (): [number, number] | null => {
      if (mode === 0 || mode === FALLOC_FL_KEEP_SIZE) return null;
      if (mode & (FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE)) return [offset, Math.max(old, now)];
      return [offset, offset + length];
    },
  );
}

export function fstat(b: BrickCore, s: Session, a: Decoded<'fstat'>): Attr {
  const f = fdOf(b, s, a.fd);
  b.mig.checkRead(f.gfid);
  return fattr(b, f);
}

/**
 * Where a client on this host can read the data file of an open fd itself (local reads, of library
 * handles and of the FUSE mount): the host and this storage's root (null when the storage cannot be shared), the file's handle
 * path under it, the inode the fd reads (a client must open that very inode), and the names of the
 * xattrs that carry the file's gfid and a migration's commit record. A client reading on its own must
 * check, after each read, that the file carries no commit record (docs/MIGRATION.md, "Local reads").
 */
export function fdLocal(b: BrickCore, s: Session, a: Decoded<'fdLocal'>): FdLocal {
  const f = fdOf(b, s, a.fd);
  if (f.tempRel || !f.gfid) throw new FsError('EINVAL', 'fd is not a file of the volume');
  b.mig.checkRead(f.gfid);
  const st = b.st.fstat(f.h);
  if (!isReg(st)) throw new FsError('EINVAL', 'fd is not a regular file');
  const name = b.st.localName?.() ?? null;
  return { source: name ? { ...name, path: handlePath(f.gfid) } : null, ino: st.ino, gfidXattr: b.X.gfid, recordXattr: b.X.migration, writers: !!b.st.lock };
}

/**
 * lseek(2) with SEEK_DATA or SEEK_HOLE. The brick does not track holes (Node has no lseek), so it
 * answers as Linux file systems without hole support do: all of the file is data, the only hole is
 * at its end. Like every fd operation, it is refused on a moved file (F9).
 */
export function seek(b: BrickCore, s: Session, a: Decoded<'seek'>): { offset: number; attr: Attr } {
  const offset = a.offset;
  const whence = a.whence;
  const f = fdOf(b, s, a.fd);
  b.mig.checkRead(f.gfid);
  const attr = fattr(b, f);
  if (offset >= attr.size) throw new FsError('ENXIO', 'offset is at or past the end of the file');
  return { offset: whence === 'data' ? offset : attr.size, attr };
}

export function closeFd(b: BrickCore, s: Session, a: Decoded<'close'>): Record<string, never> {
  const f = fdOf(b, s, a.fd, true);
  forgetFd(b, s, a.fd);
  release(b, f);
  return {};
}
