/**
 * The library API: a dhtfs volume with fs/promises-like methods and file handles.
 *
 *   import { Volume } from 'dhtfs';
 *   const vol = await Volume.connect(spec);
 *   await vol.writeFile('/hello.txt', 'hi');
 */
import { EMOVED, FsError, codeOf, infoOf, ignoreCodes, bestEffort } from '../common/errors.js';
import type { ArgsOf, FdArgs, FdOp, Reply } from '../wire/ops.js';
import { planted } from '../common/plant.js';
import type { Clock, Random } from '../common/env.js';
import { realClock, realRandom } from '../common/real-env.js';
import { DhtClient, RACE_RETRIES, fdGone, movedAway, normPath, type Located, type Logger } from '../dht/client.js';
import type { VolumeSpec } from '../dht/spec.js';
import { specByHost, specNetwork, type ByHostOptions } from './network.js';
import type { Network } from '../wire/transport.js';
import type { Attr } from '../wire/types.js';
import type { FdLocal, LocalFile, LocalFiles } from '../storage/storage.js';
import { diskLocalFiles } from '../storage/disk.js';
import { LOCK_GATE, LOCK_WRITERS, O_ACCMODE, O_APPEND, O_CREAT, O_EXCL, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK, S_ISGID, S_ISVTX } from '../storage/storage.js';
import { Dirent, Stats } from './stats.js';

/** Largest piece of one write request; bigger writes are split and pipelined. */
export const IO_CHUNK = 1024 * 1024;
/** Requests in flight for one large write. */
export const IO_WINDOW = 8;
/**
 * Reads go in larger pieces, fewer in flight: measured on loopback, 2 MiB x 4 keeps the brick's disk
 * reads and its sends overlapped with the fewest requests (1 MiB x 8 and 8 MiB x 1 were 15-25% slower).
 */
export const READ_CHUNK = 2 * 1024 * 1024;
export const READ_WINDOW = 4;
/**
 * Local writes (a handle writing its brick's file itself) begin after a handle's second write through
 * the brick, or after one this large: a small file written once and closed would pay for nothing.
 */
export const LOCAL_AFTER_BYTES = 128 * 1024;
const MAX_SYMLINK_HOPS = 40;

export type OpenFlags = 'r' | 'r+' | 'w' | 'w+' | 'wx' | 'wx+' | 'a' | 'a+' | 'ax' | 'ax+' | number;

export function parseFlags(f: OpenFlags): number {
  if (typeof f === 'number') return f;
  const table: Record<string, number> = {
    r: O_RDONLY,
    'r+': O_RDWR,
    w: O_WRONLY | O_CREAT | O_TRUNC,
    'w+': O_RDWR | O_CREAT | O_TRUNC,
    wx: O_WRONLY | O_CREAT | O_TRUNC | O_EXCL,
    'wx+': O_RDWR | O_CREAT | O_TRUNC | O_EXCL,
    a: O_WRONLY | O_CREAT | O_APPEND,
    'a+': O_RDWR | O_CREAT | O_APPEND,
    ax: O_WRONLY | O_CREAT | O_APPEND | O_EXCL,
    'ax+': O_RDWR | O_CREAT | O_APPEND | O_EXCL,
  };
  const v = table[f];
  if (v === undefined) throw new FsError('EINVAL', `unknown open flags '${f}'`);
  return v;
}

export interface ConnectOptions {
  network?: Network;
  clock?: Clock;
  random?: Random;
  clientName?: string;
  log?: Logger;
  /** The client's caches (dht/neg-cache.ts, dht/dir-cache.ts), on by default; false switches one off. */
  negativeCache?: boolean;
  dirCache?: boolean;
  /** Local reads (docs/MIGRATION.md): this host's disks by default; null for none. */
  localFiles?: LocalFiles | null;
  /**
   * Taken from the mode of every file, directory and FIFO this client makes, as the kernel takes a
   * process's umask: the process's umask by default. The FUSE mount passes 0 (the kernel has applied the
   * caller's already).
   */
  umask?: number;
  /**
   * A folder with this client's TLS files (ca.pem, cert.pem, key.pem, as `dhtfs cert issue client`
   * writes them), for a volume with transport.tls on; over the spec's `tls`.
   */
  tlsDir?: string;
}

export interface Owner {
  uid: number;
  gid: number;
}

/** Runs `fn` over [0, n) with at most `window` in flight; resolves when all are done. */
async function pipelined(n: number, window: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failed: unknown = null;
  const worker = async () => {
    while (next < n && failed === null) {
      const i = next++;
      try {
        await fn(i);
      } catch (e) {
        failed ??= e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(window, n) }, worker));
  if (failed !== null) throw failed;
}

