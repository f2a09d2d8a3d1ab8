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
  1: 'EPERM',
  2: 'ENOENT',
  5: 'EIO',
  7: 'E2BIG',
  13: 'EACCES',
  17: 'EEXIST',
  20: 'ENOTDIR',
  21: 'EISDIR',
  22: 'EINVAL',
  27: 'EFBIG',
  28: 'ENOSPC',
  30: 'EROFS',
  34: 'ERANGE',
  36: 'ENAMETOOLONG',
  39: 'ENOTEMPTY',
  40: 'ELOOP',
  61: 'ENODATA',
  95: 'EOPNOTSUPP',
  122: 'EDQUOT',
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

/**
 * native/copy/at.c: the name-taking calls beneath a held brick-root descriptor (openat2 RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS for the parent, then the *at call), and the storage watchdog.
 */
interface AtCalls {
  openRoot(path: string): number;
  lstat(root: number, rel: string, out: Float64Array): boolean;
  mkdir(root: number, rel: string, mode: number): void;
  unlink(root: number, rel: string, dir: boolean): void;
  rename(root: number, from: string, to: string): void;
  link(root: number, existing: string, rel: string): void;
  symlink(root: number, target: string, rel: string): void;
  readlink(root: number, rel: string): string;
  /** Each name after one character for its type: f, d, l, o. */
  readdir(root: number, rel: string): string[];
  chmod(root: number, rel: string, mode: number): void;
  lchown(root: number, rel: string, uid: number, gid: number): void;
  lutimes(root: number, rel: string, as: number, ans: number, ms: number, mns: number): void;
  truncate(root: number, rel: string, size: number): void;
  getxattr(root: number, rel: string, name: string): Buffer | null;
  setxattr(root: number, rel: string, name: string, value: Uint8Array): void;
  removexattr(root: number, rel: string, name: string): void;
  listxattr(root: number, rel: string): string[];
  open(root: number, rel: string, flags: number, mode: number): number;
  mknod(root: number, rel: string, mode: number, rdev: number): void;
  exchange(root: number, a: string, b: string): void;
  /** Parents resolved from now on are held for reuse until releaseDirs (absent in older builds). */
  holdDirs?(): void;
  releaseDirs?(): void;
  /** A private folder resolved once and kept for the storage's life (absent in older builds). */
  pinDir?(root: number, rel: string): boolean;
  unpinAll?(root: number): void;
  watchdogBlock(): ArrayBuffer | null;
  watchdogStart(brick: string, exitCode: number, logFd: number): void;
  takeDown(msg: string): never;
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
      at?: AtCalls;
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

/** The *at calls, or null where native/copy was not built (or is an older build without them). */
function atCalls(): AtCalls | null {
  return copier()?.at ?? null;
}

/** How a DiskStorage resolves names: beneath its root's descriptor (native/copy), or Node's path calls. */
export function resolution(): 'beneath' | 'paths' {
  return atCalls() ? 'beneath' : 'paths';
}

// --- the storage watchdog ---------------------------------------------------------------------------
//
// Every synchronous DiskStorage call marks itself in a block of memory a native thread watches
// (native/copy/at.c): when one call has been in progress longer than the limit, the thread logs the call
// and its path, shuts the process's sockets down and exits with STORAGE_HUNG_EXIT, even while the event
// loop stays stuck in the kernel. Without the addon there is no watchdog (the health probe remains).

/** The exit code of a brick taken down because the file system below it hangs or fails. */
export const STORAGE_HUNG_EXIT = 75;

let wdTimes: Float64Array | null = null;
let wdBytes: Buffer | null = null;
let wdDepth = 0;
function watchdogBlock(): boolean {
  if (wdTimes === null) {
    const ab = atCalls()?.watchdogBlock() ?? null;
    if (!ab) return false;
    wdTimes = new Float64Array(ab, 0, 2);
    wdBytes = Buffer.from(ab);
  }
  return true;
}

/**
 * Starts the watchdog for this process: a storage call stuck longer than `limitMs` (0: never) takes the
 * brick down. Call again to change the limit. False where the addon is missing.
 */
export function startStorageWatchdog(brick: string, limitMs: number): boolean {
  const at = atCalls();
  if (!at || !watchdogBlock()) return false;
  wdTimes![1] = limitMs;
  at.watchdogStart(brick, STORAGE_HUNG_EXIT, 2);
  return true;
}

/** Changes the watchdog's limit (ms; 0: never). */
export function setStorageWatchdogLimit(limitMs: number): void {
  if (wdTimes) wdTimes[1] = limitMs;
}

/**
 * Takes the brick down as the watchdog does (one fatal log line, every socket shut down, exit with
 * STORAGE_HUNG_EXIT); without the addon, logs the line to stderr and exits.
 */
export function takeBrickDown(msg: string): never {
  const at = atCalls();
  if (at) at.takeDown(msg);
  process.stderr.write(JSON.stringify({ level: 60, time: Date.now(), pid: process.pid, exitCode: STORAGE_HUNG_EXIT, msg }) + '\n');
  process.exit(STORAGE_HUNG_EXIT);
}

// The block keeps the last call's name and path: a call with the same ones (a create names its private
// name three times) does not write them again.
let wdOp = '';
let wdPath: unknown = null;
function markCall(op: string, p: unknown): void {
  if (wdDepth++ > 0 || !wdTimes) return;
  const b = wdBytes!;
  if (op !== wdOp) {
    const n = b.write(op, 16, 31, 'latin1');
    b[16 + n] = 0;
    wdOp = op;
  }
  if (p !== wdPath) {
    const m = typeof p === 'string' ? b.write(p, 48, 511, 'utf8') : typeof p === 'number' ? b.write(`fd ${p}`, 48, 'latin1') : 0;
    b[48 + m] = 0;
    wdPath = p;
  }
  wdTimes[0] = Date.now();
}

function unmarkCall(): void {
  if (--wdDepth > 0 || !wdTimes) return;
  wdTimes[0] = 0;
}

// --- parents held for one stretch ------------------------------------------------------------------
//
// A create names the private directory (.glusterfs/dhtfs-rename) five times and its parent twice, a
// listing its directory twice per entry: each name's parent was resolved by its own openat2 and closed
// again. native/copy holds the parents it resolves while a synchronous stretch of brick work runs (one
// request's synchronous part, or a listing's loop) and lets them go at the next microtask: no await, no
// other request and no timer falls inside a stretch. Each parent is still resolved beneath the root
// with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS the first time the stretch names it; see held_t in
// native/copy/at.c for why a descriptor held for a stretch is as safe as one held for a call.

let holdingDirs = false;
function releaseDirs(): void {
  holdingDirs = false;
  atCalls()?.releaseDirs?.();
}
function holdDirs(): void {
  if (holdingDirs) return;
  const at = atCalls();
  if (!at?.holdDirs) return;
  holdingDirs = true;
  at.holdDirs();
  queueMicrotask(releaseDirs);
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

/** One lstat's answer from native/copy (reused: the brick is single-threaded). */
const statOut = new Float64Array(14);

function statOf(o: Float64Array): Stat {
  return {
    ino: o[0],
    mode: o[1],
    nlink: o[2],
    uid: o[3],
    gid: o[4],
    size: o[5],
    blocks: o[6],
    atime: [o[7], o[8]],
    mtime: [o[9], o[10]],
    ctime: [o[11], o[12]],
    ...(o[13] ? { rdev: o[13] } : {}),
  };
}

const TYPES: Record<string, DirEntry['type']> = { f: 'file', d: 'dir', l: 'symlink', o: 'other' };

/**
 * Storage on a real directory. Every name is resolved beneath a descriptor of the brick's folder held
 * for the storage's life (native/copy/at.c): the parent of the last component by openat2 with
 * RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS, then the *at call on the last one,
 * not following it. A folder of the volume swapped for a symlink on the brick's disk (a local user's
 * race, issue 17 item 7) makes the call fail with ELOOP (ENOTDIR for a file, EXDEV for a way out),
 * never reach outside the brick; and paths are as long as the kernel takes beneath the root (the
 * brick's own folder is not prefixed: a volume path near PATH_MAX works). Without the addon, Node's
 * path calls on the joined path, each component above the last lstat'ed first (not race-free).
 */
export class DiskStorage implements Storage {
  private peers = new Map<string, DiskStorage>();
  readonly lock = fileLock();
  private readonly readXattr = xattrReader();
  private readonly at = atCalls();
  private rootFd = -1;
  constructor(readonly root: string) {}

  /** The root's descriptor (O_PATH), opened at first use and held. */
  private get r(): number {
    if (this.rootFd < 0) this.rootFd = this.at!.openRoot(this.root);
    return this.rootFd;
  }

  /** Lets the root's descriptor go (a later call opens it again). */
  dispose(): void {
    releaseDirs(); // held parents are keyed by the root's descriptor, whose number is free once closed
    if (this.rootFd >= 0) {
      this.at?.unpinAll?.(this.rootFd);
      fs.closeSync(this.rootFd);
    }
    this.rootFd = -1;
  }

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
      if (this.peers.size > 64) {
        for (const q of this.peers.values()) q.dispose();
        this.peers.clear();
      }
      p = new DiskStorage(name.root);
      this.peers.set(name.root, p);
    }
    return p;
  }

