/**
 * A simulated brick disk implementing Storage: an in-memory inode table with POSIX rules for the calls a
 * brick makes. Data calls complete after a random virtual delay. What survives a power loss (crash())
 * depends on the disk model (DiskModel.durability, drawn per seed by the simulator's options):
 *
 * - `sync`: names, xattrs and attributes are durable at once; file data only once fsynced.
 * - `journal` (ext4 data=ordered, XFS): metadata changes go to one ordered journal; any fsync (of a file
 *   or a directory) or syncfs commits all of it, and so does the journal's own commit every `commitMs`;
 *   a power loss keeps a prefix of what was not committed.
 * - `strict` (what fsync(2) promises, and no more): fsync of a file makes its data, inode metadata
 *   (mode, owner, times) and xattrs durable, and the entry that created it (ext4, XFS and btrfs all
 *   log a new file's entry with its first fsync); every other change of a directory's entries (a rename,
 *   a link, an unlink, a mkdir) only an fsync of that directory. A power loss keeps any subset of the
 *   rest that is closed under order per object (a later change of an inode or directory survives only
 *   with the earlier ones) and under need (an entry survives only with its inode).
 *
 * In every model, unsynced data of a file may or may not have been written back (the whole of it, with
 * chance `writeback`). EIO and ENOSPC are injected, while `faulty` is set, on any call with chances
 * `eio` and `enospc`: the call fails and changes nothing.
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

// Errors without a stack: the brick expects and handles most of them, and a stack costs more than the call.
const err = (code: string, m: string) => FsError.quiet(code, m);

export interface DiskModel {
  durability: 'sync' | 'journal' | 'strict';
  /** strict: the chance that a change not yet durable survives a power loss anyway (written back). */
  keep: number;
  /** The chance that a file's unsynced data was written back before a power loss. */
  writeback: number;
  /** journal: the journal commits on its own every commitMs virtual ms (0: only at fsync). */
  commitMs: number;
  /** Chances, per call while `faulty`, of EIO and of ENOSPC. */
  eio: number;
  enospc: number;
}

/** The old simulator's disk: metadata durable at once, data at fsync, no injected errors. */
export const SYNC_DISK: DiskModel = { durability: 'sync', keep: 0, writeback: 0, commitMs: 0, eio: 0, enospc: 0 };

/** An inode as the disk holds it (what a power loss leaves). */
interface Durable {
  mode: number;
  uid: number;
  gid: number;
  xattrs: Map<string, Buffer>;
  entries: Map<string, number> | null;
  target: string | null;
  atime: Timespec;
  mtime: Timespec;
  ctime: Timespec;
}

/**
 * A metadata change not yet durable. Objects are numbers: 2*ino the inode (existence, attributes,
 * xattrs), 2*ino+1 a directory's entries. `writes`: what it changes; `needs`: what must be durable
 * before it (an entry's inode); `flushedBy`: the objects whose fsync makes it durable.
 */
interface Change {
  what: string;
  writes: number[];
  needs: number[];
  flushedBy: number[];
  apply: (img: Map<number, Durable>) => void;
}
const M = (ino: number) => 2 * ino;
const E = (ino: number) => 2 * ino + 1;

