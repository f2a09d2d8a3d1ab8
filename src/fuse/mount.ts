/**
 * The FUSE mount: a volume as a kernel file system, so that unmodified programs work on it.
 *
 * The kernel's requests arrive through dhtfs's libfuse 3 addon (native/fuse.c, on libfuse's low-level
 * API: it keeps the kernel's inodes as names under their parents) as (op, path, numbers, buffer) and are
 * answered from the library API. Open files are the library's FileHandles, so every fd operation follows
 * a migration's commit exactly as library users do (docs/MIGRATION.md). The kernel keeps names and
 * directories' attributes ENTRY_TIMEOUT (no migration changes either), never a file's attributes, and
 * drops a file's pages at each open, so no cache can hide a migration from the data path.
 */
import { createRequire } from 'node:module';
import { constants as osConstants } from 'node:os';
import { close, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { codeOf } from '../common/errors.js';
import { openLocalFile } from '../storage/disk.js';
import type { FileHandle, Volume } from '../api/volume.js';
import type { Stats } from '../api/stats.js';
import type { Attr } from '../wire/types.js';
import { O_ACCMODE, O_APPEND, O_CREAT, O_EXCL, O_TRUNC, O_WRONLY, S_IFDIR, S_IFMT, S_IFREG } from '../storage/storage.js';

interface Native {
  mount(mountpoint: string, options: string[], maxIo: number, handler: Handler, entryTimeout: number): void;
  unmount(): void;
  reply(req: unknown, result: number, extra?: unknown): void;
  /** The addon answers the kernel's getattr of `path` with `attr` for `ms` (until dropped). */
  keepDir(path: string, attr: number[], ms: number): void;
  /** Drops what keepDir kept for `path`, or everything. */
  dropDir(path?: string): void;
  /**
   * Reads and getattrs of handle `fh`, and its writes if `writable`, are answered from descriptor `fd`
   * (the addon owns it from now on; openLocalFile checked it is the handle's file) while the file carries
   * no xattr `record`, with `ino` for its inode number. setLocal(fh) drops it.
   */
  setLocal(fh: number, fd?: number, record?: string, ino?: number, writable?: boolean): boolean;
  /** Whether the kernel maps files open for direct I/O MAP_SHARED (FUSE_DIRECT_IO_ALLOW_MMAP, Linux 6.6). */
  directMmap(): boolean;
}
type Handler = (req: unknown, op: string, path: string | null, path2: string | null, nums: number[], buf: Buffer | null) => void;

/** Where the addon is built (scripts/setup.sh runs node-gyp in native/). */
export function addonPath(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  // dist/src/fuse -> repo root
  return join(here, '..', '..', '..', 'native', 'build', 'Release', 'dhtfs_fuse.node');
}

export function fuseAvailable(): { ok: boolean; why?: string } {
  if (!existsSync('/dev/fuse')) return { ok: false, why: '/dev/fuse is missing' };
  if (!existsSync(addonPath())) return { ok: false, why: `the FUSE addon is not built (${addonPath()}); run npm run setup` };
  return { ok: true };
}

const UTIME_NOW = (1 << 30) - 1;
const XATTR_CREATE = 1;
const XATTR_REPLACE = 2;
const RENAME_NOREPLACE = 1;
const RENAME_EXCHANGE = 2;
const MAX_IO = 1024 * 1024;
/** Sequential reads keep this many requests of MAX_IO in flight (see raiseReadahead). */
const READAHEAD_REQUESTS = 4;
/**
 * Names and directories' attributes stay in the kernel this long: a migration never changes a name or a
 * directory, so a cached one cannot hide it (another client's rename, unlink or chmod of a directory
 * shows within this time; negative entries and files' attributes are never cached, so reads always see
 * fresh sizes and times).
 */
export const ENTRY_TIMEOUT = 1;
/** Operations that make or remove a name that is not a directory: its parent's times change, nothing else. */
const ENTRY_OPS = new Set(['mknod', 'create', 'unlink', 'symlink', 'link']);
const parentOf = (p: string) => p.slice(0, Math.max(1, p.lastIndexOf('/')));

/** Operations that may change a directory's attributes (its times, link count, mode or owner). */
const CHANGES_NAMESPACE = new Set(['mkdir', 'mknod', 'create', 'unlink', 'rmdir', 'symlink', 'rename', 'link', 'setattr', 'setxattr', 'removexattr']);

/** setattr's `which` bits (FUSE_SET_ATTR_*). */
const SET_MODE = 1 << 0;
const SET_UID = 1 << 1;
const SET_GID = 1 << 2;
const SET_SIZE = 1 << 3;
const SET_ATIME = 1 << 4;
const SET_MTIME = 1 << 5;

function errnoOf(e: unknown): number {
  const code = codeOf(e);
  const n = (osConstants.errno as Record<string, number>)[code ?? ''];
  return n ? -n : -osConstants.errno.EIO;
}

/** The inode number programs see: from the gfid (a brick's own inode numbers repeat across bricks). */
function inoOf(gfid: string | null, fallback: number): number {
  return gfid ? parseInt(gfid.replace(/-/g, '').slice(-12), 16) : fallback;
}

function statArray(a: Attr): number[] {
  return [a.mode, a.nlink, a.uid, a.gid, a.size, a.blocks, a.atime[0], a.atime[1], a.mtime[0], a.mtime[1], a.ctime[0], a.ctime[1], inoOf(a.gfid, a.ino ?? 0), a.rdev ?? 0];
}

function statsArray(s: Stats): number[] {
  const t = (x: bigint): [number, number] => [Number(x / 1_000_000_000n), Number(x % 1_000_000_000n)];
  return [s.mode, s.nlink, s.uid, s.gid, s.size, s.blocks, ...t(s.atimeNs), ...t(s.mtimeNs), ...t(s.ctimeNs), inoOf(s.gfid, s.ino), s.rdev];
}

export interface MountOptions {
  /** Extra -o options for libfuse. */
  options?: string[];
  /** Called with each failed request (for logs). */
  onError?: (op: string, path: string | null, e: unknown) => void;
  /** Seconds the kernel keeps a name's lookup (default ENTRY_TIMEOUT; 0: none). */
  entryTimeout?: number;
  /** Called once the kernel mount is gone: unmount(), or an unmount from outside (umount, fusermount3 -u). */
  onEnded?: () => void;
}

export class FuseMount {
  private native: Native;
  private handles = new Map<number, FileHandle>();
  /** Directories' attributes, kept ENTRY_TIMEOUT like the kernel keeps names (see attrOf). */
  private dirs = new Map<string, { attr: number[]; until: number }>();
  private nextFh = 1;
  private mounted = false;
  /** Handles given a local descriptor, or being given one, or that cannot have one: where the handle was. */
  private local = new Map<number, string>();

  constructor(
    readonly volume: Volume,
    readonly mountpoint: string,
    private readonly o: MountOptions = {},
  ) {
    const require = createRequire(import.meta.url);
    this.native = require(addonPath()) as Native;
  }

  mount(): void {
    const opts = ['fsname=dhtfs', 'subtype=dhtfs', 'default_permissions', ...(process.getuid?.() === 0 ? ['allow_other'] : []), ...(this.o.options ?? [])];
    this.dropDirs(); // (the addon's are per process)
    this.native.mount(
      this.mountpoint,
      opts,
      MAX_IO,
      (req, op, path, path2, nums, buf) => {
        if (op === 'ended') {
          this.mounted = false;
          void this.closeHandles().finally(() => this.o.onEnded?.());
          return;
        }
        this.handle(op, path, path2, nums, buf).then(
          (r) => this.native.reply(req, r.result, r.extra),
          (e) => {
            const code = errnoOf(e);
            if (code === -osConstants.errno.EIO) this.o.onError?.(op, path, e);
            this.native.reply(req, code);
          },
        );
      },
      this.o.entryTimeout ?? ENTRY_TIMEOUT,
    );
    this.mounted = true;
    this.raiseReadahead();
  }

  /**
   * Reads through the page cache (of a mapped file, or any file where the kernel cannot map direct-I/O
   * files) come as the kernel's read-ahead: 128 KiB requests by default. A window of four
   * 1 MiB requests cuts the round trips eightfold and keeps several in flight, so that a read from disk
   * on one native thread overlaps the copies of the others (seen here, cold reads: 1.2-2 GB/s with one
   * request's window, 2.3 GB/s with four, less again with 16 or 64). Best effort (root only). The device
   * is found in /proc/self/mountinfo: a stat of the mount point from this process would wait for a
   * request only this process can answer.
   */
  private raiseReadahead(): void {
    try {
      for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
        const f = line.split(' ');
        if (f[4] === this.mountpoint) writeFileSync(`/sys/class/bdi/${f[2]}/read_ahead_kb`, String((READAHEAD_REQUESTS * MAX_IO) / 1024));
      }
    } catch {
      /* not root, or no sysfs: the default read-ahead stays */
    }
  }

  /** Unmounts; open handles are closed. */
  async unmount(): Promise<void> {
    if (!this.mounted) return;
    this.mounted = false;
    this.native.unmount();
    await this.closeHandles();
  }

  private async closeHandles(): Promise<void> {
    const hs = [...this.handles.values()];
    for (const fh of this.handles.keys()) this.native.setLocal(fh);
    this.local.clear();
    this.handles.clear();
    await Promise.all(hs.map((h) => h.close().catch(() => {})));
  }

  /**
   * A path's attributes for the kernel. A directory's are kept ENTRY_TIMEOUT, as the kernel keeps them:
   * the kernel drops its own copy whenever it changes the directory (a name made or removed there) and
   * asks again at the next permission check, once per create in a directory being filled. No migration
   * changes a directory; this mount's own changes drop what they touch at once (or, for a name made or
   * removed, set the times to now), another client's show within ENTRY_TIMEOUT (as its renames do).
   * Files' attributes are never kept.
   */
  private async attrOf(p: string): Promise<number[]> {
    const kept = this.dirs.get(p);
    if (kept && kept.until > performance.now()) return kept.attr;
    return this.kept(p, statArray(await this.volume.client.stat(p)));
  }

  /** Keeps a directory's attributes (see attrOf), as a lookup or a mkdir brought them; returns them. */
  private kept(p: string, arr: number[]): number[] {
    const ttl = (this.o.entryTimeout ?? ENTRY_TIMEOUT) * 1000;
    if ((arr[0] & S_IFMT) === S_IFDIR && ttl > 0) {
      if (this.dirs.size > 10_000) this.dropDirs();
      this.keepDir(p, arr, performance.now() + ttl);
    } else this.dropDir(p);
    return arr;
  }

  /** Drops kept directory attributes an operation on `p` (and `p2`) may change: the paths and their parents. */
  private forgetDirs(op: string, p: string, p2: string | null): void {
    if (this.dirs.size === 0 || ENTRY_OPS.has(op)) return; // see touchParent
    for (const x of p2 && p2.startsWith('/') ? [p, p2] : [p]) {
      this.dropDir(x);
      this.dropDir(parentOf(x));
    }
    // A directory renamed or removed takes its subtree's paths with it.
    if (op === 'rename' || op === 'rmdir') for (const k of this.dirs.keys()) if (k.startsWith(p + '/')) this.dropDir(k);
  }

  /** The volume client's wall clock as [seconds, nanoseconds]. */
  private wallNow(): [number, number] {
    const t = this.volume.client.clock.wallNow();
    return [Math.floor(t / 1000), Math.round((t % 1000) * 1e6)];
  }

  /**
   * A name that is not a directory's, made or removed: only its parent's times change, and kept ones are
   * set to now in place (as the brick that holds the entry does) rather than dropped, so that the next
   * permission check on the directory needs no round trip. (A directory's stat comes from one brick,
   * which a name hashed to another brick does not touch: this way its times move either way.)
   */
  private touchParent(name: string): void {
    const kept = this.dirs.get(parentOf(name));
    if (!kept) return;
    const [sec, ns] = this.wallNow();
    const attr = kept.attr.slice();
    attr[8] = attr[10] = sec; // mtime, ctime
    attr[9] = attr[11] = ns;
    this.keepDir(parentOf(name), attr, kept.until);
  }

  /**
   * Kept directory attributes live here and, for the kernel's getattrs by path, in the addon, which
   * answers them without a trip to JavaScript (the two are changed together, here).
   */
  private keepDir(p: string, attr: number[], until: number): void {
    this.dirs.set(p, { attr, until });
    this.native.keepDir(p, attr, until - performance.now());
  }

  private dropDir(p: string): void {
    if (this.dirs.delete(p)) this.native.dropDir(p);
  }

  private dropDirs(): void {
    this.dirs.clear();
    this.native.dropDir();
  }

  /**
   * setattr: [which, mode, uid, gid, size, atime s, ns, mtime s, ns, fh] (times' ns may be UTIME_NOW),
   * each part as chmod, chown, truncate and utimensat do it; the attributes after. A size goes through
   * the open handle when there is one (ftruncate), which also serves a file whose name is gone.
   */
  private async setattr(path: string | null, n: number[]): Promise<number[]> {
    const c = this.volume.client;
    const [which, mode, uid, gid, size] = n;
    const fh = n[9] >= 0 && this.handles.has(n[9]) ? this.fh(n[9]) : null;
    if (path === null && !fh) throw Object.assign(new Error('no such file'), { code: 'ENOENT' });
    // A file whose name is gone (unlinked while open) is reached through its open handle.
    const byPath = (attrs: Parameters<typeof c.setattr>[1]) => (path === null ? fh!.setattr(attrs) : c.setattr(path, attrs));
    if (which & (SET_UID | SET_GID)) await byPath({ ...(which & SET_UID ? { uid } : {}), ...(which & SET_GID ? { gid } : {}) });
    if (which & SET_SIZE) {
      if (fh) await fh.truncate(size);
      else await byPath({ size });
    }
    if (which & SET_MODE) await byPath({ mode: mode & 0o7777 });
    // The change time alone (a chown to -1 and -1 comes with no attribute to set): nothing above moved it.
    if (!(which & (SET_UID | SET_GID | SET_SIZE | SET_MODE | SET_ATIME | SET_MTIME))) await byPath({ ctime: true });
    if (which & (SET_ATIME | SET_MTIME)) {
      const at = (set: number, sec: number, ns: number): [number, number] | undefined => (which & set ? (ns === UTIME_NOW ? this.wallNow() : [sec, ns]) : undefined);
      const atime = at(SET_ATIME, n[5], n[6]);
      const mtime = at(SET_MTIME, n[7], n[8]);
      await byPath({ ...(atime ? { atime } : {}), ...(mtime ? { mtime } : {}) });
    }
    if (fh) return statsArray(await fh.stat());
    return this.attrOf(path!);
  }

  /**
   * Local reads and writes. A read or write the addon sent here was not answered locally: the handle has
   * no local descriptor yet, or the file carries a commit record (it migrated, and the call above followed
   * it), or a migration of the file is starting or live (writes). When the brick the handle is on now
   * shares this host's files, the addon is given a descriptor of the very inode that brick serves, and
   * answers the handle's next reads, getattrs and (for a handle open for writing, not appending, on a
   * brick that shuts local writers out of its migrations) writes from it itself (native/fuse.c; why this
   * is safe: docs/MIGRATION.md, "Local reads", "Local writes"). Once per place the handle is at; every
   * failure just leaves the calls going through the brick.
   */
  private async goLocal(fh: number, h: FileHandle): Promise<void> {
    const at = h.at();
    if (this.local.get(fh) === at) return;
    this.local.set(fh, at);
    this.native.setLocal(fh); // a descriptor of the handle's old place
    const r = await h
      .openPlace(
        async (src, gfid, writable) => {
          const fd = await openLocalFile(src, gfid, writable);
          return fd === null ? null : { fd, record: src.recordXattr, ino: inoOf(gfid, 0) };
        },
        (x) => close(x.fd, () => {}),
        () => this.handles.get(fh) === h && this.local.get(fh) === at, // still open, and still at that place
      )
      .catch(() => null); // the calls go through the brick
    // The addon owns the descriptor from now on.
    if (r) this.native.setLocal(fh, r.file.fd, r.file.record, r.file.ino, r.writable);
  }

  private fh(n: number): FileHandle {
    const h = this.handles.get(n);
    if (!h) throw Object.assign(new Error('bad file handle'), { code: 'EBADF' });
    return h;
  }

  private async handle(op: string, path: string | null, path2: string | null, n: number[], buf: Buffer | null): Promise<{ result: number; extra?: unknown }> {
    const r = await this.run(op, path, path2, n, buf);
    if (r.result >= 0 && ENTRY_OPS.has(op)) this.touchParent(op === 'link' ? path2! : path!);
    return r;
  }

  private async run(op: string, path: string | null, path2: string | null, n: number[], buf: Buffer | null): Promise<{ result: number; extra?: unknown }> {
    const v = this.volume;
    const c = v.client;
    const p = path ?? '/';
    // The caller's uid and gid: the last numbers but one and two of every request.
    const [uid, gid] = [n[n.length - 3], n[n.length - 2]];
    const owner = { uid, gid };
    if (CHANGES_NAMESPACE.has(op)) this.forgetDirs(op, p, path2);
    switch (op) {
      case 'getattr': {
        if (n[0] >= 0 && this.handles.has(n[0])) {
          return { result: 0, extra: statsArray(await this.fh(n[0]).stat()) };
        }
        if (path === null) return { result: -osConstants.errno.ENOENT };
        return { result: 0, extra: await this.attrOf(p) };
      }
      case 'readlink':
        return { result: 0, extra: Buffer.from(await c.readlink(p)) };
      // The operations that make a name answer with its attributes (the kernel's entry for it).
      case 'mkdir':
        return { result: 0, extra: this.kept(p, statArray(await c.mkdir(p, n[0] & 0o7777, owner))) };
      case 'mknod': {
        // FIFOs, sockets and device nodes (n[1]: the device) are made by the brick.
        if ((n[0] & S_IFMT) !== S_IFREG) return { result: 0, extra: statArray(await c.mknod(p, n[0] & 0o177777, owner, n[1])) };
        const r = await c.open(p, O_CREAT | O_EXCL, n[0] & 0o7777, owner);
        await c.sv(r.located.cached).call('close', { fd: r.fd });
        return { result: 0, extra: statArray(r.attr) };
      }
      case 'unlink':
        await c.unlink(p);
        return { result: 0 };
      case 'rmdir':
        await c.rmdir(p);
        return { result: 0 };
      case 'symlink':
        return { result: 0, extra: statArray(await c.symlink(path2!, p, owner)) };
      case 'rename': {
        if (n[0] === RENAME_EXCHANGE) {
          // Atomic where both names' files are on one brick; EXDEV otherwise (DhtClient.exchange).
          await c.exchange(p, path2!);
          return { result: 0 };
        }
        if (n[0] & ~RENAME_NOREPLACE) return { result: -osConstants.errno.EINVAL };
        if (n[0] & RENAME_NOREPLACE) {
          const exists = await c.stat(path2!).then(
            () => true,
            (e) => (codeOf(e) === 'ENOENT' ? false : Promise.reject(e)),
          );
          if (exists) return { result: -osConstants.errno.EEXIST };
        }
        await c.rename(p, path2!);
        return { result: 0 };
      }
      case 'link':
        return { result: 0, extra: statArray(await c.link(p, path2!)) };
      case 'setattr':
        return { result: 0, extra: await this.setattr(path, n) };
      case 'open':
      case 'create': {
        const flags = n[0] & (O_ACCMODE | O_APPEND | O_TRUNC | (op === 'create' ? O_CREAT | O_EXCL : 0));
        const h = await v.open(p, op === 'create' ? flags | O_CREAT : flags, op === 'create' ? n[1] & 0o7777 : 0o666, owner);
        const fh = this.nextFh++;
        this.handles.set(fh, h);
        // Files go around the kernel's page cache (direct I/O): a read is then one copy from the brick's
        // file to the program, not two through the cache, and a write is not copied into pages that only
        // hold a second copy of it (there is no write-back caching). The kernel's cache was dropped at
        // every open anyway (a migration or another client may have changed the file). Where the kernel
        // cannot map such files MAP_SHARED (directMmap: no FUSE_DIRECT_IO_ALLOW_MMAP, before Linux 6.6),
        // only a write-only file does, since it cannot be mapped; the others read and map through the cache.
        const direct = (n[0] & O_ACCMODE) === O_WRONLY || this.native.directMmap() ? 1 : 0;
        // A new file's attributes go with the reply: the addon answers the getattrs libfuse (by handle)
        // and the kernel (by path) make right after the create, once each, within 20 ms, before any write.
        return { result: 0, extra: op === 'create' ? [fh, direct, ...statArray(h.loc.attr)] : [fh, direct] };
      }
      case 'read': {
        const h = this.fh(n[0]);
        const { bytesRead } = await h.read(buf!, 0, buf!.length, n[1]);
        void this.goLocal(n[0], h);
        return { result: bytesRead };
      }
      case 'write': {
        const h = this.fh(n[0]);
        // A writer other than root drops the file's set-id bits, as the kernel's rule has it.
        const { bytesWritten } = await h.write(buf!, 0, buf!.length, n[1], { dropPrivs: uid !== 0 });
        if (h.writesMuch) void this.goLocal(n[0], h);
        return { result: bytesWritten };
      }
      case 'statfs': {
        const s = await c.statfs();
        return { result: 0, extra: [s.bsize, s.blocks, s.bfree, s.bavail, s.files, s.ffree, 255] };
      }
      case 'release': {
        const h = this.handles.get(n[0]);
        this.handles.delete(n[0]);
        this.native.setLocal(n[0]);
        this.local.delete(n[0]);
        await h?.close();
        return { result: 0 };
      }
      case 'fallocate':
        await this.fh(n[0]).fallocate(n[1], n[2], n[3]);
        return { result: 0 };
      case 'fsync':
        if (n[1]) await this.fh(n[0]).datasync();
        else await this.fh(n[0]).sync();
        return { result: 0 };
      case 'setxattr':
        await c.setxattr(p, path2!, Buffer.from(buf ?? Buffer.alloc(0)), { create: (n[0] & XATTR_CREATE) !== 0, replace: (n[0] & XATTR_REPLACE) !== 0 });
        return { result: 0 };
      case 'getxattr':
        return { result: 0, extra: Buffer.from(await c.getxattr(p, path2!)) };
      case 'listxattr': {
        const names = await c.listxattr(p);
        return { result: 0, extra: Buffer.from(names.map((x) => `${x}\0`).join('')) };
      }
      case 'removexattr':
        await c.removexattr(p, path2!);
        return { result: 0 };
      case 'readdir': {
        // ENOTDIR for a file comes from readdirAll (its directory lookup), without a stat first.
        const entries = await c.readdirAll(p);
        // Each entry with its attributes (as stat gives them): the type and inode number for READDIR, the
        // kernel's entry for READDIRPLUS.
        return { result: 0, extra: ['.', '..', ...entries.map((e) => [e.name, ...statArray(e.attr)])] };
      }
      default:
        return { result: -osConstants.errno.ENOSYS };
    }
  }
}