/** A brick's answer to fdLocal, with FileHandle.at() when the brick answered. */
export type LocalSource = FdLocal & { at: string };

/** An open file on a volume (like fs/promises' FileHandle). */
/**
 * How many times a handle's fd operation follows its file (a reconnected brick, a migration that moved
 * the file, a brick that forgot it) before the error stands: each follow is a real move, and a file does
 * not move five times during one call.
 */
const FOLLOW_RETRIES = 5;

export class FileHandle {
  private pos = 0;
  private closed = false;

  constructor(
    private readonly vol: Volume,
    /** Where the data is and the brick's fd for it. */
    public loc: Located,
    public fd: number,
    readonly flags: number,
  ) {}

  get path(): string {
    return this.loc.path;
  }

  private check(): void {
    if (this.closed) throw new FsError('EBADF', 'file handle is closed');
  }

  get gfid(): string | null {
    return this.loc.attr.gfid;
  }

  /** The connection generation of the brick the fd was opened on (-1: not known yet). */
  generation = -1;

  /** Opens the file again on the same brick, over the current connection (by gfid). */
  private async reopenHere(): Promise<void> {
    if (!this.gfid) throw new FsError('EBADF', 'cannot reopen a file without a gfid');
    const sv = this.vol.client.sv(this.loc.cached);
    const r = await sv.call('open', { gfid: this.gfid, flags: this.flags & ~(O_CREAT | O_EXCL | O_TRUNC) });
    this.fd = r.fd;
    this.generation = sv.generation;
    this.mirror = null;
  }

  /** Legacy protocol: an fd on dst to mirror phase-1 writes to. */
  private mirror: { brick: string; fd: number } | null = null;

  /**
   * Every fd operation goes to the brick the fd is on. If that brick answers that the file moved, the
   * volume installs dst's copy, moves every handle of the file there, and the operation is re-issued.
   */
  private async call<N extends FdOp>(op: N, args: FdArgs<N>, into?: Uint8Array): Promise<Reply<N>> {
    for (let attempt = 0; ; attempt++) {
      this.check();
      const brick = this.loc.cached;
      try {
        // The brick's connection was made again (it restarted, or the network broke): its fds are gone.
        const sv = this.vol.client.sv(brick);
        if (this.generation >= 0 && this.generation !== sv.generation) await this.reopenHere();
        // The call is refused if the connection changed since (the fd's number may name another file now).
        const r = await sv.call(op, { fd: this.fd, ...args } as ArgsOf<N>, into, this.generation >= 0 ? this.generation : undefined);
        if (this.vol.legacy) return await this.legacyAfter(op, args, r, attempt, into);
        return r;
      } catch (e) {
        const code = codeOf(e);
        if (fdGone(e) && attempt < FOLLOW_RETRIES) continue; // reopened at the top of the loop
        if ((code === 'ENOENT' || code === 'ESTALE') && attempt < FOLLOW_RETRIES && this.gfid) {
          // The brick no longer has the file (a migration finished and cleaned up, and the brick then
          // forgot it): find the file again by its path, as GlusterFS's complete-check does.
          // If that lookup fails (say the file's new brick is down), its error is the true one.
          const loc = await this.vol.client.locate(this.path);
          if (loc.attr.gfid !== this.gfid || loc.cached === brick) throw e;
          await this.reopenAt(loc.cached, loc.attr);
          continue;
        }
        if (code !== EMOVED || attempt >= FOLLOW_RETRIES) throw e;
        const info = infoOf(e) as { dst: string; token: string; path: string } | undefined;
        if (!info || !this.gfid) throw e;
        if (this.loc.cached === brick) await this.vol.followMove(this.gfid, info);
      }
    }
  }

  /**
   * GlusterFS's client rules (reference §3.4), for the legacy protocol: a reply showing phase 2 (mode
   * exactly 01000) makes every fd of the file move to where a fresh lookup finds it, and the operation is
   * re-issued there; a write-type operation on a phase-1 file (S+T, linkto xattr) is re-issued on dst;
   * reads ignore phase 1.
   */
  private async legacyAfter<N extends FdOp>(op: N, args: FdArgs<N>, r: Reply<N>, attempt: number, into?: Uint8Array): Promise<Reply<N>> {
    const attr = ((r as { attr?: Attr })?.attr ?? r) as Attr;
    if (!attr || typeof attr.mode !== 'number') return r;
    const phase2 = (attr.mode & S_IFMT) === S_IFREG && (attr.mode & 0o7777) === S_ISVTX;
    if (phase2 && attempt < RACE_RETRIES) {
      const before = this.loc.cached;
      await this.vol.legacyRelocate(this);
      if (this.loc.cached !== before) return this.call(op, args, into);
    }
    const writeOp = op === 'write' || op === 'ftruncate' || op === 'fallocate' || op === 'fsync' || op === 'setattr';
    if (writeOp && attr.phase1To && this.gfid) {
      if (!this.mirror || this.mirror.brick !== attr.phase1To) {
        const m = await this.vol.client.sv(attr.phase1To).call('open', { gfid: this.gfid, flags: O_RDWR });
        this.mirror = { brick: attr.phase1To, fd: m.fd };
      }
      await this.vol.client.sv(this.mirror.brick).call(op, { ...args, fd: this.mirror.fd } as ArgsOf<N>);
    }
    return r;
  }

