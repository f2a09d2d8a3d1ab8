/**
 * A simulated brick disk implementing Storage: an in-memory inode table with POSIX rules for the calls a
 * brick makes. File data is durable only once fsynced: crash() returns every file to its last fsynced
 * bytes and size (metadata is treated as journaled: durable at once). Data calls complete after a random
 * virtual delay.
 */
import { FsError } from '../common/errors.js';
import type { DirEntry, LocalName, Stat, StatFs, Storage, Timespec } from '../storage/storage.js';
import { O_ACCMODE, O_APPEND, O_CREAT, O_DIRECTORY, O_EXCL, O_NOFOLLOW, O_RDONLY, O_TRUNC, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from '../storage/storage.js';
import type { World } from './world.js';

interface Inode {
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  data: Buffer;
  /** Bytes as of the last fsync (files). */
  durable: Buffer;
  xattrs: Map<string, Buffer>;
  entries: Map<string, number> | null;
  target: string | null;
  atime: Timespec;
  mtime: Timespec;
  ctime: Timespec;
}

interface Open {
  ino: number;
  flags: number;
  /** Opened by the brick's process, or by a client's (local reads and writes). */
  owner: 'brick' | 'client';
  /** Open file description locks, by byte. */
  locks: Map<number, 'shared' | 'exclusive'>;
}

const err = (code: string, m: string) => new FsError(code, m);

export class SimStorage implements Storage {
  private inodes = new Map<number, Inode>();
  private nextIno = 2;
  private fds = new Map<number, Open>();
  private nextFd = 3;
  /** Capacity in bytes (for statfs and ENOSPC). */
  capacity = 1 << 30;
  /**
   * Storages of one simulated host, which a brick may read directly (a migration's copy between two
   * bricks of one host, Brick.migPull); null: this storage is not shared.
   */
  host: { name: string; storages: Map<string, SimStorage> } | null = null;
  /** This storage's name on its host. */
  id = '';

  constructor(private readonly w: World) {
    this.inodes.set(1, this.inode(S_IFDIR | 0o755, 1));
  }

  private ts(): Timespec {
    const ms = this.w.clock.wallNow();
    return [Math.floor(ms / 1000), Math.round((ms % 1000) * 1e6)];
  }

  private inode(mode: number, ino = this.nextIno++): Inode {
    const t = this.ts();
    const n: Inode = { ino, mode, uid: 0, gid: 0, nlink: 1, data: Buffer.alloc(0), durable: Buffer.alloc(0), xattrs: new Map(), entries: (mode & S_IFMT) === S_IFDIR ? new Map() : null, target: null, atime: t, mtime: t, ctime: t };
    this.inodes.set(ino, n);
    return n;
  }

  localName(): LocalName | null {
    return this.host ? { host: this.host.name, root: this.id } : null;
  }

  peer(name: LocalName): Storage | null {
    return this.host && name.host === this.host.name ? (this.host.storages.get(name.root) ?? null) : null;
  }

  /** Power loss: unsynced file data is gone; open files are closed. */
  crash(): void {
    for (const n of this.inodes.values()) if ((n.mode & S_IFMT) === S_IFREG) n.data = Buffer.from(n.durable);
    this.fds.clear();
  }

  private used(): number {
    let u = 0;
    for (const n of this.inodes.values()) u += n.data.length + 256;
    return u;
  }

  private walk(p: string): { parent: Inode; name: string; node: Inode | null } {
    const parts = p === '' ? [] : p.split('/');
    let dir = this.inodes.get(1)!;
    for (let i = 0; i < parts.length - 1; i++) {
      const ino = dir.entries!.get(parts[i]);
      if (ino === undefined) throw err('ENOENT', p);
      const n = this.inodes.get(ino)!;
      if ((n.mode & S_IFMT) === S_IFLNK) throw err('ELOOP', p);
      if (!n.entries) throw err('ENOTDIR', p);
      dir = n;
    }
    if (parts.length === 0) return { parent: dir, name: '', node: dir };
    const name = parts[parts.length - 1];
    const ino = dir.entries!.get(name);
    return { parent: dir, name, node: ino === undefined ? null : this.inodes.get(ino)! };
  }

  private get(p: string): Inode {
    const { node } = this.walk(p);
    if (!node) throw err('ENOENT', p);
    return node;
  }

  private stat(n: Inode): Stat {
    return {
      ino: n.ino,
      mode: n.mode,
      nlink: n.entries ? 2 + [...n.entries.values()].filter((i) => this.inodes.get(i)?.entries).length : n.nlink,
      uid: n.uid,
      gid: n.gid,
      size: n.entries ? 4096 : n.target !== null ? n.target.length : n.data.length,
      blocks: Math.ceil(n.data.length / 512),
      atime: n.atime,
      mtime: n.mtime,
      ctime: n.ctime,
    };
  }

  private drop(n: Inode): void {
    if (n.nlink <= 0 && ![...this.fds.values()].some((f) => f.ino === n.ino)) this.inodes.delete(n.ino);
  }

  lstat(p: string): Stat {
    return this.stat(this.get(p));
  }
  mkdir(p: string, mode: number): void {
    const w = this.walk(p);
    if (w.node) throw err('EEXIST', p);
    if (!w.parent.entries) throw err('ENOTDIR', p);
    const n = this.inode(S_IFDIR | (mode & 0o7777));
    w.parent.entries.set(w.name, n.ino);
  }
  rmdir(p: string): void {
    const w = this.walk(p);
    if (!w.node) throw err('ENOENT', p);
    if (!w.node.entries) throw err('ENOTDIR', p);
    if (w.node.entries.size > 0) throw err('ENOTEMPTY', p);
    w.parent.entries!.delete(w.name);
    this.inodes.delete(w.node.ino);
  }
  unlink(p: string): void {
    const w = this.walk(p);
    if (!w.node) throw err('ENOENT', p);
    if (w.node.entries) throw err('EISDIR', p);
    w.parent.entries!.delete(w.name);
    w.node.nlink--;
    w.node.ctime = this.ts();
    this.drop(w.node);
  }
  rename(from: string, to: string): void {
    const a = this.walk(from);
    if (!a.node) throw err('ENOENT', from);
    const b = this.walk(to);
    if (!b.parent.entries) throw err('ENOTDIR', to);
    if (b.node && b.node.ino === a.node.ino) return;
    if (b.node) {
      if (a.node.entries && !b.node.entries) throw err('ENOTDIR', to);
      if (!a.node.entries && b.node.entries) throw err('EISDIR', to);
      if (b.node.entries && b.node.entries.size > 0) throw err('ENOTEMPTY', to);
      b.node.nlink--;
      this.drop(b.node);
    }
    a.parent.entries!.delete(a.name);
    b.parent.entries.set(b.name, a.node.ino);
    a.node.ctime = this.ts();
  }
  link(existing: string, p: string): void {
    const n = this.get(existing);
    if (n.entries) throw err('EPERM', existing);
    const w = this.walk(p);
    if (w.node) throw err('EEXIST', p);
    w.parent.entries!.set(w.name, n.ino);
    n.nlink++;
  }
  symlink(target: string, p: string): void {
    const w = this.walk(p);
    if (w.node) throw err('EEXIST', p);
    const n = this.inode(S_IFLNK | 0o777);
    n.target = target;
    w.parent.entries!.set(w.name, n.ino);
  }
  readlink(p: string): string {
    const n = this.get(p);
    if (n.target === null) throw err('EINVAL', p);
    return n.target;
  }
  readdir(p: string): DirEntry[] {
    const n = this.get(p);
    if (!n.entries) throw err('ENOTDIR', p);
    return [...n.entries].map(([name, ino]) => {
      const m = this.inodes.get(ino)!.mode & S_IFMT;
      return { name, type: m === S_IFDIR ? 'dir' : m === S_IFLNK ? 'symlink' : m === S_IFREG ? 'file' : 'other' };
    });
  }
  chmod(p: string, mode: number): void {
    const n = this.get(p);
    n.mode = (n.mode & S_IFMT) | (mode & 0o7777);
    n.ctime = this.ts();
  }
  lchown(p: string, uid: number, gid: number): void {
    const n = this.get(p);
    if (uid >= 0) n.uid = uid;
    if (gid >= 0) n.gid = gid;
  }
  lutimes(p: string, atime: Timespec, mtime: Timespec): void {
    const n = this.get(p);
    n.atime = atime;
    n.mtime = mtime;
  }
  private resize(n: Inode, size: number): void {
    if (size > this.capacity) throw err('EFBIG', 'too large');
    const b = Buffer.alloc(size);
    n.data.copy(b, 0, 0, Math.min(size, n.data.length));
    n.data = b;
    n.mtime = n.ctime = this.ts();
  }
  truncate(p: string, size: number): void {
    const n = this.get(p);
    if (n.entries) throw err('EISDIR', p);
    this.resize(n, size);
  }

  getxattr(p: string, name: string): Buffer | null {
    const { node } = this.walk(p);
    return node?.xattrs.get(name) ?? null;
  }
  /** An xattr of the inode open as `h` (the simulator's local readers check the one they read). */
  fgetxattr(h: number, name: string): Buffer | null {
    return this.fd(h).n.xattrs.get(name) ?? null;
  }
  setxattr(p: string, name: string, value: Uint8Array): void {
    this.get(p).xattrs.set(name, Buffer.from(value));
  }
  removexattr(p: string, name: string): void {
    const n = this.get(p);
    if (!n.xattrs.delete(name)) throw err('ENODATA', name);
  }
  listxattr(p: string): string[] {
    return [...this.get(p).xattrs.keys()];
  }

  open(p: string, flags: number, mode: number, owner: Open['owner'] = 'brick'): number {
    const w = this.walk(p);
    let n = w.node;
    if (!n) {
      if (!(flags & O_CREAT)) throw err('ENOENT', p);
      if (!w.parent.entries) throw err('ENOTDIR', p);
      n = this.inode(S_IFREG | (mode & 0o7777));
      w.parent.entries.set(w.name, n.ino);
    } else {
      if ((flags & O_CREAT) && (flags & O_EXCL)) throw err('EEXIST', p);
      if ((flags & O_NOFOLLOW) && n.target !== null) throw err('ELOOP', p);
      if ((flags & O_DIRECTORY) && !n.entries) throw err('ENOTDIR', p);
      if (n.entries && (flags & O_ACCMODE) !== O_RDONLY) throw err('EISDIR', p);
      if (flags & O_TRUNC) this.resize(n, 0);
    }
    const fd = this.nextFd++;
    this.fds.set(fd, { ino: n.ino, flags, owner, locks: new Map() });
    return fd;
  }
  /** A client's open of a brick's file (local reads and writes): its locks outlive a brick's restart. */
  openLocal(p: string, flags: number): number {
    return this.open(p, flags, 0, 'client');
  }
  /** Open file description locks on one byte, never waiting (Storage.lock). */
  lock(h: number, byte: number, mode: 'unlock' | 'shared' | 'exclusive'): boolean {
    const { f } = this.fd(h);
    if (mode === 'unlock') {
      f.locks.delete(byte);
      return true;
    }
    for (const [k, o] of this.fds) {
      if (k === h || o.ino !== f.ino) continue;
      const other = o.locks.get(byte);
      if (other && (other === 'exclusive' || mode === 'exclusive')) return false;
    }
    f.locks.set(byte, mode);
    return true;
  }
  /** The brick's process ended: the kernel drops the locks of its descriptions. */
  brickExited(): void {
    for (const f of this.fds.values()) if (f.owner === 'brick') f.locks.clear();
  }
  private fd(h: number): { f: Open; n: Inode } {
    const f = this.fds.get(h);
    const n = f && this.inodes.get(f.ino);
    if (!f || !n) throw err('EBADF', String(h));
    return { f, n };
  }
  close(h: number): void {
    const { n } = this.fd(h);
    this.fds.delete(h);
    this.drop(n);
  }
  fstat(h: number): Stat {
    return this.stat(this.fd(h).n);
  }
  ftruncate(h: number, size: number): void {
    this.resize(this.fd(h).n, size);
  }
  /** The simulated disk keeps no holes: a file is all data. */
  seekData(h: number, offset: number, hole: boolean): number {
    const size = this.stat(this.fd(h).n).size;
    return offset >= size ? -1 : hole ? size : offset;
  }
  /** Data calls take a random time, now and then a long one (a slow disk). */
  private later<T>(fn: () => T): Promise<T> {
    const delay = this.w.rng.chance(0.1) ? 1 + this.w.rng.int(600) / 100 : 0.01 + this.w.rng.int(50) / 100;
    return new Promise<T>((resolve, reject) =>
      this.w.at(delay, () => {
        try {
          resolve(fn());
        } catch (e) {
          reject(e);
        }
      }),
    );
  }
  read(h: number, offset: number, length: number, into?: Buffer): Promise<Buffer> {
    return this.later(() => {
      const { n } = this.fd(h);
      const part = n.data.subarray(Math.min(offset, n.data.length), Math.min(offset + length, n.data.length));
      if (into && into.length >= length) {
        into.set(part);
        return into.subarray(0, part.length);
      }
      return Buffer.from(part);
    });
  }
  write(h: number, offset: number, data: Uint8Array): Promise<number> {
    const copy = Buffer.from(data);
    return this.later(() => {
      const { f, n } = this.fd(h);
      const at = f.flags & O_APPEND ? n.data.length : offset;
      if (this.used() + copy.length > this.capacity) throw err('ENOSPC', 'disk full');
      if (at + copy.length > n.data.length) this.resize(n, at + copy.length);
      copy.copy(n.data, at);
      n.mtime = n.ctime = this.ts();
      return copy.length;
    });
  }
  fsync(h: number): Promise<void> {
    return this.later(() => {
      const { n } = this.fd(h);
      if ((n.mode & S_IFMT) === S_IFREG) n.durable = Buffer.from(n.data);
    });
  }
  statfs(): StatFs {
    const bsize = 4096;
    const blocks = Math.floor(this.capacity / bsize);
    const free = Math.max(0, blocks - Math.ceil(this.used() / bsize));
    return { bsize, blocks, bfree: free, bavail: free, files: 1_000_000, ffree: 1_000_000 - this.inodes.size };
  }
}