  /** The joined path, for Node's calls (no addon). Each component above the last must be a real directory. */
  private abs(p: string): string {
    if (p === '') return this.root;
    for (let i = p.indexOf('/'); i >= 0; i = p.indexOf('/', i + 1)) {
      const st = fs.lstatSync(path.join(this.root, p.slice(0, i)), { throwIfNoEntry: false });
      if (st && !st.isDirectory()) throw FsError.quiet(st.isSymbolicLink() ? 'ELOOP' : 'ENOTDIR', `/${p.slice(0, i)}: not a directory`);
    }
    return path.join(this.root, p);
  }

  lstat(p: string): Stat {
    if (this.at) {
      if (!this.at.lstat(this.r, p, statOut)) throw FsError.quiet('ENOENT', `/${p}: no such file or directory`);
      return statOf(statOut);
    }
    // A missing name is a common answer (every negative lookup): no exception from Node for it.
    const st = fs.lstatSync(this.abs(p), { bigint: true, throwIfNoEntry: false });
    if (!st) throw FsError.quiet('ENOENT', `/${p}: no such file or directory`);
    return toStat(st);
  }
  mkdir(p: string, mode: number): void {
    if (this.at) this.at.mkdir(this.r, p, mode);
    else fs.mkdirSync(this.abs(p), { mode });
  }
  rmdir(p: string): void {
    if (this.at) this.at.unlink(this.r, p, true);
    else fs.rmdirSync(this.abs(p));
  }
  unlink(p: string): void {
    if (this.at) this.at.unlink(this.r, p, false);
    else fs.unlinkSync(this.abs(p));
  }
  rename(from: string, to: string): void {
    if (this.at) this.at.rename(this.r, from, to);
    else fs.renameSync(this.abs(from), this.abs(to));
  }
  link(existing: string, p: string): void {
    if (this.at) this.at.link(this.r, existing, p);
    else fs.linkSync(this.abs(existing), this.abs(p));
  }
  symlink(target: string, p: string): void {
    if (this.at) this.at.symlink(this.r, target, p);
    else fs.symlinkSync(target, this.abs(p));
  }
  /** FIFOs, sockets and device nodes, through native/copy (Node's fs has no mknod); EPERM where it was not built. */
  mknod(p: string, mode: number, rdev: number): void {
    if (this.at) return this.at.mknod(this.r, p, mode, rdev);
    const c = copier();
    if (!c?.mknod) throw new FsError('EPERM', 'special files need the native/copy addon');
    c.mknod(this.abs(p), mode, rdev);
  }
  readlink(p: string): string {
    if (this.at) return this.at.readlink(this.r, p);
    return fs.readlinkSync(this.abs(p), 'utf8');
  }
  readdir(p: string): DirEntry[] {
    if (this.at) return this.at.readdir(this.r, p).map((e) => ({ name: e.slice(1), type: TYPES[e[0]] }));
    return fs.readdirSync(this.abs(p), { withFileTypes: true }).map(dirent);
  }
  /** Never through a symlink, the last component's included (EOPNOTSUPP there, as lchmod). */
  chmod(p: string, mode: number): void {
    if (this.at) this.at.chmod(this.r, p, mode);
    else fs.chmodSync(this.abs(p), mode);
  }
  lchown(p: string, uid: number, gid: number): void {
    if (this.at) this.at.lchown(this.r, p, uid, gid);
    else fs.lchownSync(this.abs(p), uid, gid);
  }
  /** To the nanosecond through native/copy (utimensat); Node's own keeps microseconds only. */
  lutimes(p: string, atime: Timespec, mtime: Timespec): void {
    if (this.at) this.at.lutimes(this.r, p, atime[0], atime[1], mtime[0], mtime[1]);
    else fs.lutimesSync(this.abs(p), secs(atime), secs(mtime));
  }
  /** Regular files only: a symlink is not followed (EINVAL). */
  truncate(p: string, size: number): void {
    if (this.at) this.at.truncate(this.r, p, size);
    else fs.truncateSync(this.abs(p), size);
  }