  /** @internal Legacy protocol: reopen on the brick a fresh lookup names. */
  async reopenAt(brick: string, attr: Attr): Promise<void> {
    if (this.closed || this.loc.cached === brick) return;
    const r = await this.vol.client.sv(brick).call('open', { path: this.loc.path, flags: this.flags & ~(O_CREAT | O_EXCL | O_TRUNC) });
    const old = { brick: this.loc.cached, fd: this.fd };
    this.loc = { ...this.loc, attr, cached: brick };
    this.fd = r.fd;
    this.generation = this.vol.client.sv(brick).generation;
    this.mirror = null;
    await this.vol.client.sv(old.brick).call('close', { fd: old.fd }).catch(bestEffort('close', this.vol.client.log));
  }

  /** @internal Reopens this handle on the brick a migration moved its file to. */
  async reopenOn(dst: string, path: string, attr: Attr): Promise<void> {
    if (this.closed || this.loc.cached === dst || !this.gfid) return;
    const r = await this.vol.client.sv(dst).call('open', { gfid: this.gfid, flags: this.flags & ~(O_CREAT | O_EXCL | O_TRUNC) });
    const old = { brick: this.loc.cached, fd: this.fd };
    this.loc = { ...this.loc, path, attr, cached: dst };
    this.fd = r.fd;
    this.generation = this.vol.client.sv(dst).generation;
    await this.vol.client.sv(old.brick).call('close', { fd: old.fd }).catch(bestEffort('close', this.vol.client.log));
  }

  /** Reads up to `length` bytes at `position` (or the current position, which then advances). */
  async read(buffer: Uint8Array, offset = 0, length = buffer.length - offset, position: number | null = null): Promise<{ bytesRead: number; buffer: Uint8Array }> {
    const at = position ?? this.pos;
    let total = 0;
    const pieces = Math.ceil(length / READ_CHUNK);
    const got: number[] = new Array(pieces).fill(0);
    await pipelined(pieces, READ_WINDOW, async (i) => {
      const off = i * READ_CHUNK;
      const len = Math.min(READ_CHUNK, length - off);
      const dst = buffer.subarray(offset + off, offset + off + len);
      const lf = this.local?.file;
      if (lf && (this.flags & O_ACCMODE) !== O_WRONLY) {
        // A local read: the brick's file itself, then the check for a commit record (docs/MIGRATION.md).
        const n = await lf.read(dst, len, at + off).catch(() => -1);
        if (n >= 0 && (!lf.recorded() || planted.has('local-read-ignores-record'))) {
          got[i] = n;
          return;
        }
      }
      const r = await this.call('read', { offset: at + off, length: len }, dst);
      this.openLocal();
      // The bytes are normally received straight into the caller's buffer.
      if (r.data.buffer !== dst.buffer || r.data.byteOffset !== dst.byteOffset) dst.set(r.data);
      got[i] = r.data.length;
    });
    // Bytes count up to the first short piece (end of file).
    for (let i = 0; i < pieces; i++) {
      total += got[i];
      if (got[i] < Math.min(READ_CHUNK, length - i * READ_CHUNK)) break;
    }
    if (position === null) this.pos += total;
    return { bytesRead: total, buffer };
  }

  /**
   * Local reads and writes: the brick's file of this handle's place (`at`), once opened (null file: not
   * here); whether it is open for writing, and how many local writes are in flight (the writers' lock
   * is held while there are).
   */
  private local: { at: string; file: LocalFile | null; writable: boolean; writing: number } | null = null;
  /** Writes this handle made through the brick, one of LOCAL_AFTER_BYTES or more counting as two. */
  private brickWrites = 0;

  /**
   * Whether the handle has written more than a small file's worth through the brick (two writes, or a
   * large one): its local writes begin then, here and in the FUSE mount's addon.
   */
  get writesMuch(): boolean {
    return this.brickWrites >= 2;
  }