const snapshot = (n: Inode): Durable => ({
  mode: n.mode,
  uid: n.uid,
  gid: n.gid,
  xattrs: new Map(n.xattrs),
  entries: n.entries ? new Map(n.entries) : null,
  target: n.target,
  atime: n.atime,
  mtime: n.mtime,
  ctime: n.ctime,
});

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
  /** Errors are injected (model.eio, model.enospc) only while this is set. */
  faulty = false;
  /** Counts of injected errors and of changes a power loss dropped. */
  readonly injected = { eio: 0, enospc: 0, dropped: 0, kept: 0 };
  /** The changes the last power loss dropped (debugging a seed). */
  lastDropped: string[] = [];
  /** Bumped by every change of names, attributes or xattrs (checkers skip a disk that did not change). */
  generation = 0;
  /** What the disk holds (journal, strict): the durable inodes, the changes not yet durable, data. */
  private img = new Map<number, Durable>();
  private pending: Change[] = [];
  private durableData = new Map<number, Buffer>();
  private lastCommit = 0;

  constructor(
    private readonly w: World,
    readonly model: DiskModel = SYNC_DISK,
  ) {
    const root = this.inode(S_IFDIR | 0o755, 1);
    this.img.set(1, snapshot(root));
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

  // --- faults ------------------------------------------------------------------------------------

  /** An injected error for this call, if the dice say so (thrown before the call changes anything). */
  private fault(what: string, writes: boolean): void {
    if (!this.faulty) return;
    const m = this.model;
    if (m.eio > 0 && this.w.rng.chance(m.eio)) {
      this.injected.eio++;
      throw err('EIO', `injected: ${what}`);
    }
    if (writes && m.enospc > 0 && this.w.rng.chance(m.enospc)) {
      this.injected.enospc++;
      throw err('ENOSPC', `injected: ${what}`);
    }
  }

  // --- durability --------------------------------------------------------------------------------

  /** Records a metadata change that the disk holds only once the fsync that covers it is done. */
  private change(c: Change): void {
    this.generation++;
    if (this.model.durability === 'sync') return;
    this.pending.push(c);
    const cm = this.model.commitMs;
    if (this.model.durability === 'journal' && cm > 0 && this.w.now - this.lastCommit >= cm) this.flushAll();
  }
  /** An inode's attributes or xattrs changed: durable with its fsync. */
  private metaChange(n: Inode): void {
    if (this.model.durability === 'sync') return void this.generation++;
    const d = snapshot(n);
    const ino = n.ino;
    this.change({
      what: `attrs of ${ino}`,
      writes: [M(ino)],
      needs: [],
      flushedBy: [M(ino)],
      apply: (img) => {
        const cur = img.get(ino);
        if (cur) img.set(ino, { ...d, entries: cur.entries });
      },
    });
  }
  /** A new inode (and, created with it, its first entry; `own`: durable with the inode's fsync too). */
  private created(parent: Inode, name: string, n: Inode, own: boolean): void {
    if (this.model.durability === 'sync') return void this.generation++;
    const d = snapshot(n);
    const ino = n.ino;
    this.change({ what: `new ${ino}`, writes: [M(ino)], needs: [], flushedBy: [M(ino)], apply: (img) => void img.set(ino, { ...d, entries: d.entries && new Map() }) });
    this.entry(parent, name, ino, own ? [M(ino)] : []);
  }
  /** An entry `name` of `parent` now names `ino` (or nothing: -1). */
  private entry(parent: Inode, name: string, ino: number, alsoFlushedBy: number[] = []): void {
    if (this.model.durability === 'sync') return void this.generation++;
    const p = parent.ino;
    this.change({
      what: `${p}/${name} = ${ino}`,
      writes: [E(p)],
      needs: ino >= 0 ? [M(ino), M(p)] : [M(p)], // the directory must be on disk for its entry to be
      flushedBy: [E(p), ...alsoFlushedBy],
      apply: (img) => {
        const e = img.get(p)?.entries;
        if (!e) return;
        if (ino >= 0) e.set(name, ino);
        else e.delete(name);
      },
    });
  }
  private renamed(a: Inode, an: string, b: Inode, bn: string, ino: number): void {
    if (this.model.durability === 'sync') return void this.generation++;
    const pa = a.ino;
    const pb = b.ino;
    this.change({
      what: `${pa}/${an} -> ${pb}/${bn} (${ino})`,
      writes: pa === pb ? [E(pa)] : [E(pa), E(pb)],
      needs: [M(ino), M(pa), M(pb)],
      flushedBy: [E(pa), E(pb)],
      apply: (img) => {
        img.get(pa)?.entries?.delete(an);
        img.get(pb)?.entries?.set(bn, ino);
      },
    });
  }

  /** Makes durable the changes an fsync of these objects covers, and what they need or follow. */
  private flush(objs: Set<number>): void {
    if (this.model.durability === 'journal') return this.flushAll();
    const req = new Set<number>();
    const take = new Array<boolean>(this.pending.length).fill(false);
    for (let j = this.pending.length - 1; j >= 0; j--) {
      const c = this.pending[j];
      if (c.flushedBy.some((o) => objs.has(o)) || c.writes.some((o) => req.has(o))) {
        take[j] = true;
        for (const o of c.writes) req.add(o);
        for (const o of c.needs) req.add(o);
      }
    }
    const rest: Change[] = [];
    this.pending.forEach((c, j) => (take[j] ? c.apply(this.img) : rest.push(c)));
    this.pending = rest;
  }
  private flushAll(): void {
    for (const c of this.pending) c.apply(this.img);
    this.pending = [];
    this.lastCommit = this.w.now;
  }

  /**
   * Power loss: the disk keeps what was durable and, of the rest, what the model allows (drawn from the
   * seed); open files are closed.
   */
  crash(): void {
    this.fds.clear();
    this.generation++;
    if (this.model.durability === 'sync') {
      for (const n of this.inodes.values()) if ((n.mode & S_IFMT) === S_IFREG) n.data = this.keptData(n);
      return;
    }
    const rng = this.w.rng;
    if (this.model.durability === 'journal') {
      const k = rng.int(this.pending.length + 1);
      this.lastDropped = this.pending.slice(k).map((c) => c.what);
      this.pending.slice(0, k).forEach((c) => c.apply(this.img));
      this.injected.kept += k;
      this.injected.dropped += this.pending.length - k;
    } else {
      const dropped = new Set<number>();
      this.lastDropped = [];
      for (const c of this.pending) {
        if (!c.writes.some((o) => dropped.has(o)) && !c.needs.some((o) => dropped.has(o)) && rng.chance(this.model.keep)) {
          c.apply(this.img);
          this.injected.kept++;
        } else {
          for (const o of c.writes) dropped.add(o);
          this.injected.dropped++;
          this.lastDropped.push(c.what);
        }
      }
    }
    this.pending = [];
    this.rebuild();
  }
  /** A file's bytes after a power loss: the fsynced ones, or (written back) the latest. */
  private keptData(n: Inode): Buffer {
    const m = this.model.writeback;
    return m > 0 && this.w.rng.chance(m) ? n.data : Buffer.from(n.durable);
  }
  /** The inode table from the disk image: what the root reaches, link counts recounted. */
  private rebuild(): void {
    const live = new Map<number, Inode>();
    const links = new Map<number, number>();
    const visit = (ino: number) => {
      const d = this.img.get(ino);
      if (!d || live.has(ino)) return;
      const old = this.inodes.get(ino);
      const data = old ? this.keptData(old) : (this.durableData.get(ino) ?? Buffer.alloc(0));
      const n: Inode = { ino, mode: d.mode, uid: d.uid, gid: d.gid, nlink: 0, data, durable: Buffer.from(data), xattrs: new Map(d.xattrs), entries: d.entries && new Map(), target: d.target, atime: d.atime, mtime: d.mtime, ctime: d.ctime };
      live.set(ino, n);
      if (!d.entries) return;
      for (const [name, child] of d.entries) {
        if (!this.img.has(child)) continue;
        const c = this.img.get(child)!;
        if (c.entries && live.has(child)) continue; // a directory reached twice (a rename lost half): once
        n.entries!.set(name, child);
        links.set(child, (links.get(child) ?? 0) + 1);
        visit(child);
      }
    };
    visit(1);
    for (const n of live.values()) n.nlink = links.get(n.ino) ?? 1;
    this.inodes = live;
    // The image now is exactly the live state.
    this.img = new Map([...live].map(([ino, n]) => [ino, snapshot(n)]));
    this.durableData = new Map([...live].filter(([, n]) => !n.entries).map(([ino, n]) => [ino, n.durable]));
  }

  private used(): number {
    let u = 0;
    for (const n of this.inodes.values()) u += n.data.length + 256;
    return u;
  }

  /** A path's parent directory, last component and inode (null: no such name); its components read in place, not split. */
  private walk(p: string): { parent: Inode; name: string; node: Inode | null } {
    let dir = this.inodes.get(1)!;
    if (p === '') return { parent: dir, name: '', node: dir };
    let from = 0;
    for (let slash = p.indexOf('/'); slash >= 0; slash = p.indexOf('/', from)) {
      const ino = dir.entries!.get(p.slice(from, slash));
      if (ino === undefined) throw err('ENOENT', p);
      const n = this.inodes.get(ino)!;
      if ((n.mode & S_IFMT) === S_IFLNK) throw err('ELOOP', p);
      if (!n.entries) throw err('ENOTDIR', p);
      dir = n;
      from = slash + 1;
    }
    const name = p.slice(from);
    const ino = dir.entries!.get(name);
    return { parent: dir, name, node: ino === undefined ? null : this.inodes.get(ino)! };
  }

  private get(p: string): Inode {
    const { node } = this.walk(p);
    if (!node) throw err('ENOENT', p);
    return node;
  }

  private stat(n: Inode): Stat {
    let nlink = n.nlink;
    if (n.entries) {
      nlink = 2;
      for (const i of n.entries.values()) if (this.inodes.get(i)?.entries) nlink++;
    }
    return {
      ino: n.ino,
      mode: n.mode,
      nlink,
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
    if (n.nlink > 0) return;
    for (const f of this.fds.values()) if (f.ino === n.ino) return;
    this.inodes.delete(n.ino);
  }

  lstat(p: string): Stat {
    this.fault('lstat', false);
    return this.stat(this.get(p));
  }
  mkdir(p: string, mode: number): void {
    this.fault('mkdir', true);
    const w = this.walk(p);
    if (w.node) throw err('EEXIST', p);
    if (!w.parent.entries) throw err('ENOTDIR', p);
    const n = this.inode(S_IFDIR | (mode & 0o7777));
    w.parent.entries.set(w.name, n.ino);
    this.created(w.parent, w.name, n, false);
  }
  rmdir(p: string): void {
    this.fault('rmdir', false);
    const w = this.walk(p);
    if (!w.node) throw err('ENOENT', p);
    if (!w.node.entries) throw err('ENOTDIR', p);
    if (w.node.entries.size > 0) throw err('ENOTEMPTY', p);
    w.parent.entries!.delete(w.name);
    this.inodes.delete(w.node.ino);
    this.entry(w.parent, w.name, -1);
  }
  unlink(p: string): void {
    this.fault('unlink', false);
    const w = this.walk(p);
    if (!w.node) throw err('ENOENT', p);
    if (w.node.entries) throw err('EISDIR', p);
    w.parent.entries!.delete(w.name);
    w.node.nlink--;
    w.node.ctime = this.ts();
    this.entry(w.parent, w.name, -1);
    this.drop(w.node);
  }
  rename(from: string, to: string): void {
    this.fault('rename', true);
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
    this.renamed(a.parent, a.name, b.parent, b.name, a.node.ino);
  }
  link(existing: string, p: string): void {
    this.fault('link', true);
    const n = this.get(existing);
    if (n.entries) throw err('EPERM', existing);
    const w = this.walk(p);
    if (w.node) throw err('EEXIST', p);
    w.parent.entries!.set(w.name, n.ino);
    n.nlink++;
    this.entry(w.parent, w.name, n.ino);
  }
  symlink(target: string, p: string): void {
    this.fault('symlink', true);
    const w = this.walk(p);
    if (w.node) throw err('EEXIST', p);
    const n = this.inode(S_IFLNK | 0o777);
    n.target = target;
    w.parent.entries!.set(w.name, n.ino);
    this.created(w.parent, w.name, n, true);
  }
  /** FIFOs and sockets. */
  mknod(p: string, mode: number): void {
    this.fault('mknod', true);
    const w = this.walk(p);
    if (w.node) throw err('EEXIST', p);
    if (!w.parent.entries) throw err('ENOTDIR', p);
    const n = this.inode(mode);
    w.parent.entries.set(w.name, n.ino);
    this.created(w.parent, w.name, n, true);
  }
  readlink(p: string): string {
    this.fault('readlink', false);
    const n = this.get(p);
    if (n.target === null) throw err('EINVAL', p);
    return n.target;
  }
  readdir(p: string): DirEntry[] {
    this.fault('readdir', false);
    const n = this.get(p);
    if (!n.entries) throw err('ENOTDIR', p);
    const out: DirEntry[] = [];
    for (const [name, ino] of n.entries) {
      const m = this.inodes.get(ino)!.mode & S_IFMT;
      out.push({ name, type: m === S_IFDIR ? 'dir' : m === S_IFLNK ? 'symlink' : m === S_IFREG ? 'file' : 'other' });
    }
    return out;
  }
  chmod(p: string, mode: number): void {
    this.fault('chmod', false);
    const n = this.get(p);
    n.mode = (n.mode & S_IFMT) | (mode & 0o7777);
    n.ctime = this.ts();
    this.metaChange(n);
  }
  lchown(p: string, uid: number, gid: number): void {
    this.fault('lchown', false);
    const n = this.get(p);
    if (uid >= 0) n.uid = uid;
    if (gid >= 0) n.gid = gid;
    this.metaChange(n);
  }
  lutimes(p: string, atime: Timespec, mtime: Timespec): void {
    this.fault('lutimes', false);
    const n = this.get(p);
    n.atime = atime;
    n.mtime = mtime;
    this.metaChange(n);
  }
  private resize(n: Inode, size: number): void {
    if (size > this.capacity) throw err('EFBIG', 'too large');
    const b = Buffer.alloc(size);
    n.data.copy(b, 0, 0, Math.min(size, n.data.length));
    n.data = b;
    n.mtime = n.ctime = this.ts();
  }
  truncate(p: string, size: number): void {
    this.fault('truncate', true);
    const n = this.get(p);
    if (n.entries) throw err('EISDIR', p);
    this.resize(n, size);
  }

  getxattr(p: string, name: string): Buffer | null {
    this.fault('getxattr', false);
    return this.get(p).xattrs.get(name) ?? null; // ENOENT for a missing name, as lgetxattr(2)
  }
  /** An xattr of the inode open as `h` (the simulator's local readers check the one they read). */
  fgetxattr(h: number, name: string): Buffer | null {
    return this.fd(h).n.xattrs.get(name) ?? null;
  }
  /** Checkers' reads (no injected errors, no delay): a name's mode and xattrs, or null when there is none. */
  peekAt(p: string): { mode: number; xattrs: ReadonlyMap<string, Buffer> } | null {
    let n = this.inodes.get(1)!;
    for (const part of p.split('/')) {
      const ino = n.entries?.get(part);
      if (ino === undefined) return null;
      n = this.inodes.get(ino)!;
    }
    return n;
  }
  /**
   * Every name below the brick's root that is not a directory, as the disk is now (the handle and
   * private directories under .glusterfs left out), with its mode and xattrs, read from its inode as the
   * walk meets it: for the always-on checkers (after every event that changed a disk) and the operator's view.
   */
  peekFiles(each: (path: string, mode: number, xattrs: ReadonlyMap<string, Buffer>) => void): void {
    const walk = (dir: Inode, at: string) => {
      for (const [name, ino] of dir.entries!) {
        const n = this.inodes.get(ino)!;
        const p = at ? `${at}/${name}` : name;
        if (n.entries) {
          if (p !== '.glusterfs') walk(n, p);
        } else each(p, n.mode, n.xattrs);
      }
    };
    walk(this.inodes.get(1)!, '');
  }
  setxattr(p: string, name: string, value: Uint8Array): void {
    this.fault('setxattr', true);
    const n = this.get(p);
    n.xattrs.set(name, Buffer.from(value));
    this.metaChange(n);
  }
  removexattr(p: string, name: string): void {
    this.fault('removexattr', false);
    const n = this.get(p);
    if (!n.xattrs.delete(name)) throw err('ENODATA', name);
    this.metaChange(n);
  }
  listxattr(p: string): string[] {
    this.fault('listxattr', false);
    return [...this.get(p).xattrs.keys()];
  }

  open(p: string, flags: number, mode: number, owner: Open['owner'] = 'brick'): number {
    this.fault('open', (flags & O_CREAT) !== 0);
    const w = this.walk(p);
    let n = w.node;
    if (!n) {
      if (!(flags & O_CREAT)) throw err('ENOENT', p);
      if (!w.parent.entries) throw err('ENOTDIR', p);
      n = this.inode(S_IFREG | (mode & 0o7777));
      w.parent.entries.set(w.name, n.ino);
      this.created(w.parent, w.name, n, true);
    } else {
      if (flags & O_CREAT && flags & O_EXCL) throw err('EEXIST', p);
      if (flags & O_NOFOLLOW && n.target !== null) throw err('ELOOP', p);
      if (flags & O_DIRECTORY && !n.entries) throw err('ENOTDIR', p);
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
    this.fault('fstat', false);
    return this.stat(this.fd(h).n);
  }
  ftruncate(h: number, size: number): void {
    this.fault('ftruncate', true);
    this.resize(this.fd(h).n, size);
  }
  /** The simulated disk keeps no holes: a file is all data. */
  seekData(h: number, offset: number, hole: boolean): number {
    this.fault('seek', false);
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
      this.fault('read', false);
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
      this.fault('write', true);
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
    // A directory's fsync has nothing to write where metadata is durable at once (the sync disk): it
    // completes at once (and draws nothing from the seed, so that the runs of the old disk keep theirs).
    const f = this.fds.get(h);
    if (this.model.durability === 'sync' && f && this.inodes.get(f.ino)?.entries) return Promise.resolve();
    return this.later(() => {
      this.fault('fsync', false);
      const { n } = this.fd(h);
      if ((n.mode & S_IFMT) === S_IFREG) {
        n.durable = Buffer.from(n.data);
        this.durableData.set(n.ino, n.durable);
      }
      if (this.model.durability !== 'sync') this.flush(new Set(n.entries ? [M(n.ino), E(n.ino)] : [M(n.ino)]));
    });
  }
  /** syncfs: everything written to this disk is durable. */
  syncAll(h: number): Promise<void> {
    return this.later(() => {
      this.fault('syncfs', false);
      this.fd(h);
      for (const n of this.inodes.values()) {
        if ((n.mode & S_IFMT) !== S_IFREG) continue;
        n.durable = Buffer.from(n.data);
        this.durableData.set(n.ino, n.durable);
      }
      if (this.model.durability !== 'sync') this.flushAll();
    });
  }
  /** The operator's sync(1), outside any brick (the simulator's setup). */
  syncNow(): void {
    for (const n of this.inodes.values()) {
      if ((n.mode & S_IFMT) !== S_IFREG) continue;
      n.durable = Buffer.from(n.data);
      this.durableData.set(n.ino, n.durable);
    }
    if (this.model.durability !== 'sync') this.flushAll();
  }
  statfs(): StatFs {
    const bsize = 4096;
    const blocks = Math.floor(this.capacity / bsize);
    const free = Math.max(0, blocks - Math.ceil(this.used() / bsize));
    return { bsize, blocks, bfree: free, bavail: free, files: 1_000_000, ffree: 1_000_000 - this.inodes.size };
  }
}