  getxattr(p: string, name: string): Buffer | null {
    if (this.at) return this.at.getxattr(this.r, p, name);
    return this.readXattr(this.abs(p), name);
  }
  setxattr(p: string, name: string, value: Uint8Array): void {
    if (this.at) return this.at.setxattr(this.r, p, name, value instanceof Uint8Array && value.constructor === Uint8Array ? value : Uint8Array.from(value));
    try {
      xattr.setAttributeSync(this.abs(p), name, value);
    } catch (e) {
      throw xattrError(e);
    }
  }
  removexattr(p: string, name: string): void {
    if (this.at) return this.at.removexattr(this.r, p, name);
    try {
      xattr.removeAttributeSync(this.abs(p), name);
    } catch (e) {
      throw xattrError(e);
    }
  }
  listxattr(p: string): string[] {
    if (this.at) return this.at.listxattr(this.r, p);
    try {
      return xattr.listAttributesSync(this.abs(p));
    } catch (e) {
      throw xattrError(e);
    }
  }

  open(p: string, flags: number, mode: number): number {
    if (this.at) return this.at.open(this.r, p, flags | O_NOFOLLOW | O_NONBLOCK, mode);
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
  /**
   * Keeps a private folder's descriptor (native/copy/at.c pin_t): its calls no longer resolve it, one
   * openat2 and one close each. Nothing where the addon was not built.
   */
  pinDir(p: string): void {
    this.at?.pinDir?.(this.r, p);
  }
  /** renameat2 RENAME_EXCHANGE through native/copy; EXDEV where it was not built. */
  exchange(from: string, to: string): void {
    if (this.at) return this.at.exchange(this.r, from, to);
    const c = copier();
    if (!c?.exchange) throw new FsError('EXDEV', 'RENAME_EXCHANGE needs the native/copy addon');
    c.exchange(this.abs(from), this.abs(to));
  }
}

/**
 * An error of native/copy (an Error with an errno-name `code`, strerror's message) as an FsError naming
 * the call and the volume's paths: `mkdir /a: file exists`.
 */
function nativeError(e: unknown, op: string, args: unknown[]): unknown {
  const ne = e as { code?: unknown; syscall?: unknown; message?: unknown };
  if (e instanceof FsError || !ne || typeof ne.code !== 'string' || ne.syscall !== undefined || !/^E[A-Z0-9]+$/.test(ne.code)) return e;
  const paths = (op === 'symlink' ? [args[1]] : op === 'rename' || op === 'link' || op === 'exchange' ? [args[0], args[1]] : [args[0]]).filter((a): a is string => typeof a === 'string');
  const what = typeof ne.message === 'string' && ne.message ? ne.message[0].toLowerCase() + ne.message.slice(1) : ne.code;
  return FsError.quiet(ne.code, `${op}${paths.length ? ' ' + paths.map((p) => '/' + p).join(' -> ') : ''}: ${what}`);
}

// Every error a DiskStorage method throws or rejects with names the volume's paths, never the brick's
// directory on its host (common/errors.ts brickError): the brick sends these messages to its clients.
// Every call also marks itself for the storage watchdog while its synchronous part runs.
for (const key of Object.getOwnPropertyNames(DiskStorage.prototype)) {
  const proto = DiskStorage.prototype as unknown as Record<string, unknown>;
  const f = Object.getOwnPropertyDescriptor(proto, key)?.value as unknown;
  if (key === 'constructor' || typeof f !== 'function') continue;
  // Five parameters at most (copyRange's): no array of arguments per call, one only for an error's message.
  const call = f as (this: DiskStorage, a: unknown, b: unknown, c: unknown, d: unknown, e: unknown) => unknown;
  proto[key] = function (this: DiskStorage, a: unknown, b: unknown, c: unknown, d: unknown, e: unknown): unknown {
    markCall(key, key === 'symlink' ? b : a);
    holdDirs();
    try {
      const r = call.call(this, a, b, c, d, e);
      return r instanceof Promise ? r.catch((err: unknown) => Promise.reject(brickError(nativeError(err, key, [a, b]), this.root))) : r;
    } catch (err) {
      throw brickError(nativeError(err, key, [a, b]), this.root);
    } finally {
      unmarkCall();
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
  /** Resolved once the descriptor is closed (an unlinked file's blocks are freed then). */
  private closed: Promise<void> | null = null;
  private descriptorClosed = () => {};
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
      if (--this.busy === 0 && this.closing) fs.close(this.fd, () => this.descriptorClosed());
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

  close(): Promise<void> {
    if (this.closed) return this.closed;
    this.closing = true;
    this.closed = new Promise<void>((res) => (this.descriptorClosed = res));
    if (this.busy === 0) fs.close(this.fd, () => this.descriptorClosed());
    return this.closed;
  }
}