  /**
   * After a read or write through the brick: opens the brick's file for the next reads and writes when
   * it is on this host (once per place of the handle; a handle that moved opens its new place's file).
   */
  private openLocal(): void {
    const lfs = this.vol.localFiles;
    if (!lfs || this.closed || this.closing) return;
    const at = this.at();
    if (this.local?.at === at) return;
    void this.local?.file?.close();
    const mine: NonNullable<FileHandle['local']> = { at, file: null, writable: false, writing: 0 };
    this.local = mine;
    const opening = this.openPlace(
      (src, gfid, writable) => lfs.open(src, gfid, writable),
      (f) => f.close(),
      () => this.local === mine,
    )
      .catch(() => null) // the reads and writes go through the brick
      .then((r) => {
        if (r) {
          mine.file = r.file;
          mine.writable = r.writable;
        }
      });
    this.opening.add(opening);
    void opening.finally(() => this.opening.delete(opening));
  }

  /** Local opens in flight: close() waits for them, so that no descriptor of the brick's file outlives it. */
  private opening = new Set<Promise<void>>();
  /** close() has begun: no more local opens. */
  private closing = false;

  /**
   * Opens, with `open`, the brick's data file of this handle's place for local reads, and for local
   * writes too (`writable`) if the handle may make them: open for writing and not appending (an append
   * needs the brick's idea of the end), on a brick that shuts local writers out of its migrations. Null
   * when the brick is not on this host, when the handle moved or closed meanwhile, or when the caller no
   * longer `wants` it (what `open` gave is then closed with `close`). For FileHandle's own local reads
   * and writes, and the FUSE mount's addon. The legacy protocol leaves no commit record: never local.
   */
  async openPlace<T>(open: (src: LocalSource, gfid: string, writable: boolean) => Promise<T | null>, close: (file: T) => void | Promise<void>, wants: () => boolean): Promise<{ file: T; writable: boolean } | null> {
    const at = this.at();
    const src = await this.localSource();
    const gfid = this.gfid;
    if (!src || src.at !== at || !gfid) return null;
    const writable = src.writers && (this.flags & O_ACCMODE) !== O_RDONLY && !(this.flags & O_APPEND);
    const file = await open(src, gfid, writable);
    if (file === null) return null;
    if (this.closed || this.at() !== at || !wants()) {
      await close(file);
      return null;
    }
    return { file, writable };
  }

  /**
   * A local write (docs/MIGRATION.md, "Local writes"): the brick's file itself, written through the
   * gate (closed from the start of a migration of the file to its end) under the writers' lock held
   * shared, and only if the file has no commit record. False: the write is to go through the brick.
   */
  private async writeLocally(data: Uint8Array, position: number): Promise<boolean> {
    const l = this.local;
    const lf = l?.file;
    if (!l || !lf || !l.writable) return false;
    if (!lf.lock(LOCK_GATE, 'shared')) return false;
    const entered = l.writing > 0 || lf.lock(LOCK_WRITERS, 'shared');
    lf.lock(LOCK_GATE, 'unlock');
    if (!entered) return false;
    l.writing++;
    try {
      // Taken after the lock: a migration that committed set the record before it let the lock go.
      if (lf.recorded() && !planted.has('local-write-ignores-record')) return false;
      return (await lf.write(data, data.length, position)) === data.length;
    } catch {
      return false;
    } finally {
      if (--l.writing === 0) lf.lock(LOCK_WRITERS, 'unlock');
    }
  }

