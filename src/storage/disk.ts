/** Storage on a real directory: real files, real xattrs (edge code; the only brick file touching `fs`). */
import fs from 'node:fs';
import path from 'node:path';
import { statfsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import * as xattr from '@napi-rs/xattr';
import type { DirEntry, FdLocal, FileLockMode, LocalFile, LocalFiles, LocalName, Stat, StatFs, Storage, Timespec } from './storage.js';
import { O_NOFOLLOW, O_NONBLOCK, O_RDONLY, O_RDWR } from './storage.js';
import { FsError, brickError } from '../common/errors.js';
import { hostId } from '../common/real-env.js';
import { gfidToBytes } from '../common/gfid.js';

const ERRNO_NAMES: Record<number, string> = {
  1: 'EPERM', 2: 'ENOENT', 5: 'EIO', 7: 'E2BIG', 13: 'EACCES', 17: 'EEXIST', 20: 'ENOTDIR', 21: 'EISDIR',
  22: 'EINVAL', 27: 'EFBIG', 28: 'ENOSPC', 30: 'EROFS', 34: 'ERANGE', 36: 'ENAMETOOLONG', 39: 'ENOTEMPTY',
  40: 'ELOOP', 61: 'ENODATA', 95: 'EOPNOTSUPP', 122: 'EDQUOT',
};

/** @napi-rs/xattr reports "... (os error N)"; turn it into an errno-coded error. */
function xattrError(e: unknown): Error {
  const msg = (e as Error)?.message ?? String(e);
  const m = /os error (\d+)/.exec(msg);
  const code = m ? (ERRNO_NAMES[Number(m[1])] ?? 'EIO') : 'EIO';
  return Object.assign(new Error(msg), { code });
}

function ts(ns: bigint): Timespec {
  return [Number(ns / 1_000_000_000n), Number(ns % 1_000_000_000n)];
}

function toStat(s: fs.BigIntStats): Stat {
  return {
    ino: Number(s.ino),
    mode: Number(s.mode),
    nlink: Number(s.nlink),
    uid: Number(s.uid),
    gid: Number(s.gid),
    size: Number(s.size),
    blocks: Number(s.blocks),
    atime: ts(s.atimeNs),
    mtime: ts(s.mtimeNs),
    ctime: ts(s.ctimeNs),
    ...(s.rdev ? { rdev: Number(s.rdev) } : {}),
  };
}

function dirent(d: fs.Dirent): DirEntry {
  return {
    name: d.name,
    type: d.isFile() ? 'file' : d.isDirectory() ? 'dir' : d.isSymbolicLink() ? 'symlink' : 'other',
  };
}

/** Timespec to the seconds value fs.utimes takes (double: loses sub-microsecond precision). */
function secs(t: Timespec): number {
  return t[0] + t[1] / 1e9;
}

/** native/copy: copy_file_range, when it was built (scripts/setup.sh); null otherwise. */
let copyAddon:
  | {
      copyRange(fdIn: number, fdOut: number, offset: number, length: number): Promise<number>;
      syncFs(fd: number): Promise<number>;
      fgetxattr?(fd: number, name: string): Buffer | null;
      lgetxattr?(path: string, name: string): Buffer | null;
      mknod?(path: string, mode: number, rdev?: number): void;
      lutimes?(path: string, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number): void;
      lock?(fd: number, byte: number, mode: number): boolean;
      seekData?(fd: number, offset: number, hole: boolean): number;
      fallocate?(fd: number, mode: number, offset: number, length: number): void;
      exchange?(from: string, to: string): void;
    }
  | null
  | undefined;
function copier(): typeof copyAddon {
  if (copyAddon === undefined) {
    try {
      // dist/src/storage -> the repository's root
      const here = path.dirname(fileURLToPath(import.meta.url));
      copyAddon = createRequire(import.meta.url)(path.join(here, '..', '..', '..', 'native', 'copy', 'build', 'Release', 'dhtfs_copy.node'));
    } catch {
      copyAddon = null;
    }
  }
  return copyAddon;
}

/** Writes up to this size are made on the event loop (see DiskStorage.write). */
const SYNC_WRITE_MAX = 64 * 1024;

const LOCK_MODES: Record<FileLockMode, number> = { unlock: 0, shared: 1, exclusive: 2 };

/** Storage.lock through native/copy (open file description locks); undefined where it was not built. */
function fileLock(): ((fd: number, byte: number, mode: FileLockMode) => boolean) | undefined {
  const c = copier();
  return c?.lock ? (fd, byte, mode) => c.lock!(fd, byte, LOCK_MODES[mode]) : undefined;
}

/** An xattr of a path: native/copy's lgetxattr (one system call for small values), else @napi-rs/xattr. */
function xattrReader(): (p: string, name: string) => Buffer | null {
  const c = copier();
  if (c?.lgetxattr) return c.lgetxattr.bind(c);
  return (p, name) => {
    try {
      return xattr.getAttributeSync(p, name);
    } catch (e) {
      throw xattrError(e);
    }
  };
}

export class DiskStorage implements Storage {
  private peers = new Map<string, DiskStorage>();
  readonly lock = fileLock();
  private readonly readXattr = xattrReader();
  constructor(readonly root: string) {}

  localName(): LocalName | null {
    const host = hostId();
    return host ? { host, root: path.resolve(this.root) } : null;
  }

  copyRange(peer: Storage, from: number, h: number, offset: number, length: number): Promise<number> {
    const c = copier();
    if (!c || !(peer instanceof DiskStorage)) return Promise.reject(Object.assign(new Error('no copy_file_range here'), { code: 'ENOSYS' }));
    return c.copyRange(from, h, offset, length);
  }

  /** SEEK_DATA / SEEK_HOLE through native/copy; a file is all data where it was not built. */
  seekData(h: number, offset: number, hole: boolean): number {
    const c = copier();
    if (c?.seekData) return c.seekData(h, offset, hole);
    const size = fs.fstatSync(h).size;
    return offset >= size ? -1 : hole ? size : offset;
  }

  async syncAll(h: number): Promise<void> {
    const c = copier();
    if (c) await c.syncFs(h);
    else await this.fsync(h, true);
  }

  peer(name: LocalName): Storage | null {
    if (!hostId() || name.host !== hostId() || !path.isAbsolute(name.root)) return null;
    let p = this.peers.get(name.root);
    if (!p) {
      if (this.peers.size > 64) this.peers.clear();
      p = new DiskStorage(name.root);
      this.peers.set(name.root, p);
    }
    return p;
  }

  private abs(p: string): string {
    return p === '' ? this.root : path.join(this.root, p);
  }

  lstat(p: string): Stat {
    // A missing name is a common answer (every negative lookup): no exception from Node for it.
    const st = fs.lstatSync(this.abs(p), { bigint: true, throwIfNoEntry: false });
    if (!st) throw FsError.quiet('ENOENT', `/${p}: no such file or directory`);
    return toStat(st);
  }
  mkdir(p: string, mode: number): void {
    fs.mkdirSync(this.abs(p), { mode });
  }
  rmdir(p: string): void {
    fs.rmdirSync(this.abs(p));
  }
  unlink(p: string): void {
    fs.unlinkSync(this.abs(p));
  }
  rename(from: string, to: string): void {
    fs.renameSync(this.abs(from), this.abs(to));
  }
  link(existing: string, p: string): void {
    fs.linkSync(this.abs(existing), this.abs(p));
  }
  symlink(target: string, p: string): void {
    fs.symlinkSync(target, this.abs(p));
  }
  /** FIFOs, sockets and device nodes, through native/copy (Node's fs has no mknod); EPERM where it was not built. */
  mknod(p: string, mode: number, rdev: number): void {
    const c = copier();
    if (!c?.mknod) throw new FsError('EPERM', 'special files need the native/copy addon');
    c.mknod(this.abs(p), mode, rdev);
  }
  readlink(p: string): string {
    return fs.readlinkSync(this.abs(p), 'utf8');
  }
  readdir(p: string): DirEntry[] {
    return fs.readdirSync(this.abs(p), { withFileTypes: true }).map(dirent);
  }
  chmod(p: string, mode: number): void {
    fs.chmodSync(this.abs(p), mode);
  }
  lchown(p: string, uid: number, gid: number): void {
    fs.lchownSync(this.abs(p), uid, gid);
  }
  /** To the nanosecond through native/copy (utimensat); Node's own keeps microseconds only. */
  lutimes(p: string, atime: Timespec, mtime: Timespec): void {
    const c = copier();
    if (c?.lutimes) c.lutimes(this.abs(p), atime[0], atime[1], mtime[0], mtime[1]);
    else fs.lutimesSync(this.abs(p), secs(atime), secs(mtime));
  }
  truncate(p: string, size: number): void {
    fs.truncateSync(this.abs(p), size);
  }

  getxattr(p: string, name: string): Buffer | null {
    return this.readXattr(this.abs(p), name);
  }
  setxattr(p: string, name: string, value: Uint8Array): void {
    try {
      xattr.setAttributeSync(this.abs(p), name, value);
    } catch (e) {
      throw xattrError(e);
    }
  }
  removexattr(p: string, name: string): void {
    try {
      xattr.removeAttributeSync(this.abs(p), name);
    } catch (e) {
      throw xattrError(e);
    }
  }
  listxattr(p: string): string[] {
    try {
      return xattr.listAttributesSync(this.abs(p));
    } catch (e) {
      throw xattrError(e);
    }
  }

  open(p: string, flags: number, mode: number): number {
    return fs.openSync(this.abs(p), flags | O_NOFOLLOW | O_NONBLOCK, mode);
  }
  close(h: number): void {
    fs.closeSync(h);
  }
  fstat(h: number): Stat {
    return toStat(fs.fstatSync(h, { bigint: true }));
  }
  ftruncate(h: number, size: number): void {
    fs.ftruncateSync(h, size);
  }
  read(h: number, offset: number, length: number, into?: Buffer): Promise<Buffer> {
    const buf = into && into.length >= length ? into.subarray(0, length) : Buffer.allocUnsafe(length);
    return new Promise((resolve, reject) => {
      fs.read(h, buf, 0, length, offset, (err, n) => (err ? reject(err) : resolve(n === length ? buf : buf.subarray(0, n))));
    });
  }
  write(h: number, offset: number, data: Uint8Array): Promise<number> {
    // A small write goes to the page cache at once, on the event loop: through libuv's thread pool it
    // would cost two thread switches and a wakeup of the loop, more than the copy itself. Large ones
    // stay off the event loop.
    if (data.length <= SYNC_WRITE_MAX) {
      try {
        return Promise.resolve(fs.writeSync(h, data, 0, data.length, offset));
      } catch (e) {
        return Promise.reject(e);
      }
    }
    return new Promise((resolve, reject) => {
      fs.write(h, data, 0, data.length, offset, (err, n) => (err ? reject(err) : resolve(n)));
    });
  }
  fsync(h: number, datasync: boolean): Promise<void> {
    return new Promise((resolve, reject) => {
      (datasync ? fs.fdatasync : fs.fsync)(h, (err) => (err ? reject(err) : resolve()));
    });
  }
  statfs(): StatFs {
    const s = statfsSync(this.root);
    const host = hostId();
    const out: StatFs = { bsize: s.bsize, blocks: s.blocks, bfree: s.bfree, bavail: s.bavail, files: s.files, ffree: s.ffree };
    if (host) out.fsid = `${host}/${fs.statSync(this.root).dev}`;
    return out;
  }
  /** fallocate(2) through native/copy (Node's fs has none); EOPNOTSUPP where it was not built. */
  fallocate(h: number, mode: number, offset: number, length: number): void {
    const c = copier();
    if (!c?.fallocate) throw new FsError('EOPNOTSUPP', 'fallocate needs the native/copy addon');
    c.fallocate(h, mode, offset, length);
  }
  /** fchown, fchmod, futimes (to the microsecond: Node's takes seconds) of an open file. */
  fsetattr(h: number, o: { mode?: number; uid?: number; gid?: number; atime?: Timespec; mtime?: Timespec }): void {
    if (o.uid !== undefined || o.gid !== undefined) fs.fchownSync(h, o.uid ?? -1, o.gid ?? -1);
    if (o.mode !== undefined) fs.fchmodSync(h, o.mode);
    if (o.atime || o.mtime) {
      const st = fs.fstatSync(h, { bigint: true });
      fs.futimesSync(h, secs(o.atime ?? ts(st.atimeNs)), secs(o.mtime ?? ts(st.mtimeNs)));
    }
  }
  /** renameat2 RENAME_EXCHANGE through native/copy; EXDEV where it was not built. */
  exchange(from: string, to: string): void {
    const c = copier();
    if (!c?.exchange) throw new FsError('EXDEV', 'RENAME_EXCHANGE needs the native/copy addon');
    c.exchange(this.abs(from), this.abs(to));
  }
}

// Every error a DiskStorage method throws or rejects with names the volume's paths, never the brick's
// directory on its host (common/errors.ts brickError): the brick sends these messages to its clients.
for (const key of Object.getOwnPropertyNames(DiskStorage.prototype)) {
  const proto = DiskStorage.prototype as unknown as Record<string, unknown>;
  const f = proto[key];
  if (key === 'constructor' || typeof f !== 'function') continue;
  proto[key] = function (this: DiskStorage, ...args: unknown[]): unknown {
    try {
      const r = (f as (...a: unknown[]) => unknown).apply(this, args);
      return r instanceof Promise ? r.catch((e: unknown) => Promise.reject(brickError(e, this.root))) : r;
    } catch (e) {
      throw brickError(e, this.root);
    }
  };
}

/**
 * Opens, for a client's local reads and writes, the brick's file that Brick.fdLocal named: only on this
 * host, and only if the descriptor is that very inode (a regular file with the inode number the brick
 * reads, and the gfid xattr the client expects); null otherwise. `writable`: read and write (a shared
 * lock needs a readable descriptor). The FUSE mount hands the descriptor to its addon.
 */
export async function openLocalFile(src: FdLocal, gfid: string, writable: boolean): Promise<number | null> {
  const c = copier();
  if (!c?.fgetxattr || !src.source || src.source.host !== hostId() || !path.isAbsolute(src.source.root)) return null;
  const flags = (writable ? O_RDWR : O_RDONLY) | O_NOFOLLOW;
  const fd = await new Promise<number>((res, rej) => fs.open(path.join(src.source!.root, src.source!.path), flags, (e, d) => (e ? rej(e) : res(d)))).catch(() => null);
  if (fd === null) return null;
  try {
    const st = fs.fstatSync(fd);
    const g = c.fgetxattr(fd, src.gfidXattr);
    if (st.isFile() && st.ino === src.ino && g && g.equals(gfidToBytes(gfid))) return fd;
  } catch {
    /* not this file */
  }
  fs.close(fd, () => {});
  return null;
}

/**
 * Local reads and writes on this host's disks (LocalFiles); the commit record is read with native/copy's
 * fgetxattr, and its locks are native/copy's too (none where the brick does not take them: no writes).
 */
export const diskLocalFiles: LocalFiles = {
  async open(src, gfid, writable) {
    const lock = writable ? fileLock() : undefined;
    const fd = await openLocalFile(src, gfid, !!lock);
    const c = copier();
    return fd === null || !c?.fgetxattr ? null : new DiskLocalFile(fd, src.recordXattr, c.fgetxattr.bind(c), lock ?? null);
  },
};

class DiskLocalFile implements LocalFile {
  /** Reads and writes in flight. */
  private busy = 0;
  private closing = false;
  constructor(
    private readonly fd: number,
    private readonly record: string,
    private readonly fgetxattr: (fd: number, name: string) => Buffer | null,
    private readonly locker: ((fd: number, byte: number, mode: FileLockMode) => boolean) | null,
  ) {}

  private io(run: (done: (e: Error | null, n: number) => void) => void): Promise<number> {
    if (this.closing) return Promise.reject(new FsError('EBADF', 'local file closed'));
    this.busy++;
    return new Promise<number>((res, rej) => run((e, n) => (e ? rej(e) : res(n)))).finally(() => {
      // The descriptor is closed only once nothing uses it: its number could name another file next.
      if (--this.busy === 0 && this.closing) fs.close(this.fd, () => {});
    });
  }

  read(into: Uint8Array, length: number, position: number): Promise<number> {
    return this.io((done) => fs.read(this.fd, into, 0, length, position, done));
  }

  write(data: Uint8Array, length: number, position: number): Promise<number> {
    return this.io((done) => fs.write(this.fd, data, 0, length, position, done));
  }

  recorded(): boolean {
    if (this.closing) return true;
    try {
      return this.fgetxattr(this.fd, this.record) !== null;
    } catch {
      return true;
    }
  }

  lock(byte: number, mode: FileLockMode): boolean {
    // Once closed, the descriptor's locks are gone with it (and its number may name another file).
    if (this.closing && this.busy === 0) return mode === 'unlock';
    if (!this.locker || (this.closing && mode !== 'unlock')) return false;
    try {
      return this.locker(this.fd, byte, mode);
    } catch {
      return false;
    }
  }

  close(): void {
    if (this.closing) return;
    this.closing = true;
    if (this.busy === 0) fs.close(this.fd, () => {});
  }
}