  /**
   * Writes `length` bytes of `buffer` at `position` (or the current position, which then advances).
   * `dropPrivs` (a FUSE mount, for a writer other than root): the file's set-user-ID bit falls, and its
   * set-group-ID bit where its group may execute, as the kernel does for a writer without CAP_FSETID.
   */
  async write(data: Uint8Array | string, offset = 0, length?: number, position: number | null = null, opts?: { dropPrivs?: boolean }): Promise<{ bytesWritten: number }> {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    const len = length ?? buf.length - offset;
    const append = (this.flags & O_APPEND) !== 0;
    const at = position ?? this.pos;
    const dropPrivs = opts?.dropPrivs ? { dropPrivs: true } : {};
    let lastSize = 0;
    if (append) {
      this.brickWrites++;
      // O_APPEND: the brick appends; pieces must go in order.
      let written = 0;
      while (written < len) {
        const piece = buf.subarray(offset + written, offset + Math.min(len, written + IO_CHUNK));
        let r: { written: number; attr: Attr };
        try {
          r = await this.call('write', { offset: 0, data: piece, ...dropPrivs });
        } catch (e) {
          if (written === 0) throw e;
          break; // as write(2): the bytes appended so far count
        }
        lastSize = r.attr.size;
        written += r.written;
        if (r.written < piece.length) break;
      }
      this.pos = lastSize;
      return { bytesWritten: written };
    }
    if (!opts?.dropPrivs && (await this.writeLocally(buf.subarray(offset, offset + len), at))) {
      if (position === null) this.pos += len;
      return { bytesWritten: len };
    }
    // A single write of up to IO_CHUNK (a FUSE mount's 1 MiB requests, one at a time) goes in four
    // pieces: the brick writes the first while the others are still on the wire.
    const chunk = len > IO_CHUNK / 2 && len <= IO_CHUNK ? IO_CHUNK / 4 : IO_CHUNK;
    const pieces = Math.ceil(len / chunk);
    // Each piece's outcome: the bytes the brick wrote, or its error. As write(2), a write that could
    // only be made in part (a full disk) returns the bytes written from its start; an error only if none were.
    const done: (number | unknown)[] = new Array(pieces);
    await pipelined(pieces, IO_WINDOW, async (i) => {
      const off = i * chunk;
      const piece = buf.subarray(offset + off, offset + Math.min(len, off + chunk));
      try {
        done[i] = (await this.call('write', { offset: at + off, data: piece, ...dropPrivs })).written;
      } catch (e) {
        if (i === 0 || !(e instanceof FsError) || !['ENOSPC', 'EDQUOT', 'EFBIG'].includes(e.code)) throw e;
        done[i] = e;
      }
    });
    let written = 0;
    for (let i = 0; i < pieces; i++) {
      const want = Math.min(len, (i + 1) * chunk) - i * chunk;
      const d = done[i];
      if (typeof d !== 'number') break;
      written += d;
      if (d < want) break;
    }
    if (written === 0 && len > 0) throw new FsError('EIO', 'the brick wrote nothing and said no error');
    this.brickWrites += len >= LOCAL_AFTER_BYTES ? 2 : 1;
    if (this.writesMuch) this.openLocal();
    if (position === null) this.pos += written;
    return { bytesWritten: written };
  }

  async readFile(): Promise<Buffer> {
    const st = await this.stat();
    const buf = Buffer.allocUnsafe(st.size);
    const { bytesRead } = await this.read(buf, 0, st.size, 0);
    return bytesRead === st.size ? buf : buf.subarray(0, bytesRead);
  }

  async stat(): Promise<Stats> {
    return new Stats(await this.call('fstat', {}));
  }

  /**
   * Where this host can read the file's data itself (see Brick.fdLocal), with the place the handle is at
   * when it was asked (`at`: it changes when the file moves); null for the legacy protocol, whose
   * migrations leave no commit record to check.
   */
  private async localSource(): Promise<LocalSource | null> {
    if (this.vol.legacy) return null;
    const r = await this.call('fdLocal', {});
    return { ...r, at: this.at() };
  }

  /** Names where the handle's fd is: brick, connection generation and fd number. */
  at(): string {
    return `${this.loc.cached}/${this.generation}/${this.fd}`;
  }

  /** lseek with SEEK_DATA or SEEK_HOLE: the next data or hole at or after `offset` (ENXIO past the end). */
  async seek(offset: number, whence: 'data' | 'hole'): Promise<number> {
    return (await this.call('seek', { offset, whence })).offset;
  }

  async truncate(len = 0): Promise<void> {
    await this.call('ftruncate', { size: len });
  }

  /**
   * fallocate(2): `mode` 0 (allocate, growing the file), FALLOC_FL_KEEP_SIZE (allocate only),
   * FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, FALLOC_FL_ZERO_RANGE (with or without KEEP_SIZE),
   * FALLOC_FL_COLLAPSE_RANGE or FALLOC_FL_INSERT_RANGE (from storage/storage.ts), as the brick's file
   * system allows them (ext4: all; EOPNOTSUPP, EINVAL otherwise). A file being migrated follows as for
   * any change (docs/MIGRATION.md).
   */
  async fallocate(mode: number, offset: number, length: number): Promise<void> {
    await this.call('fallocate', { mode, offset, length });
  }

  async sync(): Promise<void> {
    await this.call('fsync', { datasync: false });
  }

  async datasync(): Promise<void> {
    await this.call('fsync', { datasync: true });
  }

  async chmod(mode: number): Promise<void> {
    await this.call('setattr', { mode: mode & 0o7777 });
  }

  /**
   * fchown, fchmod, futimens of the open file (`ctime`: the change time alone); they reach a file whose
   * names are all gone too (unlinked while open), as on a local disk.
   */
  async setattr(attrs: { mode?: number; uid?: number; gid?: number; atime?: [number, number]; mtime?: [number, number]; ctime?: boolean }): Promise<void> {
    await this.call('setattr', attrs);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closing = true;
    const local = this.local?.file;
    this.local = null;
    // The brick's file as this host opened it is closed first (a local open still in flight sees the
    // handle no longer wants it, and closes what it opened): once close() resolves, no descriptor of the
    // file is left here, and an unlinked file's blocks are free.
    await Promise.all([local?.close(), ...this.opening]);
    try {
      await this.call('close', {});
    } finally {
      this.closed = true;
      this.vol.forget(this);
    }
  }
}

/** A dhtfs volume, reached over its bricks. */
export class Volume {
  private handles = new Set<FileHandle>();
  private moving = new Map<string, Promise<void>>();
  /** GlusterFS's client rules (volume option migrationProtocol: 'legacy'). */
  readonly legacy: boolean;

  constructor(
    readonly client: DhtClient,
    /** Local reads: how this client reads bricks' files of its host itself (none: null). */
    readonly localFiles: LocalFiles | null = null,
    /** Bits taken from the mode of what this client makes (ConnectOptions.umask). */
    readonly umask = 0,
  ) {
    this.legacy = client.spec.options?.migrationProtocol === 'legacy';
  }

  /** @internal Legacy protocol: every handle of the file moves to where a fresh lookup finds it. */
  async legacyRelocate(h: FileHandle): Promise<void> {
    const loc = await this.client.locate(h.path);
    await Promise.all([...this.handles].filter((x) => x.gfid === h.gfid).map((x) => x.reopenAt(loc.cached, loc.attr)));
  }

  /** GlusterFS strips its phase-1 flags (S+T together) from every attribute it returns. */
  private stats(a: Attr): Stats {
    const both = S_ISGID | S_ISVTX;
    return new Stats(this.legacy && (a.mode & both) === both ? { ...a, mode: a.mode & ~both } : a);
  }

  /** Connects to every brick of the spec over TCP. */
  /**
   * A volume by its spec, or by `HOST:/NAME`: the spec is then fetched from the node daemon of HOST (or
   * of `opts.volfileServers`) over the management path's TLS, with the client certificate of
   * `opts.tlsDir` (default $DHTFS_HOME/tls/client).
   */
  static async connect(spec: VolumeSpec | string, opts: ConnectOptions & ByHostOptions = {}): Promise<Volume> {
    if (typeof spec === 'string') spec = await specByHost(spec, opts.clock ?? realClock, opts);
    const c = new DhtClient(spec, opts.network ?? specNetwork(spec, opts.tlsDir, opts.log), opts.clock ?? realClock, opts.random ?? realRandom, {
      clientName: opts.clientName,
      log: opts.log,
      negativeCache: opts.negativeCache,
      dirCache: opts.dirCache,
    });
    await c.connect();
    return new Volume(c, opts.localFiles === undefined ? diskLocalFiles : opts.localFiles, (opts.umask ?? process.umask()) & 0o777);
  }

  /** Closes every open file handle and brick connection. */
  async close(): Promise<void> {
    await Promise.all([...this.handles].map((h) => h.close().catch(bestEffort('close', this.client.log))));
    this.client.close();
  }

  /** @internal */
  forget(h: FileHandle): void {
    this.handles.delete(h);
  }

  /** @internal A file's migration committed: install dst's copy and move every handle of the file. */
  followMove(gfid: string, m: { dst: string; token: string; path: string }): Promise<void> {
    let p = this.moving.get(gfid);
    if (p) return p;
    p = (async () => {
      const attr = await this.client.installMoved(gfid, m);
      await Promise.all([...this.handles].filter((h) => h.gfid === gfid).map((h) => h.reopenOn(m.dst, m.path, attr)));
    })().finally(() => this.moving.delete(gfid));
    this.moving.set(gfid, p);
    return p;
  }

  /** Follows a symlink in the last component (up to 40 hops), as stat(2) does. */
  private async resolve(path: string): Promise<Located> {
    let p = normPath(path);
    for (let i = 0; i < MAX_SYMLINK_HOPS; i++) {
      const loc = await this.client.locate(p);
      if ((loc.attr.mode & S_IFMT) !== S_IFLNK) return loc;
      const target = await this.client.readlink(p);
      p = target.startsWith('/') ? normPath(target) : normPath(p.slice(0, p.lastIndexOf('/') + 1) + target);
    }
    throw new FsError('ELOOP', `${path}: too many levels of symbolic links`);
  }

  async open(path: string, flags: OpenFlags = 'r', mode = 0o666, owner?: Owner): Promise<FileHandle> {
    const f = parseFlags(flags);
    let r: Awaited<ReturnType<DhtClient['open']>>;
    if (f & O_CREAT) r = await this.client.open(path, f, mode & ~this.umask, owner);
    else {
      for (let attempt = 0; ; attempt++) {
        const loc = await this.resolve(path);
        try {
          r = await this.client.openLocated(loc, f);
          break;
        } catch (e) {
          // A migration moved the file between the lookup and the open: look it up again.
          if (attempt >= RACE_RETRIES || !movedAway(e)) throw e;
        }
      }
    }
    if ((r.attr.mode & S_IFMT) === S_IFDIR && (f & O_ACCMODE) !== O_RDONLY) throw new FsError('EISDIR', `${path}: is a directory`);
    const h = new FileHandle(this, r.located, r.fd, f);
    h.generation = this.client.sv(r.located.cached).generation;
    this.handles.add(h);
    return h;
  }

  async readFile(path: string): Promise<Buffer>;
  async readFile(path: string, encoding: BufferEncoding): Promise<string>;
  async readFile(path: string, encoding?: BufferEncoding): Promise<Buffer | string> {
    const h = await this.open(path, 'r');
    try {
      const b = await h.readFile();
      return encoding ? b.toString(encoding) : b;
    } finally {
      await h.close();
    }
  }

  async writeFile(path: string, data: Uint8Array | string, opts: { mode?: number; flag?: OpenFlags } = {}): Promise<void> {
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    const flags = parseFlags(opts.flag ?? 'w');
    if (flags & O_CREAT && !(flags & O_APPEND) && bytes.length <= IO_CHUNK && (await this.client.createWithoutLookup(path))) {
      // A new small file: create, write and close in one round trip.
      try {
        if (await this.client.tryCreate(path, flags & ~O_TRUNC, (opts.mode ?? 0o666) & ~this.umask, undefined, { data: bytes, close: true }, true)) return;
      } catch (e) {
        if (codeOf(e) !== 'EEXIST' || flags & O_EXCL) throw e;
      }
    }
    const h = await this.open(path, opts.flag ?? 'w', opts.mode ?? 0o666);
    try {
      const append = (h.flags & O_APPEND) !== 0;
      // A short write (a full disk) is followed by one for the rest, which says why it cannot be made.
      for (let off = 0; off < bytes.length || off === 0;) {
        const { bytesWritten } = await h.write(bytes, off, bytes.length - off, append ? null : off);
        off += bytesWritten;
        if (bytesWritten === 0) break;
      }
    } finally {
      await h.close();
    }
  }

  async appendFile(path: string, data: Uint8Array | string): Promise<void> {
    await this.writeFile(path, data, { flag: 'a' });
  }

  async stat(path: string): Promise<Stats> {
    return this.stats((await this.resolve(path)).attr);
  }

  async lstat(path: string): Promise<Stats> {
    return this.stats(await this.client.stat(path));
  }

  async exists(path: string): Promise<boolean> {
    try {
      await this.client.stat(path);
      return true;
    } catch (e) {
      if (codeOf(e) === 'ENOENT') return false;
      throw e;
    }
  }

  async mkdir(path: string, opts: { mode?: number; recursive?: boolean } = {}): Promise<void> {
    const mode = (opts.mode ?? 0o777) & ~this.umask;
    if (!opts.recursive) {
      await this.client.mkdir(path, mode);
      return;
    }
    const parts = normPath(path).split('/').filter(Boolean);
    let p = '';
    for (const c of parts) {
      p += '/' + c;
      try {
        await this.client.mkdir(p, mode);
      } catch (e) {
        ignoreCodes(e, 'EEXIST');
        const st = await this.client.stat(p);
        if ((st.mode & S_IFMT) !== S_IFDIR) throw new FsError('ENOTDIR', `${p}: not a directory`);
      }
    }
  }

  /**
   * The names in a directory. With a brick down, what the live bricks hold (as GlusterFS lists), unless
   * `whole`: then a listing is exact or fails with ENOTCONN.
   */
  async readdir(path: string, opts?: { whole?: boolean }): Promise<string[]>;
  async readdir(path: string, opts: { withFileTypes: true; whole?: boolean }): Promise<Dirent[]>;
  async readdir(path: string, opts?: { withFileTypes?: boolean; whole?: boolean }): Promise<string[] | Dirent[]> {
    const loc = await this.resolve(path);
    if ((loc.attr.mode & S_IFMT) !== S_IFDIR) throw new FsError('ENOTDIR', `${path}: not a directory`);
    const entries = await this.client.readdirAll(loc.path, { whole: opts?.whole });
    return opts?.withFileTypes ? entries.map((e) => new Dirent(e.name, e.attr.mode)) : entries.map((e) => e.name);
  }

  async unlink(path: string): Promise<void> {
    await this.client.unlink(path);
  }

  async rmdir(path: string): Promise<void> {
    await this.client.rmdir(path);
  }

  /** rm: a file, or with `recursive` a whole tree. `force` ignores a missing path. */
  async rm(path: string, opts: { recursive?: boolean; force?: boolean } = {}): Promise<void> {
    let st: Attr;
    try {
      st = await this.client.stat(path);
    } catch (e) {
      if (opts.force && codeOf(e) === 'ENOENT') return;
      throw e;
    }
    if ((st.mode & S_IFMT) !== S_IFDIR) return this.unlink(path);
    if (!opts.recursive) throw new FsError('EISDIR', `${path}: is a directory (use recursive)`);
    const p = normPath(path);
    for (const e of await this.client.readdirAll(p)) await this.rm(`${p === '/' ? '' : p}/${e.name}`, opts);
    if (p !== '/') await this.rmdir(p);
  }

  async rename(from: string, to: string): Promise<void> {
    await this.client.rename(from, to);
  }

  /**
   * renameat2(2) with RENAME_EXCHANGE: the two names swap their files at once. Supported where it can be
   * atomic: two files (or symlinks, FIFOs, sockets, devices) whose names both hash to the brick that
   * holds their data; otherwise EXDEV (directories, names on different bricks). See DhtClient.exchange.
   */
  async exchange(a: string, b: string): Promise<void> {
    await this.client.exchange(a, b);
  }

  async link(existing: string, newPath: string): Promise<void> {
    await this.client.link(existing, newPath);
  }

  async symlink(target: string, path: string): Promise<void> {
    await this.client.symlink(target, path);
  }

  /** A named pipe (mkfifo(3)); `mode` as for mkdir. Opening it is for a FUSE mount, where the kernel joins its ends. */
  async mkfifo(path: string, mode = 0o644): Promise<void> {
    await this.client.mknod(path, S_IFIFO | (mode & 0o7777 & ~this.umask));
  }

  /**
   * mknod(2): a FIFO, a socket, or a block or character device (`mode`: S_IFIFO, S_IFSOCK, S_IFBLK or
   * S_IFCHR with the permission bits, less the umask; `dev`: the device of a device node, as makedev(3)
   * encodes it). Regular files are made by open, directories by mkdir.
   */
  async mknod(path: string, mode: number, dev = 0): Promise<void> {
    const type = mode & S_IFMT;
    if (type !== S_IFIFO && type !== S_IFSOCK && type !== S_IFBLK && type !== S_IFCHR) throw new FsError('EINVAL', `${path}: mknod makes FIFOs, sockets and device nodes`);
    await this.client.mknod(path, type | (mode & 0o7777 & ~this.umask), undefined, dev);
  }

  async readlink(path: string): Promise<string> {
    return this.client.readlink(path);
  }

  async chmod(path: string, mode: number): Promise<void> {
    const loc = await this.resolve(path);
    await this.client.setattr(loc.path, { mode: mode & 0o7777 });
  }

  async chown(path: string, uid: number, gid: number): Promise<void> {
    const loc = await this.resolve(path);
    await this.client.setattr(loc.path, { uid, gid });
  }

  async lchown(path: string, uid: number, gid: number): Promise<void> {
    await this.client.setattr(path, { uid, gid });
  }

  async utimes(path: string, atime: number | Date, mtime: number | Date): Promise<void> {
    const ts = (t: number | Date): [number, number] => {
      const s = t instanceof Date ? t.getTime() / 1000 : t;
      const sec = Math.floor(s);
      return [sec, Math.round((s - sec) * 1e9) % 1e9];
    };
    const loc = await this.resolve(path);
    await this.client.setattr(loc.path, { atime: ts(atime), mtime: ts(mtime) });
  }

  async truncate(path: string, len = 0): Promise<void> {
    const loc = await this.resolve(path);
    await this.client.setattr(loc.path, { size: len });
  }

  async getxattr(path: string, name: string): Promise<Buffer> {
    return this.client.getxattr(path, name);
  }

  async setxattr(path: string, name: string, value: Uint8Array | string, flags: { create?: boolean; replace?: boolean } = {}): Promise<void> {
    await this.client.setxattr(path, name, typeof value === 'string' ? Buffer.from(value) : value, flags);
  }

  async listxattr(path: string): Promise<string[]> {
    return this.client.listxattr(path);
  }

  async removexattr(path: string, name: string): Promise<void> {
    await this.client.removexattr(path, name);
  }

  async statfs(): Promise<{ bsize: number; blocks: number; bfree: number; bavail: number; files: number; ffree: number }> {
    return this.client.statfs();
  }
}
