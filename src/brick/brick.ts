/**
 * The brick: serves one exported directory to DHT clients. A state machine over Storage, Clock and
 * Random; no sockets, no `fs`. Each request is validated completely before it touches storage, and its
 * metadata section runs without interleaving with other requests (Storage metadata calls are synchronous).
 *
 * On disk (GlusterFS conventions, names under a configurable prefix, `trusted.` as root):
 *   <prefix>gfid                        16-byte id of every file and directory
 *   <prefix>glusterfs.dht               layout ranges on directories, 16 bytes each (one: GlusterFS's value)
 *   <prefix>glusterfs.dht.linkto        NUL-terminated brick name on linkto files (mode exactly 01000)
 *   <prefix>glusterfs.dht.commithash    volume commit hash on the root, decimal ASCII + NUL
 *   <prefix>glusterfs.volume-id         16-byte volume id on the root
 *   .glusterfs/ab/cd/<gfid>             handle: hard link for files and symlinks, symlink for directories
 */
import { planted } from '../common/plant.js';
import { ELAYOUT, EMOVED, FsError, codeOf } from '../common/errors.js';
import type { Clock, Random } from '../common/env.js';
import { ROOT_GFID, gfidFromBytes, gfidToBytes, isGfid } from '../common/gfid.js';
import { COMMIT_HASH_INVALID, decodeRanges, encodeRanges, sameRanges, MAX_RANGES_PER_BRICK, type LayoutRange } from '../dht/layout.js';
import type { RequestHandler } from '../wire/rpc.js';
import { MAX_IO_SIZE } from '../wire/frame.js';
import { ioBuffers } from '../wire/pool.js';
import { LIMIT_DEFAULTS, LimitLog, type BrickLimits } from '../wire/limits.js';
import { LIMIT_OPTION_KEYS } from '../dht/spec.js';
import type { Attr, DirEntryAttr, RootInfo, StatFsReply } from '../wire/types.js';
import { TOPOLOGY_CHANGED } from '../wire/types.js';
import {
  O_ACCMODE,
  O_APPEND,
  O_RDONLY,
  O_CREAT,
  O_DIRECTORY,
  O_EXCL,
  O_RDWR,
  O_TRUNC,
  O_WRONLY,
  S_IFDIR,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  S_IFIFO,
  S_IFSOCK,
  S_ISGID,
  S_ISUID,
  S_ISVTX,
  S_IXGRP,
  LOCK_GATE,
  LOCK_WRITERS,
  type FdLocal,
  type LocalName,
  type Stat,
  type Storage,
  type Timespec,
} from '../storage/storage.js';
import { LockTable, type LockMode } from './locks.js';
import { SrcMigrations, formatMoved, parseMoved, type DirtyRecord, type Moved } from './migration.js';
import { DirWatches, watchedStorage, type Watcher } from './watch.js';

export const HANDLE_DIR = '.glusterfs';
/** Where dst keeps migration copies until they are installed: outside the namespace. */
export const MIGRATE_DIR = `${HANDLE_DIR}/dhtfs-migrate`;
/** Where a linkto that replaces a name is made before it is renamed over the name. */
const RENAME_DIR = `${HANDLE_DIR}/dhtfs-rename`;
const MAX_LEASE_MS = 10 * 60 * 1000;
/** How long a lease waits for the local writes of its file in flight to end before giving up (EBUSY). */
const LOCAL_WRITERS_WAIT_MS = 5000;
const MAX_NAME = 255;
const MAX_PATH = 4096;
const MAX_XATTR_VALUE = 64 * 1024;
const LINKTO_MODE = S_IFREG | S_ISVTX;

export interface BrickConfig {
  /** The brick's subvolume name, as linkto xattrs name it (e.g. `vol-client-0`). */
  name: string;
  volumeId: string;
  /** `trusted.` when running as root (GlusterFS's namespace), `user.` otherwise. */
  xattrPrefix: string;
  /** Bounds on clients' fds and locks (wire/limits.ts); the defaults without. */
  limits?: BrickLimits;
  /**
   * Which brick of the volume this directory is (the CLI's spec keeps a uuid per brick; default: the
   * name). The first start claims the directory with it (`<prefix>dhtfs.brick-id` on the root); a
   * directory claimed by another brick is refused, so one directory never serves as two bricks.
   */
  brickId?: string;
}

export type LogFn = (level: 'info' | 'warn' | 'error', msg: string, extra?: Record<string, unknown>) => void;

interface OpenFile {
  h: number;
  gfid: string | null;
  flags: number;
  /** A migration copy on dst (not in the namespace yet). */
  tempRel?: string;
  /** The file was migrated away and its src copy removed: every operation but close says EMOVED. */
  moved?: Moved;
}

export interface Session extends Watcher {
  id: number;
  remote: string;
  client: string;
  fds: Map<number, OpenFile>;
  nextFd: number;
  /** The session proved the volume's administrative secret: it may change the volume (topology, commit hash). */
  admin: boolean;
}

// ---------------------------------------------------------------------------------------------------
// Argument validation: a request is checked field by field; anything unexpected is EINVAL.

type Args = Record<string, unknown>;

/**
 * A request refused because it tried something no honest client does (a reserved or taken gfid, a
 * forged handle, a special file opened): the brick logs it with the client's name, once per request.
 */
class Refused extends FsError {}

function bad(field: string, why = 'invalid'): FsError {
  return new FsError('EINVAL', `argument '${field}': ${why}`);
}
function str(a: Args, k: string): string {
  const v = a[k];
  if (typeof v !== 'string') throw bad(k, 'must be a string');
  return v;
}
function int(a: Args, k: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const v = a[k];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) throw bad(k, `must be an integer in [${min}, ${max}]`);
  // A float64 -0 passes the checks above but makes Node's fs abort the process (a mode of -0): +0.
  return v === 0 ? 0 : v;
}
function optInt(a: Args, k: string, min = 0, max = Number.MAX_SAFE_INTEGER): number | undefined {
  return a[k] === undefined || a[k] === null ? undefined : int(a, k, min, max);
}
function optBool(a: Args, k: string): boolean {
  const v = a[k];
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') throw bad(k, 'must be a boolean');
  return v;
}
function bytes(a: Args, k: string): Uint8Array {
  const v = a[k];
  if (!(v instanceof Uint8Array)) throw bad(k, 'must be binary');
  return v;
}
function gfidArg(a: Args, k: string): string {
  const v = a[k];
  if (!isGfid(v)) throw bad(k, 'must be a gfid');
  return v;
}
const NULL_GFID = '00000000-0000-0000-0000-000000000000';
/** The gfid of a new inode: any but the root's and the null gfid (no one may take those over). */
function newGfidArg(a: Args, k: string): string {
  const v = gfidArg(a, k);
  if (v === ROOT_GFID || v === NULL_GFID) throw new Refused('EPERM', `argument '${k}': gfid ${v} is reserved`);
  return v;
}
function optGfid(a: Args, k: string): string | undefined {
  return a[k] === undefined || a[k] === null ? undefined : gfidArg(a, k);
}
function timespec(a: Args, k: string): Timespec | undefined {
  const v = a[k];
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || v.length !== 2 || !v.every((x) => Number.isSafeInteger(x)) || v[1] < 0 || v[1] >= 1e9) throw bad(k, 'must be [sec, nsec]');
  return [v[0] === 0 ? 0 : v[0], v[1] === 0 ? 0 : v[1]];
}
const U32 = 0xffffffff;
function oneRange(v: unknown, k: string): LayoutRange {
  if (typeof v !== 'object' || v === null) throw bad(k, 'must be a layout range');
  const r = v as Args;
  const out = { commit: int(r, 'commit', 0, U32), type: int(r, 'type', 0, 1), start: int(r, 'start', 0, U32), stop: int(r, 'stop', 0, U32) };
  if (out.start > out.stop) throw bad(k, 'start > stop');
  return out;
}
/** A list of layout ranges; `null` means none; undefined means the field is absent. */
function rangesArg(a: Args, k: string): LayoutRange[] | null | undefined {
  const v = a[k];
  if (v === undefined) return undefined;
  if (v === null) return null;
  if (!Array.isArray(v) || v.length > MAX_RANGES_PER_BRICK) throw bad(k, `must be a list of at most ${MAX_RANGES_PER_BRICK} layout ranges`);
  return v.map((r) => oneRange(r, k));
}
/** A symlink's target: 1..4096 bytes, no NUL (any text else: it is the user's, never followed by a brick). */
function symlinkTarget(a: Args): string {
  const t = str(a, 'target');
  if (t.length === 0 || Buffer.byteLength(t) > MAX_PATH || t.includes('\0')) throw bad('target', 'must be 1..4096 bytes without NUL');
  return t;
}
/** A file's xattrs as a migration carries them: at most 1024 [name, value] pairs, names of 1..255 bytes, values of 64 KiB at most. */
function xattrPairs(a: Args, k: string): [string, Uint8Array][] {
  const v = a[k];
  if (!Array.isArray(v) || v.length > 1024) throw bad(k, 'must be at most 1024 [name, value] pairs');
  for (const x of v) {
    if (!Array.isArray(x) || x.length !== 2 || typeof x[0] !== 'string' || !(x[1] instanceof Uint8Array)) throw bad(k, 'must be [name, value] pairs');
    if (x[0].length === 0 || Buffer.byteLength(x[0]) > MAX_NAME || x[1].length > MAX_XATTR_VALUE) throw bad(k, `names of 1..${MAX_NAME} bytes, values of ${MAX_XATTR_VALUE} bytes at most`);
  }
  return v as [string, Uint8Array][];
}
function lockMode(a: Args, k: string): LockMode | 'un' {
  const v = a[k];
  if (v !== 'rd' && v !== 'wr' && v !== 'un') throw bad(k, "must be 'rd', 'wr' or 'un'");
  return v;
}

/**
 * A volume path ('/a/b') to a brick-relative one ('a/b'; '' for the root). Rejects everything that could
 * name something outside the brick or inside its private handle directory.
 */
export function relPath(p: unknown, field = 'path'): string {
  if (typeof p !== 'string') throw bad(field, 'must be a string');
  if (Buffer.byteLength(p) > MAX_PATH) throw new FsError('ENAMETOOLONG', `${field} is longer than ${MAX_PATH} bytes`);
  if (!p.startsWith('/')) throw new FsError('EINVAL', `${field} must start with '/'`);
  if (p === '/') return '';
  const parts = p.slice(1).split('/');
  for (const c of parts) {
    if (c === '' || c === '.' || c === '..') throw new FsError('EINVAL', `${field} has an empty, '.' or '..' component`);
    if (c.includes('\0')) throw new FsError('EINVAL', `${field} contains NUL`);
    if (Buffer.byteLength(c) > MAX_NAME) throw new FsError('ENAMETOOLONG', `a name in ${field} is longer than ${MAX_NAME} bytes`);
  }
  if (parts[0] === HANDLE_DIR) throw new FsError('EPERM', `${HANDLE_DIR} is reserved`);
  return parts.join('/');
}

function parentOf(rel: string): string {
  const i = rel.lastIndexOf('/');
  return i < 0 ? '' : rel.slice(0, i);
}
function baseOf(rel: string): string {
  return rel.slice(rel.lastIndexOf('/') + 1);
}
function handlePath(gfid: string): string {
  return `${HANDLE_DIR}/${gfid.slice(0, 2)}/${gfid.slice(2, 4)}/${gfid}`;
}
const isReg = (st: Stat) => (st.mode & S_IFMT) === S_IFREG;
const isDir = (st: Stat) => (st.mode & S_IFMT) === S_IFDIR;
const isLnk = (st: Stat) => (st.mode & S_IFMT) === S_IFLNK;

// ---------------------------------------------------------------------------------------------------

export class Brick implements RequestHandler<Session> {
  readonly X: { gfid: string; dht: string; linkto: string; commit: string; volumeId: string; migration: string; rename: string; links: string; topology: string; rootAttr: string; reserved: string[] };
  readonly mig: SrcMigrations;
  readonly locks: LockTable;
  /** The limits in force (wire/limits.ts): the config's, and `volume set` options from the topology. */
  private readonly limits: BrickLimits;
  /** The limits this brick started with, which an option's reset (or -1) brings back. */
  private readonly ownLimits: BrickLimits;
  private sessions = new Map<number, Session>();
  private nextSession = 1;
  private openCount = new Map<string, number>();
  private handleDirs = new Set<string>();
  private readonly ops: Record<string, (s: Session, a: Args) => unknown>;
  /** Clients' watches of directories (watch.ts): every change of a name goes through `st`, which reports it. */
  private readonly watches: DirWatches;
  private readonly st: Storage;

  constructor(
    st: Storage,
    readonly cfg: BrickConfig,
    private readonly clock: Clock,
    random: Random,
    private readonly log: LogFn = () => {},
  ) {
    this.watches = new DirWatches(clock);
    this.st = watchedStorage(st, this.watches, (rel) => rel === HANDLE_DIR || rel.startsWith(`${HANDLE_DIR}/`));
    const p = cfg.xattrPrefix;
    this.X = {
      gfid: `${p}gfid`,
      dht: `${p}glusterfs.dht`,
      linkto: `${p}glusterfs.dht.linkto`,
      commit: `${p}glusterfs.dht.commithash`,
      volumeId: `${p}glusterfs.volume-id`,
      migration: `${p}dhtfs.migration`,
      rename: `${p}dhtfs.rename`,
      links: `${p}dhtfs.links`,
      topology: `${p}dhtfs.volume`,
      rootAttr: `${p}dhtfs.root-attr`,
      reserved: [`${p}gfid`, `${p}glusterfs.`, `${p}dhtfs.`],
    };
    // Shared with the connection layer (server.ts), so that `volume set limit.*` reaches it too.
    this.limits = cfg.limits ?? { ...LIMIT_DEFAULTS };
    this.ownLimits = { ...this.limits };
    this.locks = new LockTable(clock, this.limits);
    this.mig = new SrcMigrations(clock, random, (m) => log('info', m), (gfid) => this.unlockWriters(gfid));
    this.ops = {
      migLease: (s, a) => this.migLease(s, a),
      migSource: (_s, a) => this.migSource(a),
      migPull: (s, a) => this.migPull(s, a),
      migRenew: (_s, a) => this.migRenew(a),
      migDirty: (_s, a) => this.migDirty(a),
      migSegments: (_s, a) => this.migSegments(a),
      migFreeze: (_s, a) => this.migFreeze(a),
      migCommit: (_s, a) => this.migCommit(a),
      migAbort: (_s, a) => this.migAbort(a),
      migCleanup: (_s, a) => this.migCleanup(a),
      migPrepare: (s, a) => this.migPrepare(s, a),
      migFinalize: (s, a) => this.migFinalize(s, a),
      migInstall: (_s, a) => this.migInstall(a),
      migSpecial: (_s, a) => this.migSpecial(a),
      migDropSpecial: (_s, a) => this.migDropSpecial(a),
      lookup: (_s, a) => this.lookup(a),
      lookupGfid: (_s, a) => this.lookupGfid(a),
      rootInfo: () => this.rootInfo(),
      getTopology: () => this.getTopology(),
      setTopology: (s, a) => this.setTopology(a, s),
      statfs: () => this.statfs(),
      mkdir: (s, a) => this.mkdir(a, s),
      watchAck: (_s, a) => this.watches.ack(int(a, 'id', 0, Number.MAX_SAFE_INTEGER)),
      setLayout: (_s, a) => this.setLayout(a),
      setCommitHash: (s, a) => this.setCommitHash(a, s),
      create: (s, a) => this.create(s, a),
      mklinkto: (_s, a) => this.mklinkto(a),
      open: (s, a) => this.open(s, a),
      read: (s, a) => this.read(s, a),
      write: (s, a) => this.write(s, a),
      fsync: (s, a) => this.fsync(s, a),
      ftruncate: (s, a) => this.ftruncate(s, a),
      fstat: (s, a) => this.fstat(s, a),
      fdLocal: (s, a) => this.fdLocal(s, a),
      seek: (s, a) => this.seek(s, a),
      migSweep: (_s, a) => this.migSweep(a),
      legacySetLinkto: (_s, a) => this.legacySetLinkto(a),
      close: (s, a) => this.closeFd(s, a),
      setattr: (s, a) => this.setattr(s, a),
      unlink: (_s, a) => this.unlink(a),
      rmdir: (_s, a) => this.rmdir(a),
      rename: (_s, a) => this.rename(a),
      link: (_s, a) => this.link(a),
      renameSettled: (_s, a) => this.renameSettled(a),
      symlink: (_s, a) => this.symlink(a),
      mknod: (_s, a) => this.mknod(a),
      // A client's watchdog (ping-timeout) asks whether this brick is alive; answered at once.
      ping: () => ({}),
      readlink: (_s, a) => this.readlink(a),
      readdir: (_s, a) => this.readdir(a),
      getxattr: (_s, a) => this.getxattr(a),
      setxattr: (_s, a) => this.setxattr(a),
      listxattr: (_s, a) => this.listxattr(a),
      removexattr: (_s, a) => this.removexattr(a),
      inodelk: (s, a) => this.inodelk(s, a),
      entrylk: (s, a) => this.entrylk(s, a),
    };
  }

  /** Prepares the brick directory: volume id, root gfid, handle directory. Refuses a foreign brick. */
  init(): void {
    const root = this.st.lstat('');
    if (!isDir(root)) throw new Error('brick root is not a directory');
    const want = gfidToBytes(this.cfg.volumeId);
    const have = this.st.getxattr('', this.X.volumeId);
    if (have && !Buffer.from(have).equals(want)) {
      throw new Error(`brick directory belongs to volume ${gfidFromBytes(have)}, not ${this.cfg.volumeId}`);
    }
    const brickIdKey = `${this.cfg.xattrPrefix}dhtfs.brick-id`;
    const id = this.cfg.brickId ?? this.cfg.name;
    const claimed = this.st.getxattr('', brickIdKey);
    if (claimed && Buffer.from(claimed).toString('utf8') !== id) {
      throw new Error(`brick directory is already brick ${Buffer.from(claimed).toString('utf8')} of volume ${this.cfg.volumeId}; refusing to serve it as ${this.cfg.name} (${id})`);
    }
    if (!have) this.st.setxattr('', this.X.volumeId, want);
    if (!claimed) this.st.setxattr('', brickIdKey, Buffer.from(id, 'utf8'));
    const g = this.st.getxattr('', this.X.gfid);
    if (!g) this.st.setxattr('', this.X.gfid, gfidToBytes(ROOT_GFID));
    else if (gfidFromBytes(g) !== ROOT_GFID) throw new Error('brick root has a gfid other than the root gfid');
    this.closeRoot();
    this.ensureDir(HANDLE_DIR, 0o700);
    this.ensureHandleDir(ROOT_GFID);
    try {
      this.st.lstat(handlePath(ROOT_GFID));
    } catch {
      this.st.symlink('../../..', handlePath(ROOT_GFID));
    }
  }

  /**
   * The brick's root directory is 0700, so that no local user of the brick's host reaches anything
   * below it (brick folders mirror the volume's modes: a world-writable one would let a local user swap
   * a folder for a symlink under the brick's feet). The volume root's own mode and owner live in an
   * xattr (`rootAttr`) that the brick shows and changes instead; recorded from the directory the first time.
   */
  private closeRoot(): void {
    if (!this.st.getxattr('', this.X.rootAttr)) {
      const st = this.st.lstat('');
      this.writeRootAttr({ mode: st.mode & 0o7777, uid: st.uid, gid: st.gid });
    }
    if ((this.st.lstat('').mode & 0o7777) !== 0o700) this.st.chmod('', 0o700);
  }

  private rootAttr(): { mode: number; uid: number; gid: number } | null {
    const b = this.st.getxattr('', this.X.rootAttr);
    if (!b || b.length !== 12) return null;
    const v = Buffer.from(b);
    return { mode: v.readUInt32BE(0) & 0o7777, uid: v.readUInt32BE(4), gid: v.readUInt32BE(8) };
  }

  private writeRootAttr(r: { mode: number; uid: number; gid: number }): void {
    const b = Buffer.alloc(12);
    b.writeUInt32BE(r.mode & 0o7777, 0);
    b.writeUInt32BE(r.uid >>> 0, 4);
    b.writeUInt32BE(r.gid >>> 0, 8);
    this.st.setxattr('', this.X.rootAttr, b);
  }

  /** A directory's stat as the volume shows it: the real one, but the root's mode and owner from `rootAttr`. */
  private shown(rel: string, st: Stat): Stat {
    if (rel !== '') return st;
    const r = this.rootAttr();
    return r ? { ...st, mode: S_IFDIR | r.mode, uid: r.uid, gid: r.gid } : st;
  }

  private ensureDir(p: string, mode: number): void {
    try {
      this.st.mkdir(p, mode);
    } catch (e) {
      if (codeOf(e) !== 'EEXIST') throw e;
    }
  }

  private ensureHandleDir(gfid: string): void {
    const top = gfid.slice(0, 2);
    const d = top + '/' + gfid.slice(2, 4);
    if (this.handleDirs.has(d)) return;
    if (!this.handleDirs.has(top)) {
      this.ensureDir(`${HANDLE_DIR}/${top}`, 0o700);
      this.handleDirs.add(top);
    }
    this.ensureDir(`${HANDLE_DIR}/${d}`, 0o700);
    this.handleDirs.add(d);
  }

  // --- sessions ------------------------------------------------------------------------------------

  openSession(info: { remote: string; client: string; admin?: boolean; notify?: (kind: string, payload: unknown) => void }): Session {
    const s: Session = { id: this.nextSession++, remote: info.remote, client: info.client, fds: new Map(), nextFd: 1, notify: info.notify ?? (() => {}), watching: new Set(), admin: info.admin ?? false };
    this.sessions.set(s.id, s);
    return s;
  }

  closeSession(s: Session): void {
    for (const f of s.fds.values()) this.release(f);
    s.fds.clear();
    this.locks.releaseSession(s.id);
    this.mig.sessionClosed(s.id);
    this.watches.drop(s);
    this.sessions.delete(s.id);
  }

  handle(s: Session, op: string, args: Args): unknown {
    const fn = Object.hasOwn(this.ops, op) ? this.ops[op] : undefined;
    if (!fn) throw new FsError('ENOSYS', `unknown operation '${op.slice(0, 40)}'`);
    // Changes of names that other connections watch: the reply waits for their acknowledgements (watch.ts).
    try {
      const r = this.watches.run(s, () => fn(s, args));
      return r instanceof Promise ? r.catch((e: unknown) => this.logRefused(s, op, e)) : r;
    } catch (e) {
      return this.logRefused(s, op, e);
    }
  }

  /** Logs a refusal of something no honest client asks (Refused), naming the client; rethrows. */
  private logRefused(s: Session, op: string, e: unknown): never {
    if (e instanceof Refused) this.log('warn', `refused ${op} from ${s.client.slice(0, 64) || '?'} at ${s.remote}: ${e.message.slice(0, 200)}`, { client: s.client.slice(0, 64), remote: s.remote, op, code: e.code });
    throw e;
  }

  // --- paths and attributes ------------------------------------------------------------------------

  /** Every component above the last must be a real directory: a symlink there could lead outside. */
  private walk(rel: string): void {
    let i = rel.indexOf('/');
    while (i >= 0) {
      const st = this.st.lstat(rel.slice(0, i));
      if (!isDir(st)) throw new FsError(isLnk(st) ? 'ELOOP' : 'ENOTDIR', `${rel.slice(0, i)} is not a directory`);
      i = rel.indexOf('/', i + 1);
    }
  }

  private path(a: Args, k = 'path'): string {
    const rel = relPath(a[k], k);
    this.walk(rel);
    return rel;
  }

  private readGfid(rel: string): string | null {
    const b = this.st.getxattr(rel, this.X.gfid);
    return b && b.length === 16 ? gfidFromBytes(b) : null;
  }

  private readLinkto(rel: string): string | null {
    const b = this.st.getxattr(rel, this.X.linkto);
    if (!b) return null;
    const s = Buffer.from(b).toString('utf8');
    return s.endsWith('\0') ? s.slice(0, -1) : s;
  }

  private attr(rel: string, st: Stat, gfid?: string | null): Attr {
    if (rel !== '' && gfid === ROOT_GFID) rel = ''; // an fd on the root names it by its handle
    st = this.shown(rel, st);
    const a: Attr = {
      gfid: gfid === undefined ? this.readGfid(rel) : gfid,
      ino: st.ino,
      mode: st.mode,
      // A file's handle is a name of its own; the root's .glusterfs is a subdirectory no one sees.
      nlink: isDir(st) ? (rel === '' ? Math.max(2, st.nlink - 1) : st.nlink) : Math.max(0, st.nlink - 1),
      uid: st.uid,
      gid: st.gid,
      size: st.size,
      blocks: st.blocks,
      atime: st.atime,
      mtime: st.mtime,
      ctime: st.ctime,
    };
    if (st.mode === LINKTO_MODE) {
      const l = this.readLinkto(rel);
      if (l !== null) a.linkto = l;
    } else if (isReg(st) && rel !== '') {
      if ((st.mode & (S_ISGID | S_ISVTX)) === (S_ISGID | S_ISVTX)) {
        // GlusterFS's phase 1 of a (legacy) migration: S+T and a linkto xattr naming dst.
        const l = this.readLinkto(rel);
        if (l !== null) a.phase1To = l;
      }
      if (gfid === undefined) {
        const m = this.movedOf(rel, a.gfid);
        if (m) a.moved = m;
        if (a.nlink > 1) {
          const r = this.renameIntentOf(rel);
          if (r) a.renaming = r;
        }
      }
    } else if (isDir(st)) {
      const b = this.st.getxattr(rel, this.X.dht);
      a.layout = null;
      if (b) {
        try {
          a.layout = decodeRanges(b);
        } catch (e) {
          a.layoutErr = (e as Error).message;
        }
      }
    }
    return a;
  }

  private attrOf(rel: string): Attr {
    return this.attr(rel, this.st.lstat(rel));
  }

  private readLayout(rel: string): LayoutRange[] | null {
    const b = this.st.getxattr(rel, this.X.dht);
    if (!b) return null;
    try {
      return decodeRanges(b);
    } catch {
      return null;
    }
  }

  /**
   * Entry operations (and lookups that find nothing) carry the parent's ranges as the client knows them,
   * and lookups the layout's commit hash too; a stale client must refresh.
   */
  private checkParentLayout(rel: string, a: Args): void {
    const want = rangesArg(a, 'parentLayout');
    if (want === undefined) return;
    const have = this.readLayout(parentOf(rel));
    if (!sameRanges(have, want)) throw new FsError(ELAYOUT, `layout of the parent of /${rel} on ${this.cfg.name} has changed`);
    const commit = optInt(a, 'parentCommit', 0, U32);
    if (commit !== undefined && commit !== (have?.[0]?.commit ?? COMMIT_HASH_INVALID)) {
      throw new FsError(ELAYOUT, `commit hash of the parent of /${rel} on ${this.cfg.name} has changed`);
    }
  }

  /** A new name was just made: its gfid, `more`, its handle and owner; if any fails, the name goes again. */
  private adoptNew(rel: string, gfid: string, uid: number | undefined, gid: number | undefined, more?: () => void): void {
    try {
      this.setGfid(rel, gfid);
      more?.();
      this.linkHandle(rel, gfid);
      gid = this.newGid(rel, gid);
      if (uid !== undefined || gid !== undefined) this.st.lchown(rel, uid ?? -1, gid ?? -1);
    } catch (e) {
      try {
        this.st.unlink(rel);
      } catch {
        /* keep the original error */
      }
      throw e;
    }
  }

  /**
   * Runs `fn`, a change of `rel`'s directory's entries that no user made (a migration, a repair, a new
   * brick's copy of a directory): the directory keeps its access and modification times, which the
   * volume shows as its copies' latest (its ctime moves, as it must). A brick runs one such change at a
   * time, so no user's change falls between the reading and the setting.
   */
  private keepingTimes<T>(rel: string, keep: boolean, fn: () => T): T {
    if (!keep) return fn();
    const parent = parentOf(rel);
    const was = this.st.lstat(parent);
    try {
      return fn();
    } finally {
      try {
        this.st.lutimes(parent, was.atime, was.mtime);
      } catch {
        /* the directory went meanwhile: nothing to keep */
      }
    }
  }

  /**
   * The group of a name just made for a caller of group `gid`: the parent's where the parent is
   * set-group-ID, as the kernel gives it (this process made the name as root, so the caller's group
   * is set after).
   */
  private newGid(rel: string, gid: number | undefined): number | undefined {
    const parent = parentOf(rel);
    // The kernel gives a name made without a caller's group its set-group-ID parent's group, but the
    // volume root's bit and group are in rootAttr only.
    if (gid === undefined && parent !== '') return undefined;
    const p = this.shown(parent, this.st.lstat(parent));
    return p.mode & S_ISGID ? p.gid : gid;
  }

  private setGfid(rel: string, gfid: string): void {
    this.st.setxattr(rel, this.X.gfid, gfidToBytes(gfid));
  }

  /**
   * Gives a new name's inode its gfid handle. A gfid is the brick's to keep unique: a handle that is a
   * live inode's (a directory's, or a file's with a name) is never taken over (EEXIST). Only a stale
   * handle, a file's whose last name went, is replaced.
   */
  private linkHandle(rel: string, gfid: string): void {
    this.ensureHandleDir(gfid);
    const hp = handlePath(gfid);
    try {
      this.st.link(rel, hp);
    } catch (e) {
      if (codeOf(e) !== 'EEXIST') throw e;
      if (!this.handleIsStale(gfid)) throw new Refused('EEXIST', `gfid ${gfid} is already in use on ${this.cfg.name}`);
      this.st.unlink(hp);
      this.st.link(rel, hp);
    }
  }

  /**
   * Whether the gfid's handle names no live inode: a file's (or symlink's, FIFO's) handle that is its
   * last link, or a directory's handle that leads to no directory of that gfid. False for a live one.
   */
  private handleIsStale(gfid: string): boolean {
    if (gfid === ROOT_GFID) return false;
    const h = this.st.lstat(handlePath(gfid));
    if (isDir(h)) return false;
    if (h.nlink > 1) return false;
    return !isLnk(h) || this.dirOfHandle(gfid) === null;
  }

  /** A file's gfid handle becomes a link of the inode at `rel` (a migration installed it there). */
  private pointHandleAt(rel: string, gfid: string): void {
    this.ensureHandleDir(gfid);
    try {
      this.st.unlink(handlePath(gfid));
    } catch (e) {
      if (codeOf(e) !== 'ENOENT') throw e;
    }
    this.st.link(rel, handlePath(gfid));
  }

  /** The user xattrs of `pairs` onto `rel` (a migration's copy); the volume's own and other namespaces are skipped. */
  private copyUserXattrs(rel: string, pairs: [string, Uint8Array][]): void {
    for (const [n, v] of pairs) {
      if (!n.startsWith('user.') || this.X.reserved.some((r) => n.startsWith(r))) continue;
      this.st.setxattr(rel, n, v);
    }
  }

  private dirHandleTarget(rel: string): string {
    const parent = parentOf(rel);
    const pg = parent === '' ? ROOT_GFID : this.readGfid(parent);
    if (!pg) throw new FsError('EIO', `parent of /${rel} has no gfid`);
    return `../../${pg.slice(0, 2)}/${pg.slice(2, 4)}/${pg}/${baseOf(rel)}`;
  }

  /** A directory's handle: a symlink to its parent's handle and its name. Refuses a gfid in use by another inode. */
  private setDirHandle(rel: string, gfid: string): void {
    this.ensureHandleDir(gfid);
    const hp = handlePath(gfid);
    try {
      // Its own handle (a rename moves it) or a stale one may be replaced; another live inode's may not.
      const was = this.dirOfHandle(gfid);
      if (was === null && !this.handleIsStale(gfid)) throw new Refused('EEXIST', `gfid ${gfid} is already in use on ${this.cfg.name}`);
      if (was !== null && was !== rel) {
        // The handle leads to a live directory of this gfid elsewhere: only a rename (which moved it to rel) may re-point it.
        let there = false;
        try {
          there = isDir(this.st.lstat(was)) && this.readGfid(was) === gfid;
        } catch (e) {
          if (codeOf(e) !== 'ENOENT') throw e;
        }
        if (there) throw new Refused('EEXIST', `gfid ${gfid} is already in use on ${this.cfg.name}`);
      }
      this.st.unlink(hp);
    } catch (e) {
      if (codeOf(e) !== 'ENOENT') throw e;
    }
    this.st.symlink(this.dirHandleTarget(rel), hp);
  }

  /** After a name of a file went away: drop its handle when the handle is its last link. */
  private dropHandleIfLast(gfid: string | null): void {
    if (!gfid || gfid === ROOT_GFID) return;
    try {
      if (this.handleIsStale(gfid)) this.st.unlink(handlePath(gfid));
    } catch (e) {
      if (codeOf(e) !== 'ENOENT') throw e;
    }
  }

  /**
   * Resolves a gfid to a brick-relative path: the handle for files, the real path for directories. A
   * directory's handle is only trusted once the path it spells out is made of plain names, walks through
   * real directories, and ends at a directory that carries this very gfid: a symlink a client made can
   * never lead anywhere (a user's symlink is also a file's handle, and its text is the user's).
   */
  private resolveGfid(gfid: string): { rel: string; st: Stat } {
    if (gfid === ROOT_GFID) return { rel: '', st: this.st.lstat('') };
    const hp = handlePath(gfid);
    const st = this.st.lstat(hp);
    if (isLnk(st) && st.nlink === 1) {
      const rel = this.dirOfHandle(gfid);
      if (rel === null) throw new Refused('ESTALE', `gfid ${gfid} has a handle that leads to no directory of it on ${this.cfg.name}`);
      return { rel, st: this.st.lstat(rel) };
    }
    return { rel: hp, st };
  }

  /**
   * The directory a gfid's handle leads to, checked (see resolveGfid); null when the handle is no
   * directory's (a file's, a symlink's, a stale one, or a forged one). Never a path outside the brick.
   */
  private dirOfHandle(gfid: string): string | null {
    const names: string[] = [];
    let g = gfid;
    for (let depth = 0; g !== ROOT_GFID; depth++) {
      if (depth > MAX_PATH / 2) return null; // a chain longer than any path: a loop
      let target: string;
      try {
        const h = this.st.lstat(handlePath(g));
        if (!isLnk(h) || h.nlink !== 1) return null;
        target = this.st.readlink(handlePath(g));
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
      this.walk(rel);
      const st = this.st.lstat(rel);
      if (!isDir(st) || this.readGfid(rel) !== gfid) return null;
    } catch (e) {
      if (e instanceof FsError || ['ENOENT', 'ENOTDIR', 'ELOOP', 'EINVAL', 'ENAMETOOLONG', 'EPERM'].includes(codeOf(e))) return null;
      throw e;
    }
    return rel;
  }

  /** The commit record of a file at src, if its commit is in force. */
  /** The rename this file's second name belongs to, while it is not finished (see link). */
  private renameIntentOf(rel: string): Attr['renaming'] | null {
    const b = this.st.getxattr(rel, this.X.rename);
    if (!b) return null;
    try {
      const r = JSON.parse(b.toString()) as { from?: unknown; to?: unknown; replaced?: { brick: string; gfid?: string } };
      return typeof r.from === 'string' && typeof r.to === 'string' ? { from: r.from, to: r.to, ...(r.replaced ? { replaced: r.replaced } : {}) } : null;
    } catch {
      return null;
    }
  }

  /** Forgets the file's unfinished rename (no error if there is none). */
  private clearRenameIntent(gfid: string): void {
    try {
      this.st.removexattr(handlePath(gfid), this.X.rename);
    } catch (e) {
      if (codeOf(e) !== 'ENODATA' && codeOf(e) !== 'ENOENT') throw e;
    }
  }

  private movedOf(rel: string, gfid: string | null): Moved | null {
    const known = this.mig.movedTo(gfid);
    if (known) return known;
    const m = parseMoved(this.st.getxattr(rel, this.X.migration));
    if (!m || !gfid || this.mig.committing(gfid)) return null;
    this.mig.rememberMoved(gfid, m);
    return m;
  }

  private refuseMoved(rel: string, gfid: string | null): void {
    const m = this.movedOf(rel, gfid);
    if (m) throw new FsError(EMOVED, `/${rel} was migrated to ${m.dst}`, { ...m });
  }

  /**
   * Runs a change to a file under the migration rules: refused if the file moved, held while a
   * migration is frozen, and recorded in the migration's dirty record (`range`, or attributes).
   */
  private async change<T>(gfid: string | null, fn: () => Promise<T> | T, range: (r: T) => [number, number] | null): Promise<T> {
    for (;;) {
      const e = this.mig.enter(gfid);
      if (e instanceof Promise) {
        await e;
        continue;
      }
      let r: T;
      try {
        r = await fn();
      } catch (err) {
        e(null);
        throw err;
      }
      e(range(r));
      return r;
    }
  }

  // --- fds -----------------------------------------------------------------------------------------

  /** Per session and brick-wide caps (wire/limits.ts), well below the process's fd limit. */
  private addFd(s: Session, f: OpenFile): number {
    const L = this.limits;
    let total = 0;
    if (s.fds.size < L.maxFdsPerSession) for (const x of this.sessions.values()) total += x.fds.size;
    const hit = s.fds.size >= L.maxFdsPerSession ? 'maxFdsPerSession' : total >= L.maxFds ? 'maxFds' : null;
    if (hit !== null) {
      this.release(f);
      this.limitHit(hit, s, hit === 'maxFds' ? `${total} fds open on the brick (limit ${L.maxFds})` : `${s.fds.size} fds open on the connection (limit ${L.maxFdsPerSession})`);
      throw new FsError('EMFILE', hit === 'maxFds' ? 'too many open files on this brick' : 'too many open files on this connection');
    }
    const fd = s.nextFd++;
    s.fds.set(fd, f);
    if (f.gfid) this.openCount.set(f.gfid, (this.openCount.get(f.gfid) ?? 0) + 1);
    return fd;
  }

  private release(f: OpenFile): void {
    try {
      this.st.close(f.h);
    } catch (e) {
      this.log('warn', `close failed: ${(e as Error).message}`);
    }
    if (f.gfid) {
      const n = (this.openCount.get(f.gfid) ?? 1) - 1;
      if (n <= 0) this.openCount.delete(f.gfid);
      else this.openCount.set(f.gfid, n);
    }
  }

  /** The open file an fd names; EMOVED once its migration committed (but for `closing` it). */
  private fdOf(s: Session, a: Args, closing = false): OpenFile {
    const fd = int(a, 'fd', 0, 2 ** 31);
    const f = s.fds.get(fd);
    if (!f) throw new FsError('EBADF', `fd ${fd} is not open on this connection`);
    if (f.moved && !closing) throw new FsError(EMOVED, 'file was migrated', { ...f.moved });
    return f;
  }

  private fattr(f: OpenFile): Attr {
    const st = this.st.fstat(f.h);
    return this.attr(f.gfid ? handlePath(f.gfid) : '', st, f.gfid);
  }

  openFdCount(gfid: string): number {
    return this.openCount.get(gfid) ?? 0;
  }

  // --- operations ----------------------------------------------------------------------------------

  /**
   * With `parentLayout` (and `parentCommit`), an ENOENT is answered only if the client's view of the
   * parent's layout on this brick is this brick's own: otherwise ELAYOUT, and the client refreshes
   * before it trusts the absence (lookup-optimize's check, in the same step as the lookup).
   */
  lookup(a: Args): Attr {
    const rel = this.path(a);
    try {
      return this.attrOf(rel);
    } catch (e) {
      if (codeOf(e) === 'ENOENT') this.checkParentLayout(rel, a);
      throw e;
    }
  }

  lookupGfid(a: Args): Attr {
    const { rel, st } = this.resolveGfid(gfidArg(a, 'gfid'));
    return this.attr(rel, st);
  }

  rootInfo(): RootInfo {
    const b = this.st.getxattr('', this.X.commit);
    let commitHash: number | null = null;
    if (b) {
      const n = Number(Buffer.from(b).toString('utf8').replace(/\0$/, ''));
      if (Number.isSafeInteger(n) && n >= 0 && n <= U32) commitHash = n;
    }
    return { attr: this.attrOf(''), commitHash, brick: this.cfg.name };
  }

  /** The volume's bricks as last written by the CLI (add-brick, remove-brick); null if never. */
  getTopology(): { topology: unknown } {
    const b = this.st.getxattr('', this.X.topology);
    if (!b) return { topology: null };
    try {
      return { topology: JSON.parse(Buffer.from(b).toString('utf8')) };
    } catch {
      return { topology: null };
    }
  }

  /** Limits hit, logged once per limit per 10 s with the client named. */
  private limitLog?: LimitLog;
  private limitHit(limit: string, s: Session, detail: string): void {
    this.limitLog ??= new LimitLog(this.clock, (msg, extra) => this.log('warn', msg, extra));
    this.limitLog.hit(limit, s, detail);
  }

  /** Changing the volume needs the admin role (a session without it is refused, and logged). Without a session: the brick's own caller. */
  private needAdmin(s: Session | undefined, op: string): void {
    if (!s || s.admin) return;
    this.limitHit('admin', s, `${op} refused: the session has no admin credential`);
    throw new FsError('EPERM', `${op} needs the volume's admin credential`);
  }

  setTopology(a: Args, s?: Session): { topology: unknown } {
    this.needAdmin(s, 'setTopology');
    const t = a.topology;
    if (typeof t !== 'object' || t === null) throw bad('topology', 'must be a map');
    const json = JSON.stringify(t);
    if (json.length > 3500) throw new FsError('E2BIG', 'topology too large for one xattr');
    const cur = this.getTopology().topology as { version?: number } | null;
    const v = (t as { version?: unknown }).version;
    if (!Number.isSafeInteger(v)) throw bad('topology', 'needs a version');
    if (cur && typeof cur.version === 'number' && cur.version > (v as number)) throw new FsError('ESTALE', `topology version ${v as number} is older than ${cur.version}`);
    // Compare-and-set on the version: a writer that started from a stale topology makes the version this
    // brick has already (another change made it first) with other contents; only the same one is taken again.
    if (cur && cur.version === v && JSON.stringify(cur) !== json) throw new FsError('ESTALE', `topology version ${v as number} was made by another change first: read the volume's topology again`);
    this.st.setxattr('', this.X.topology, Buffer.from(json));
    this.applyOptions((t as { options?: unknown }).options);
    // Clients connected now read it at once (new bricks, options set with `volume set`).
    for (const s of this.sessions.values()) s.notify(TOPOLOGY_CHANGED, { version: v });
    return { topology: t };
  }

  statfs(): StatFsReply {
    return this.st.statfs();
  }

  /** With `watch`, the session watches the new directory (watch.ts): it knows the directory is empty. */
  mkdir(a: Args, s?: Session): Attr {
    const rel = this.path(a);
    if (rel === '') throw new FsError('EEXIST', 'the root exists');
    const watch = optBool(a, 'watch');
    const mode = int(a, 'mode', 0, 0o7777);
    const gfid = newGfidArg(a, 'gfid');
    const layout = rangesArg(a, 'layout');
    const uid = optInt(a, 'uid', 0, U32);
    const gid = optInt(a, 'gid', 0, U32);
    const atime = timespec(a, 'atime');
    const mtime = timespec(a, 'mtime');
    this.checkParentLayout(rel, a);
    // keepTimes (a copy made for a brick that lacks it): see keepingTimes.
    this.keepingTimes(rel, optBool(a, 'keepTimes'), () => this.st.mkdir(rel, mode));
    try {
      // mkdir(2) takes no set-group-ID bit from its mode (only from the parent): a copy of a directory
      // made for a new brick must have all of the directory's bits.
      // The volume root's set-group-ID bit is in rootAttr, not on the brick's root: inherited here.
      const inherited = parentOf(rel) === '' ? (this.rootAttr()?.mode ?? 0) & S_ISGID : 0;
      if ((mode | inherited) & S_ISGID) {
        const made = this.st.lstat(rel).mode;
        if (!(made & S_ISGID)) this.st.chmod(rel, (made | mode | inherited) & 0o7777);
      }
      this.setGfid(rel, gfid);
      if (layout) this.st.setxattr(rel, this.X.dht, encodeRanges(layout));
      const g = this.newGid(rel, gid);
      if (uid !== undefined || g !== undefined) this.st.lchown(rel, uid ?? -1, g ?? -1);
      this.setDirHandle(rel, gfid);
      if (atime && mtime) this.st.lutimes(rel, atime, mtime);
    } catch (e) {
      try {
        this.st.rmdir(rel);
      } catch {
        /* the original error matters */
      }
      throw e;
    }
    if (watch && s) this.watches.add(s, rel);
    return this.attr(rel, this.st.lstat(rel), gfid);
  }

  setLayout(a: Args): Attr {
    const rel = this.path(a);
    const layout = rangesArg(a, 'layout');
    if (layout === undefined) throw bad('layout', 'required');
    const st = this.st.lstat(rel);
    if (!isDir(st)) throw new FsError('ENOTDIR', `/${rel} is not a directory`);
    if (layout === null) {
      try {
        this.st.removexattr(rel, this.X.dht);
      } catch (e) {
        if (codeOf(e) !== 'ENODATA') throw e;
      }
    } else this.st.setxattr(rel, this.X.dht, encodeRanges(layout));
    // A new layout may give ranges to a brick the watchers do not watch the directory on (add-brick).
    this.watches.changedIn(rel, true);
    return this.attr(rel, st);
  }

  /** The volume's options that bricks take up (`volume set`): the lock-timeout, and the limits (`limit.*`). */
  applyOptions(o: unknown): void {
    const opts = (o && typeof o === 'object' ? o : {}) as Record<string, unknown>;
    const v = opts.lockTimeout;
    if (typeof v === 'number' && Number.isFinite(v) && v >= 0) this.limits.lockTimeoutMs = Math.round(v * 1000);
    for (const k of LIMIT_OPTION_KEYS) {
      const n = opts[k];
      const want = typeof n === 'number' && Number.isSafeInteger(n) && n >= 0 ? n : this.ownLimits[k];
      if (this.limits[k] !== want) this.log('info', `limit ${k}: ${want}${want === this.ownLimits[k] ? " (the brick's own)" : ' (volume option)'}`);
      this.limits[k] = want;
    }
  }

  /** Takes up the options of the topology stored on this brick (at start). */
  loadOptions(): void {
    const t = this.getTopology().topology as { options?: unknown } | null;
    this.applyOptions(t?.options);
  }

  /** An ordinary session may give a brick its first commit hash (a new volume's first client does), not change it. */
  setCommitHash(a: Args, s?: Session): RootInfo {
    const v = int(a, 'value', 0, U32);
    if (s && !s.admin) {
      const cur = this.rootInfo().commitHash;
      if (cur !== null && cur !== v) this.needAdmin(s, 'setCommitHash');
    }
    this.st.setxattr('', this.X.commit, Buffer.from(`${v}\0`));
    return this.rootInfo();
  }

  create(s: Session, a: Args): { fd: number; attr: Attr } | Promise<{ fd: number; attr: Attr }> {
    const rel = this.path(a);
    if (rel === '') throw new FsError('EEXIST', 'the root exists');
    const mode = int(a, 'mode', 0, 0o7777);
    const flags = int(a, 'flags', 0, U32);
    const gfid = newGfidArg(a, 'gfid');
    const uid = optInt(a, 'uid', 0, U32);
    const gid = optInt(a, 'gid', 0, U32);
    if (a.data !== undefined && a.data !== null && bytes(a, 'data').length > MAX_IO_SIZE) throw new FsError('EINVAL', 'initial data too large');
    optBool(a, 'close');
    this.checkParentLayout(rel, a);
    const acc = flags & O_ACCMODE;
    const oflags = (acc === O_WRONLY || acc === O_RDWR ? acc : O_RDWR) | O_CREAT | O_EXCL | (flags & O_APPEND);
    const h = this.st.open(rel, oflags, mode);
    try {
      this.adoptNew(rel, gfid, uid, gid);
    } catch (e) {
      this.st.close(h);
      throw e;
    }
    const f: OpenFile = { h, gfid, flags: oflags };
    const fd = this.addFd(s, f);
    const data = a.data === undefined || a.data === null ? null : bytes(a, 'data');
    if (data === null) return { fd, attr: this.attr(rel, this.st.fstat(h), gfid) };
    // Compound create: write the initial data and optionally close, in one round trip.
    return this.createWrite(s, fd, f, data, optBool(a, 'close'), rel, gfid);
  }

  private async createWrite(s: Session, fd: number, f: OpenFile, data: Uint8Array, close: boolean, rel: string, gfid: string): Promise<{ fd: number; attr: Attr }> {
    try {
      let off = 0;
      while (off < data.length) {
        const n = await this.st.write(f.h, off, data.subarray(off));
        if (n <= 0) throw new FsError('EIO', 'short write');
        off += n;
      }
      return { fd: close ? -1 : fd, attr: this.attr(rel, this.st.fstat(f.h), gfid) };
    } finally {
      if (close && s.fds.get(fd) === f) {
        s.fds.delete(fd);
        this.release(f);
      }
    }
  }

  mklinkto(a: Args): Attr | Promise<Attr> {
    const rel = this.path(a);
    if (rel === '') throw new FsError('EEXIST', 'the root exists');
    const gfid = newGfidArg(a, 'gfid');
    const target = str(a, 'target');
    if (target.length === 0 || target.length > 255 || target.includes('\0')) throw bad('target', 'must be a brick name');
    const uid = optInt(a, 'uid', 0, U32);
    const gid = optInt(a, 'gid', 0, U32);
    this.checkParentLayout(rel, a);
    // keepTimes (a repair's linkto): see keepingTimes.
    if (!optBool(a, 'replace')) return this.keepingTimes(rel, optBool(a, 'keepTimes'), () => this.makeLinkto(rel, gfid, target, uid, gid));
    return this.replaceWithLinkto(rel, gfid, target, uid, gid);
  }

  private replaceWithLinkto(rel: string, gfid: string, target: string, uid?: number, gid?: number): Attr | Promise<Attr> {
    // Replace whatever file holds the name, atomically: the name never goes missing (rename(2)).
    let replaced: string | null = null;
    try {
      const tst = this.st.lstat(rel);
      if (isDir(tst)) throw new FsError('EISDIR', `/${rel} is a directory`);
      replaced = this.readGfid(rel);
    } catch (e) {
      if (codeOf(e) !== 'ENOENT') throw e;
    }
    const wait = this.mig.whenSettled(replaced);
    if (wait) return wait.then(this.watches.resumed(() => this.replaceWithLinkto(rel, gfid, target, uid, gid)));
    if (replaced === gfid && this.st.lstat(rel).mode === LINKTO_MODE) {
      // This file's linkto already (a client taking up its interrupted rename again): point it at target.
      this.setLinkto(rel, target);
      return this.attr(rel, this.st.lstat(rel), gfid);
    }
    this.ensureDir(RENAME_DIR, 0o700);
    const tmp = `${RENAME_DIR}/${gfid}`;
    try {
      this.st.unlink(tmp); // a leftover of a crash between the two steps
    } catch (e) {
      if (codeOf(e) !== 'ENOENT') throw e;
    }
    this.makeLinkto(tmp, gfid, target, uid, gid);
    if (replaced) this.mig.entryChanged(replaced);
    this.st.rename(tmp, rel);
    try {
      this.st.unlink(tmp); // still there if it and rel were one inode already (rename(2) then does nothing)
    } catch (e) {
      if (codeOf(e) !== 'ENOENT') throw e;
    }
    if (replaced && replaced !== gfid) this.dropHandleIfLast(replaced);
    return this.attr(rel, this.st.lstat(rel), gfid);
  }

  /** The linkto xattr: the target brick's name, NUL-terminated as GlusterFS writes it. */
  private setLinkto(rel: string, target: string): void {
    this.st.setxattr(rel, this.X.linkto, Buffer.from(`${target}\0`));
  }

  private makeLinkto(rel: string, gfid: string, target: string, uid?: number, gid?: number): Attr {
    // A linkto of this file under another name holds the gfid's handle here: another hard link whose name
    // hashes to this brick, or a stale linkto left by an earlier rename (removed when it is next met).
    // This name becomes one more link to that inode, as GlusterFS's posix links a linkto to its gfid.
    try {
      const hp = handlePath(gfid);
      if (this.st.lstat(hp).mode === LINKTO_MODE && this.readLinkto(hp) !== null) {
        this.st.link(hp, rel);
        this.setLinkto(rel, target);
        return this.attr(rel, this.st.lstat(rel), gfid);
      }
    } catch (e) {
      if (codeOf(e) !== 'ENOENT') throw e;
    }
    const h = this.st.open(rel, O_WRONLY | O_CREAT | O_EXCL, S_ISVTX);
    this.st.close(h);
    this.adoptNew(rel, gfid, uid, gid, () => this.setLinkto(rel, target));
    return this.attr(rel, this.st.lstat(rel), gfid);
  }

  open(s: Session, a: Args): { fd: number; attr: Attr } {
    const flags = int(a, 'flags', 0, U32);
    if (flags & (O_CREAT | O_EXCL)) throw new FsError('EINVAL', 'open does not create; use create');
    const g = optGfid(a, 'gfid');
    let rel: string;
    if (g !== undefined) rel = this.resolveGfid(g).rel;
    else rel = this.path(a);
    const gfid0 = g ?? this.readGfid(rel);
    // A client that looked the name up says which file it expects: a rename or migration may have put
    // another file, or a linkto, at the name since.
    const expect = optGfid(a, 'expect');
    if (expect !== undefined && g === undefined && (gfid0 !== expect || this.st.lstat(rel).mode === LINKTO_MODE)) {
      throw new FsError('ESTALE', `/${rel} is not the file looked up any more`);
    }
    // By path or by gfid, the commit record on disk counts (this process may have restarted since).
    this.refuseMoved(rel, gfid0);
    if ((flags & O_TRUNC) && gfid0 && this.mig.isActive(gfid0)) throw new FsError('EBUSY', 'O_TRUNC on a file being migrated: truncate after open');
    // FIFOs, sockets and devices are the kernel's to open (a mount never asks); a brick opens none: an
    // open of a FIFO would wait for a writer (Storage.open adds O_NONBLOCK too, and the type is checked
    // again on the descriptor).
    const was = this.st.lstat(rel);
    // As open(2) with O_NOFOLLOW says; by gfid, no honest client opens a symlink (a forged handle may be one).
    if (isLnk(was)) throw new (g === undefined ? FsError : Refused)('ELOOP', `${g === undefined ? '/' + rel : 'gfid ' + g} is a symlink`);
    if (!isReg(was) && !isDir(was)) throw new Refused('ENXIO', `/${rel} is a special file; a brick opens regular files and directories only`);
    const h = this.st.open(rel, flags & (O_ACCMODE | O_TRUNC | O_APPEND | O_DIRECTORY), 0);
    let st: Stat;
    try {
      st = this.st.fstat(h);
      if (st.ino !== was.ino || (!isReg(st) && !isDir(st))) throw new FsError('ESTALE', `/${rel} changed while it was opened`);
    } catch (e) {
      this.st.close(h);
      throw e;
    }
    // (addFd closes the file itself when it refuses it.)
    const fd = this.addFd(s, { h, gfid: gfid0, flags });
    return { fd, attr: this.attr(rel, st, gfid0) };
  }

  async read(s: Session, a: Args): Promise<{ data: Buffer; attr: Attr }> {
    const offset = int(a, 'offset');
    const length = int(a, 'length', 0, MAX_IO_SIZE);
    const f = this.fdOf(s, a, planted.has('read-ignores-moved'));
    if ((f.flags & O_ACCMODE) === O_WRONLY) throw new FsError('EBADF', 'fd is not open for reading');
    this.mig.checkRead(f.gfid);
    const data = await this.st.read(f.h, offset, length, ioBuffers.take(length));
    this.mig.checkRead(f.gfid);
    return { data, attr: this.fattr(f) };
  }

  async write(s: Session, a: Args): Promise<{ written: number; attr: Attr }> {
    const offset = int(a, 'offset');
    const data = bytes(a, 'data');
    const f = this.fdOf(s, a);
    if (data.length > MAX_IO_SIZE) throw new FsError('EINVAL', `write larger than ${MAX_IO_SIZE} bytes`);
    if ((f.flags & O_ACCMODE) === O_RDONLY) throw new FsError('EBADF', 'fd is not open for writing');
    const append = (f.flags & O_APPEND) !== 0;
    const dropPrivs = optBool(a, 'dropPrivs') && !f.tempRel && f.gfid !== null;
    return this.change(
      f.tempRel ? null : f.gfid,
      async () => {
        if (dropPrivs) this.dropPrivs(f);
        let written = 0;
        while (written < data.length) {
          let n: number;
          try {
            n = await this.st.write(f.h, offset + written, data.subarray(written));
          } catch (e) {
            // As write(2): what was written counts (a full disk after part of it); an error only if nothing was.
            if (written === 0) throw e;
            break;
          }
          if (n <= 0) break;
          written += n;
        }
        return { written, attr: this.fattr(f) };
      },
      (r) => (append ? [r.attr.size - r.written, r.attr.size] : [offset, offset + r.written]),
    );
  }

  /**
   * A write by a caller without CAP_FSETID (`dropPrivs`, from a FUSE mount) drops the set-user-ID bit,
   * and the set-group-ID bit where the group may execute, as the kernel does on a local disk (this
   * process writes as root, whom the rule spares).
   */
  private dropPrivs(f: OpenFile): void {
    const mode = this.st.fstat(f.h).mode & 0o7777;
    let keep = mode & ~S_ISUID;
    if ((mode & (S_ISGID | S_IXGRP)) === (S_ISGID | S_IXGRP)) keep &= ~S_ISGID;
    if (keep !== mode) this.st.chmod(handlePath(f.gfid!), keep);
  }

  async fsync(s: Session, a: Args): Promise<Attr> {
    const f = this.fdOf(s, a);
    this.mig.checkRead(f.gfid);
    // `all`: the whole file system (a migration about to switch, so that the switch's own fsyncs find
    // nothing else to write out); the file alone where the storage cannot.
    if (optBool(a, 'all') && this.st.syncAll) await this.st.syncAll(f.h);
    else await this.st.fsync(f.h, optBool(a, 'datasync'));
    this.mig.checkRead(f.gfid);
    return this.fattr(f);
  }

  ftruncate(s: Session, a: Args): Promise<Attr> {
    const size = int(a, 'size');
    const f = this.fdOf(s, a);
    if ((f.flags & O_ACCMODE) === O_RDONLY) throw new FsError('EBADF', 'fd is not open for writing');
    let old = 0;
    return this.change(
      f.tempRel ? null : f.gfid,
      () => {
        old = this.st.fstat(f.h).size;
        this.st.ftruncate(f.h, size);
        return this.fattr(f);
      },
      () => [Math.min(old, size), Math.max(old, size)],
    );
  }

  fstat(s: Session, a: Args): Attr {
    const f = this.fdOf(s, a);
    this.mig.checkRead(f.gfid);
    return this.fattr(f);
  }

  /**
   * Where a client on this host can read the data file of an open fd itself (local reads, of library
   * handles and of the FUSE mount): the host and this storage's root (null when the storage cannot be shared), the file's handle
   * path under it, the inode the fd reads (a client must open that very inode), and the names of the
   * xattrs that carry the file's gfid and a migration's commit record. A client reading on its own must
   * check, after each read, that the file carries no commit record (docs/MIGRATION.md, "Local reads").
   */
  fdLocal(s: Session, a: Args): FdLocal {
    const f = this.fdOf(s, a);
    if (f.tempRel || !f.gfid) throw new FsError('EINVAL', 'fd is not a file of the volume');
    this.mig.checkRead(f.gfid);
    const st = this.st.fstat(f.h);
    if (!isReg(st)) throw new FsError('EINVAL', 'fd is not a regular file');
    const name = this.st.localName?.() ?? null;
    return { source: name ? { ...name, path: handlePath(f.gfid) } : null, ino: st.ino, gfidXattr: this.X.gfid, recordXattr: this.X.migration, writers: !!this.st.lock };
  }

  /**
   * lseek(2) with SEEK_DATA or SEEK_HOLE. The brick does not track holes (Node has no lseek), so it
   * answers as Linux file systems without hole support do: all of the file is data, the only hole is
   * at its end. Like every fd operation, it is refused on a moved file (F9).
   */
  seek(s: Session, a: Args): { offset: number; attr: Attr } {
    const offset = int(a, 'offset');
    const whence = a.whence;
    if (whence !== 'data' && whence !== 'hole') throw bad('whence', "must be 'data' or 'hole'");
    const f = this.fdOf(s, a);
    this.mig.checkRead(f.gfid);
    const attr = this.fattr(f);
    if (offset >= attr.size) throw new FsError('ENXIO', 'offset is at or past the end of the file');
    return { offset: whence === 'data' ? offset : attr.size, attr };
  }

  closeFd(s: Session, a: Args): Record<string, never> {
    const f = this.fdOf(s, a, true);
    s.fds.delete(a.fd as number);
    this.release(f);
    return {};
  }

  setattr(s: Session, a: Args): Promise<Attr> {
    let rel: string;
    let gfid: string | null;
    if (a.fd !== undefined && a.fd !== null) {
      const f = this.fdOf(s, a);
      if (!f.gfid) throw new FsError('EIO', 'open file has no gfid');
      this.mig.checkRead(f.gfid);
      rel = this.resolveGfid(f.gfid).rel;
      gfid = f.gfid;
    } else {
      rel = this.path(a);
      gfid = this.readGfid(rel);
      this.refuseMoved(rel, gfid);
    }
    const mode = optInt(a, 'mode', 0, 0o7777);
    const uid = optInt(a, 'uid', 0, U32);
    const gid = optInt(a, 'gid', 0, U32);
    const atime = timespec(a, 'atime');
    const mtime = timespec(a, 'mtime');
    const size = optInt(a, 'size');
    // `ctime` alone: the change time moves and nothing else (chown(2) with -1 for both).
    const ctime = optBool(a, 'ctime');
    let old = 0;
    return this.change(
      gfid,
      () => {
        old = this.st.lstat(rel).size;
        return this.applyAttrs(rel, { mode, uid, gid, atime, mtime, size, ctime });
      },
      () => (size === undefined ? null : [Math.min(old, size), Math.max(old, size)]),
    );
  }

  private applyAttrs(rel: string, o: { mode?: number; uid?: number; gid?: number; atime?: Timespec; mtime?: Timespec; size?: number; ctime?: boolean }): Attr {
    const { mode, uid, gid, atime, mtime, size, ctime } = o;
    let st = this.st.lstat(rel);
    if (rel === '' && (mode !== undefined || uid !== undefined || gid !== undefined)) {
      // The volume root's mode and owner are kept in rootAttr (closeRoot); setting it moves ctime too.
      const r = this.rootAttr() ?? { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
      this.writeRootAttr({ mode: mode ?? r.mode, uid: uid ?? r.uid, gid: gid ?? r.gid });
      return this.applyAttrs(rel, { atime, mtime, size });
    }
    if (size !== undefined) {
      if (!isReg(st)) throw new FsError(isDir(st) ? 'EISDIR' : 'EINVAL', 'truncate needs a regular file');
      this.st.truncate(rel, size);
    }
    if (uid !== undefined || gid !== undefined || ctime) this.st.lchown(rel, uid ?? -1, gid ?? -1);
    if (mode !== undefined && !isLnk(st)) this.st.chmod(rel, mode);
    if (atime || mtime) {
      st = this.st.lstat(rel);
      this.st.lutimes(rel, atime ?? st.atime, mtime ?? st.mtime);
    }
    return this.attrOf(rel);
  }

  unlink(a: Args): Attr | Promise<Attr> {
    const rel = this.path(a);
    const wantGfid = optGfid(a, 'gfid');
    const onlyIfLinkto = optBool(a, 'onlyIfLinkto');
    const ifNotOpen = optBool(a, 'ifNotOpen');
    const ifOtherNames = optBool(a, 'ifOtherNames');
    const clearIntent = optBool(a, 'clearIntent');
    const st = this.st.lstat(rel);
    if (isDir(st)) throw new FsError('EISDIR', `/${rel} is a directory`);
    const at = this.attr(rel, st);
    if (ifOtherNames && at.nlink < 2) throw new FsError('EBUSY', `/${rel} is the file's only name`);
    const wait = this.mig.whenSettled(at.gfid);
    if (wait) return wait.then(this.watches.resumed(() => this.unlink(a)));
    if (wantGfid && at.gfid !== wantGfid) throw new FsError('ESTALE', `/${rel} is another file now`);
    if (onlyIfLinkto && at.linkto === undefined) throw new FsError('EBUSY', `/${rel} is not a linkto file`);
    if (ifNotOpen && at.gfid && this.openFdCount(at.gfid) > 0) throw new FsError('EBUSY', `/${rel} is open`);
    // A committed migration's old copy is not the file any more: the client must unlink dst's copy.
    if (at.linkto === undefined) this.refuseMoved(rel, at.gfid);
    this.mig.entryChanged(at.gfid);
    this.keepingTimes(rel, optBool(a, 'keepTimes'), () => this.st.unlink(rel));
    this.dropHandleIfLast(at.gfid);
    if (clearIntent && at.gfid && at.nlink > 1) this.clearRenameIntent(at.gfid);
    return { ...at, nlink: Math.max(0, at.nlink - 1) };
  }

  rmdir(a: Args): Record<string, never> {
    const rel = this.path(a);
    if (rel === '') throw new FsError('EBUSY', 'cannot remove the root');
    const st = this.st.lstat(rel);
    if (!isDir(st)) throw new FsError('ENOTDIR', `/${rel} is not a directory`);
    const gfid = this.readGfid(rel);
    if (optBool(a, 'purgeLinktos')) {
      // Linkto files are DHT's own; when the client has found the directory empty they are stale.
      const entries = this.st.readdir(rel);
      const children = entries.map((e) => ({ e, st: this.st.lstat(`${rel}/${e.name}`) }));
      for (const c of children) {
        const cr = `${rel}/${c.e.name}`;
        const at = this.attr(cr, c.st);
        if (at.linkto === undefined && at.moved === undefined) throw new FsError('ENOTEMPTY', `/${rel} is not empty`);
        if (at.linkto !== undefined && at.gfid && this.openFdCount(at.gfid) > 0) throw new FsError('EBUSY', `${cr} is open`);
      }
      for (const c of children) {
        const cr = `${rel}/${c.e.name}`;
        const g = this.readGfid(cr);
        this.st.unlink(cr);
        this.dropHandleIfLast(g);
      }
    }
    this.st.rmdir(rel);
    if (gfid) {
      try {
        this.st.unlink(handlePath(gfid));
      } catch (e) {
        if (codeOf(e) !== 'ENOENT') throw e;
      }
    }
    return {};
  }

  rename(a: Args): Attr | Promise<Attr> {
    const from = this.path(a, 'from');
    const to = this.path(a, 'to');
    if (from === '' || to === '') throw new FsError('EBUSY', 'cannot rename the root');
    const wantGfid = optGfid(a, 'gfid');
    this.checkParentLayout(to, a);
    const st = this.st.lstat(from);
    const gfid = this.readGfid(from);
    if (wantGfid && gfid !== wantGfid) throw new FsError('ESTALE', `/${from} is another file now`);
    let replaced: string | null = null;
    try {
      const tst = this.st.lstat(to);
      if (tst.ino !== st.ino && !isDir(tst)) replaced = this.readGfid(to);
    } catch (e) {
      if (codeOf(e) !== 'ENOENT') throw e;
    }
    const wait = this.mig.whenSettled(gfid) ?? this.mig.whenSettled(replaced);
    if (wait) return wait.then(this.watches.resumed(() => this.rename(a)));
    if (!isDir(st)) this.refuseMoved(from, gfid);
    this.mig.entryChanged(gfid);
    if (replaced) this.mig.entryChanged(replaced);
    this.st.rename(from, to);
    if (replaced && replaced !== gfid) this.dropHandleIfLast(replaced);
    if (isDir(st) && gfid) this.setDirHandle(to, gfid);
    return this.attr(to, this.st.lstat(to), gfid);
  }

  link(a: Args): Attr | Promise<Attr> {
    const from = this.path(a, 'from');
    const to = this.path(a, 'to');
    const wantGfid = optGfid(a, 'gfid');
    this.checkParentLayout(to, a);
    const st = this.st.lstat(from);
    if (isDir(st)) throw new FsError('EPERM', 'hard links to directories are not allowed');
    const gfid = this.readGfid(from);
    if (wantGfid && gfid !== wantGfid) throw new FsError('ESTALE', `/${from} is another file now`);
    const wait = this.mig.whenSettled(gfid);
    if (wait) return wait.then(this.watches.resumed(() => this.link(a)));
    this.refuseMoved(from, gfid);
    this.mig.entryChanged(gfid); // a file with two names is not migrated
    if (wantGfid) {
      // Made already (a client taking up its interrupted rename again): nothing to do.
      try {
        if (this.readGfid(to) === wantGfid) return this.attrOf(to);
      } catch (e) {
        if (codeOf(e) !== 'ENOENT') throw e;
      }
    }
    this.st.link(from, to);
    if (optBool(a, 'intent')) {
      // A rename's second name (DhtClient.rename): the file says which rename it belongs to until the
      // renamer (or whoever meets the file first, should the renamer be cut off) finishes or undoes it.
      try {
        const rep = a.replaced as { brick?: unknown; gfid?: unknown } | undefined;
        const replaced = rep && typeof rep.brick === 'string' && rep.brick.length <= 255 ? { brick: rep.brick, ...(typeof rep.gfid === 'string' && isGfid(rep.gfid) ? { gfid: rep.gfid } : {}) } : undefined;
        this.st.setxattr(to, this.X.rename, Buffer.from(JSON.stringify({ from: '/' + from, to: '/' + to, ...(replaced ? { replaced } : {}) })));
      } catch (e) {
        this.st.unlink(to);
        throw e;
      }
    }
    return this.attrOf(to);
  }

  /** The file's unfinished rename is settled (DhtClient.settleRename): it forgets it. */
  renameSettled(a: Args): Record<string, never> {
    const gfid = gfidArg(a, 'gfid');
    this.clearRenameIntent(gfid);
    return {};
  }

  symlink(a: Args): Attr {
    const rel = this.path(a);
    const target = symlinkTarget(a);
    return this.makeName(rel, a, () => this.st.symlink(target, rel));
  }

  /** A name with no data of its own (a symlink, a FIFO, a socket): `make` makes it, then its gfid and owner. */
  private makeName(rel: string, a: Args, make: () => void): Attr {
    const gfid = newGfidArg(a, 'gfid');
    const uid = optInt(a, 'uid', 0, U32);
    const gid = optInt(a, 'gid', 0, U32);
    this.checkParentLayout(rel, a);
    make();
    this.adoptNew(rel, gfid, uid, gid);
    return this.attr(rel, this.st.lstat(rel), gfid);
  }

  /** A FIFO or a socket (`mode`: type and permission bits); no device nodes. */
  mknod(a: Args): Attr {
    const rel = this.path(a);
    const mode = int(a, 'mode', 0, 0o177777);
    const type = mode & S_IFMT;
    if (type !== S_IFIFO && type !== S_IFSOCK) throw new FsError('EPERM', 'mknod makes FIFOs and sockets only');
    const mknod = this.st.mknod?.bind(this.st);
    if (!mknod) throw new FsError('EPERM', `${this.cfg.name} cannot make special files`);
    return this.makeName(rel, a, () => mknod(rel, mode));
  }

  readlink(a: Args): { target: string; attr: Attr } {
    const rel = this.path(a);
    const st = this.st.lstat(rel);
    if (!isLnk(st)) throw new FsError('EINVAL', `/${rel} is not a symlink`);
    return { target: this.st.readlink(rel), attr: this.attr(rel, st) };
  }

  readdir(a: Args): { entries: DirEntryAttr[]; eof: boolean; attr: Attr } {
    const rel = this.path(a);
    const offset = optInt(a, 'offset') ?? 0;
    const limit = optInt(a, 'limit', 1, 100_000) ?? 1000;
    const dst = this.st.lstat(rel);
    if (!isDir(dst)) throw new FsError('ENOTDIR', `/${rel} is not a directory`);
    let names = this.st.readdir(rel).map((e) => e.name);
    if (rel === '') names = names.filter((n) => n !== HANDLE_DIR);
    names.sort();
    const page = names.slice(offset, offset + limit);
    const entries: DirEntryAttr[] = [];
    for (const name of page) {
      const cr = rel === '' ? name : `${rel}/${name}`;
      try {
        entries.push({ name, attr: this.attrOf(cr) });
      } catch (e) {
        if (codeOf(e) !== 'ENOENT') throw e;
      }
    }
    return { entries, eof: offset + limit >= names.length, attr: this.attr(rel, dst) };
  }

  private userXattr(a: Args): string {
    const name = str(a, 'name');
    if (name.length === 0 || name.length > 255) throw bad('name', 'must be 1..255 bytes');
    if (!name.startsWith('user.') || this.X.reserved.some((r) => name.startsWith(r))) {
      throw new FsError('EPERM', `xattr ${name} is not in the user namespace or is reserved`);
    }
    return name;
  }

  getxattr(a: Args): { value: Buffer } {
    const rel = this.path(a);
    const name = this.userXattr(a);
    this.refuseMoved(rel, this.readGfid(rel));
    const v = this.st.getxattr(rel, name);
    if (v === null) {
      this.st.lstat(rel);
      throw new FsError('ENODATA', `no xattr ${name}`);
    }
    return { value: v };
  }

  setxattr(a: Args): Promise<Attr> {
    const rel = this.path(a);
    const gfid = this.readGfid(rel);
    this.refuseMoved(rel, gfid);
    return this.change(gfid, () => this.setxattrNow(rel, a), () => null);
  }

  private setxattrNow(rel: string, a: Args): Attr {
    const name = this.userXattr(a);
    const value = bytes(a, 'value');
    if (value.length > MAX_XATTR_VALUE) throw new FsError('E2BIG', `xattr value larger than ${MAX_XATTR_VALUE} bytes`);
    const create = optBool(a, 'create');
    const replace = optBool(a, 'replace');
    if (create || replace) {
      const exists = this.st.getxattr(rel, name) !== null;
      if (create && exists) throw new FsError('EEXIST', `xattr ${name} exists`);
      if (replace && !exists) throw new FsError('ENODATA', `no xattr ${name}`);
    }
    this.st.setxattr(rel, name, value);
    return this.attrOf(rel);
  }

  listxattr(a: Args): { names: string[] } {
    const rel = this.path(a);
    this.refuseMoved(rel, this.readGfid(rel));
    const names = this.st.listxattr(rel).filter((n) => n.startsWith('user.') && !this.X.reserved.some((r) => n.startsWith(r)));
    return { names };
  }

  removexattr(a: Args): Promise<Attr> {
    const rel = this.path(a);
    const name = this.userXattr(a);
    const gfid = this.readGfid(rel);
    this.refuseMoved(rel, gfid);
    return this.change(
      gfid,
      () => {
        this.st.removexattr(rel, name);
        return this.attrOf(rel);
      },
      () => null,
    );
  }


  // --- migration (docs/MIGRATION.md): this brick as src ------------------------------------------------

  /**
   * step `lease`: a lease with a token on a regular file, tied to this connection. Where clients may
   * write the file themselves (local writes), src first closes the file's gate and takes its writers'
   * lock, both held until the commit or the abort: no local write is then in flight or can begin, and
   * every change goes through this brick, which tracks it (docs/MIGRATION.md, "Local writes").
   */
  async migLease(s: Session, a: Args): Promise<{ token: string; attr: Attr }> {
    const rel = this.path(a);
    const gfid = gfidArg(a, 'gfid');
    const dst = str(a, 'dst');
    const leaseMs = int(a, 'leaseMs', 1, MAX_LEASE_MS);
    const links = this.linksArg(a);
    const check = (locked: boolean): Attr => {
      const st = this.st.lstat(rel);
      const at = this.attr(rel, st);
      if (!isReg(st) || at.linkto !== undefined) throw new FsError('EINVAL', `/${rel} is not a data file`);
      if (at.gfid !== gfid) throw new FsError('ESTALE', `/${rel} is another file now`);
      if (at.moved) throw new FsError(EMOVED, `/${rel} was migrated already`, { ...at.moved });
      // A file with several names migrates only with all of them named (migInstall gives each its place).
      if (at.nlink > 1 && !(links && links.length === at.nlink && links.includes(rel) && links.every((l) => this.st.lstat(l).ino === st.ino))) {
        throw new FsError('EMLINK', `/${rel} has ${at.nlink} names; they migrate only all named together`);
      }
      if (this.mig.isActive(gfid) || (!locked && this.writerLocks.has(gfid))) throw new FsError('EBUSY', `file ${gfid} is being migrated`);
      // The migrator's connection closed while local writes drained: no one would use the lease.
      if (!this.sessions.has(s.id)) throw new FsError('ENOTCONN', 'the migrator is gone');
      return at;
    };
    check(false);
    if (this.st.lock && !planted.has('lease-ignores-local-writers')) {
      this.writerLocks.set(gfid, this.st.open(handlePath(gfid), O_RDWR, 0));
      try {
        await this.lockOut(this.writerLocks.get(gfid)!);
      } catch (e) {
        this.unlockWriters(gfid);
        throw e;
      }
    }
    try {
      const at = check(true); // the file may have changed while local writes drained
      return { token: this.mig.lease(gfid, s.id, dst, '/' + rel, leaseMs), attr: at };
    } catch (e) {
      this.unlockWriters(gfid);
      throw e;
    }
  }

  /** Migrations' holds on files' gate and writers' lock (the handle each is taken through), by gfid. */
  private writerLocks = new Map<string, number>();

  /** Closes the gate, then waits for local writes in flight to end and takes the writers' lock. */
  private async lockOut(h: number): Promise<void> {
    const lock = this.st.lock!.bind(this.st);
    const deadline = this.clock.now() + LOCAL_WRITERS_WAIT_MS;
    for (const byte of [LOCK_GATE, LOCK_WRITERS]) {
      while (!lock(h, byte, 'exclusive')) {
        if (this.clock.now() >= deadline) throw new FsError('EBUSY', 'local writes of the file did not end');
        await this.clock.sleep(1);
      }
    }
  }

  /** A migration of the file ended (commit or abort), or never began: local writes may go on. */
  private unlockWriters(gfid: string): void {
    const h = this.writerLocks.get(gfid);
    if (h === undefined) return;
    this.writerLocks.delete(gfid);
    try {
      // Closing the description drops both locks: the writers' one first would be no safer.
      this.st.close(h);
    } catch (e) {
      this.log('warn', `close failed: ${(e as Error).message}`);
    }
  }

  migRenew(a: Args): Record<string, never> {
    this.mig.renew(gfidArg(a, 'gfid'), str(a, 'token'), int(a, 'leaseMs', 1, MAX_LEASE_MS));
    return {};
  }

  /**
   * Where a brick on this host can read the file under migration directly (migPull), so that its bytes
   * need not cross the network twice through the migrator; null when this storage cannot be shared.
   */
  migSource(a: Args): { source: (LocalName & { path: string }) | null } {
    const gfid = gfidArg(a, 'gfid');
    this.mig.holds(gfid, str(a, 'token'));
    const name = this.st.localName?.() ?? null;
    return { source: name ? { ...name, path: handlePath(gfid) } : null };
  }

  /** step `recopy`: the ranges changed since the last call. */
  migDirty(a: Args): DirtyRecord & { size: number } {
    const gfid = gfidArg(a, 'gfid');
    const rec = this.mig.takeDirty(gfid, str(a, 'token'));
    return { ...rec, size: this.st.lstat(handlePath(gfid)).size };
  }

  /**
   * step `copy`: the data segments of the file under migration from `offset` on (SEEK_DATA/SEEK_HOLE),
   * so that the copy skips its holes (GlusterFS since its bug 915554). At most `max` segments; `next` is
   * where to ask again (null: no more). What clients write meanwhile, holes included, is in the dirty
   * record as always.
   */
  migSegments(a: Args): { segments: [number, number][]; next: number | null } {
    const gfid = gfidArg(a, 'gfid');
    this.mig.holds(gfid, str(a, 'token'));
    const from = int(a, 'offset');
    const max = optInt(a, 'max', 1, 65536) ?? 4096;
    const hp = handlePath(gfid);
    const size = this.st.lstat(hp).size;
    const seek = this.st.seekData?.bind(this.st);
    if (!seek) return { segments: from < size ? [[from, size]] : [], next: null };
    const h = this.st.open(hp, O_RDONLY, 0);
    try {
      const segments: [number, number][] = [];
      let pos = from;
      while (pos < size && segments.length < max) {
        const d = seek(h, pos, false);
        if (d < 0 || d >= size) break;
        let e = seek(h, d, true);
        if (e < 0 || e > size) e = size;
        segments.push([d, e]);
        pos = e;
      }
      return { segments, next: pos < size && segments.length >= max ? pos : null };
    } finally {
      this.st.close(h);
    }
  }

  /** step `freeze`: changes are held from now on; the last ranges and the attributes to copy. */
  async migFreeze(a: Args): Promise<{ dirty: DirtyRecord; attr: Attr; xattrs: [string, Buffer][] }> {
    const gfid = gfidArg(a, 'gfid');
    const dirty = await this.mig.freeze(gfid, str(a, 'token'));
    const hp = handlePath(gfid);
    const attr = this.attr(hp, this.st.lstat(hp), gfid);
    const xattrs: [string, Buffer][] = [];
    for (const n of this.st.listxattr(hp)) {
      if (!n.startsWith('user.') || this.X.reserved.some((r) => n.startsWith(r))) continue;
      const v = this.st.getxattr(hp, n);
      if (v) xattrs.push([n, v]);
    }
    return { dirty, attr, xattrs };
  }

  /** step `commit`: under the lease and frozen, the durable record "moved to dst". */
  async migCommit(a: Args): Promise<{ moved: Moved }> {
    const gfid = gfidArg(a, 'gfid');
    const token = str(a, 'token');
    const rec = this.mig.beginCommit(gfid, token);
    const hp = handlePath(gfid);
    try {
      this.st.setxattr(hp, this.X.migration, formatMoved(rec));
      const h = this.st.open(hp, O_RDONLY, 0);
      try {
        await this.st.fsync(h, false);
      } finally {
        this.st.close(h);
      }
    } catch (e) {
      this.mig.failCommit(gfid);
      try {
        this.st.removexattr(hp, this.X.migration);
      } catch {
        /* the original error matters */
      }
      throw e;
    }
    return { moved: this.mig.endCommit(gfid, token) };
  }

  migAbort(a: Args): Record<string, never> {
    this.mig.abort(gfidArg(a, 'gfid'), str(a, 'token'), 'migrator gave up');
    return {};
  }

  /** step `cleanup`: remove src's data file of a committed migration. */
  migCleanup(a: Args): Record<string, never> {
    const rel = this.path(a);
    const gfid = gfidArg(a, 'gfid');
    const st = this.st.lstat(rel);
    const at = this.attr(rel, st);
    if (at.gfid !== gfid) throw new FsError('ESTALE', `/${rel} is another file now`);
    if (!at.moved) throw new FsError('EINVAL', `/${rel} has not been migrated`);
    this.keepingTimes(rel, true, () => this.st.unlink(rel));
    this.dropHandleIfLast(gfid);
    // The fds still open on the old copy keep saying EMOVED; the gfid itself is free here again (the
    // file may migrate back to this brick one day).
    for (const s of this.sessions.values()) for (const f of s.fds.values()) if (f.gfid === gfid && !f.tempRel) f.moved = at.moved;
    this.mig.forgetMoved(gfid);
    return {};
  }

  /**
   * Removes migration copies that no migration will install: not open here, and older than `olderThanMs`.
   * The rebalancer calls it after a complete run (which installed every committed copy it met).
   */
  migSweep(a: Args): { removed: number } {
    const olderThan = int(a, 'olderThanMs');
    let names: string[];
    try {
      names = this.st.readdir(MIGRATE_DIR).map((e) => e.name);
    } catch (e) {
      if (codeOf(e) === 'ENOENT') return { removed: 0 };
      throw e;
    }
    const open = new Set<string>();
    for (const s of this.sessions.values()) for (const f of s.fds.values()) if (f.tempRel) open.add(f.tempRel);
    let removed = 0;
    const now = this.clock.wallNow();
    for (const n of names) {
      const rel = `${MIGRATE_DIR}/${n}`;
      if (open.has(rel)) continue;
      const st = this.st.lstat(rel);
      if (now - (st.ctime[0] * 1000 + st.ctime[1] / 1e6) < olderThan) continue; // ctime: the last change
      this.st.unlink(rel);
      removed++;
    }
    return { removed };
  }

  /**
   * The legacy (GlusterFS) protocol's xattr steps: set the linkto xattr on a data file (phase 1 on src)
   * or remove it (dst-remove-linkto on dst). `target` null removes it.
   */
  legacySetLinkto(a: Args): Attr {
    const rel = this.path(a);
    const st = this.st.lstat(rel);
    if (!isReg(st)) throw new FsError('EINVAL', `/${rel} is not a regular file`);
    if (a.target === null) {
      try {
        this.st.removexattr(rel, this.X.linkto);
      } catch (e) {
        if (codeOf(e) !== 'ENODATA') throw e;
      }
    } else {
      const target = str(a, 'target');
      if (target.length === 0 || target.length > 255 || target.includes('\0')) throw bad('target', 'must be a brick name');
      this.setLinkto(rel, target);
    }
    return this.attrOf(rel);
  }

  // --- migration: this brick as dst --------------------------------------------------------------------

  /**
   * Copies a range of the file under migration into this migration copy straight from src's disk, when
   * src is a brick of this volume on this host (migSource named its file): the bytes cross neither the
   * network nor the migrator. Anything else is refused (EXDEV) and the migrator copies through itself.
   * What src's clients change meanwhile is tracked by src and copied again, as with any copy.
   */
  async migPull(s: Session, a: Args): Promise<{ copied: number }> {
    const f = this.fdOf(s, a);
    if (!f.tempRel || !f.gfid) throw new FsError('EBADF', 'fd is not a migration copy');
    const offset = int(a, 'offset');
    const length = int(a, 'length', 0, MAX_IO_SIZE);
    const src = a.source as Record<string, unknown> | null;
    if (!src || typeof src !== 'object') throw bad('source', 'must be an object');
    const name = { host: str(src, 'host'), root: str(src, 'root') };
    if (str(src, 'path') !== handlePath(f.gfid)) throw bad('source', 'is not the file of this copy');
    const peer = this.st.peer?.(name) ?? null;
    if (!peer) throw new FsError('EXDEV', 'the source is not on this host');
    // Only a brick of this very volume: its root carries this volume's id.
    const theirs = (() => {
      try {
        return peer.getxattr('', this.X.volumeId);
      } catch {
        return null;
      }
    })();
    const ours = this.st.getxattr('', this.X.volumeId);
    if (!theirs || !ours || !Buffer.from(theirs).equals(Buffer.from(ours))) throw new FsError('EXDEV', 'the source is not a brick of this volume');
    const h = peer.open(str(src, 'path'), O_RDONLY, 0);
    try {
      // In the kernel where the storage can (copy_file_range); through memory otherwise.
      const inKernel = this.st.copyRange
        ? await this.st.copyRange(peer, h, f.h, offset, length).catch((e) => {
            if (['EXDEV', 'EINVAL', 'EOPNOTSUPP', 'ENOSYS'].includes(codeOf(e))) return null;
            throw e;
          })
        : null;
      return { copied: inKernel ?? (await this.copyThroughMemory(peer, h, f.h, offset, length)) };
    } finally {
      peer.close(h);
    }
  }

  private async copyThroughMemory(peer: Storage, from: number, h: number, offset: number, length: number): Promise<number> {
    const buf = ioBuffers.take(length);
    try {
      const data = await peer.read(from, offset, length, buf);
      let written = 0;
      while (written < data.length) {
        const n = await this.st.write(h, offset + written, data.subarray(written));
        if (n <= 0) throw new FsError('EIO', 'short write to the migration copy');
        written += n;
      }
      return data.length;
    } finally {
      ioBuffers.give(buf);
    }
  }

  private tempPath(gfid: string, token: string): string {
    if (!/^[0-9a-f]{1,32}$/.test(token)) throw bad('token', 'must be hex');
    return `${MIGRATE_DIR}/${gfid}.${token}`;
  }

  /** step `prepare-dst`: a linkto to src at the name if there is nothing, and a private copy to fill. */
  async migPrepare(s: Session, a: Args): Promise<{ fd: number }> {
    const rel = this.path(a);
    const gfid = newGfidArg(a, 'gfid');
    const src = str(a, 'src');
    const tmp = this.tempPath(gfid, str(a, 'token'));
    const uid = optInt(a, 'uid', 0, U32);
    const gid = optInt(a, 'gid', 0, U32);
    let cur: Attr | null = null;
    try {
      cur = this.attrOf(rel);
    } catch (e) {
      if (codeOf(e) !== 'ENOENT') throw e;
    }
    if (!cur) this.makeLinkto(rel, gfid, src, uid, gid);
    else if (cur.linkto === undefined || cur.gfid !== gfid) throw new FsError('EEXIST', `/${rel} on ${this.cfg.name} is not a linkto of this file`);
    else if (cur.linkto !== src) this.setLinkto(rel, src);
    this.ensureDir(MIGRATE_DIR, 0o700);
    const links = this.linksArg(a);
    const h = this.st.open(tmp, O_RDWR | O_CREAT | O_TRUNC, 0o600);
    try {
      this.setGfid(tmp, gfid);
      // The file's other names, for migInstall (whoever installs: the record on src names only one).
      if (links) this.st.setxattr(tmp, this.X.links, Buffer.from(JSON.stringify(links.filter((l) => l !== rel))));
    } catch (e) {
      this.st.close(h);
      throw e;
    }
    const fd = this.addFd(s, { h, gfid, flags: O_RDWR, tempRel: tmp });
    await this.fsyncDir(MIGRATE_DIR); // the copy's name is durable before any commit can rely on it
    return { fd };
  }

  /** step `final-copy`: size, attributes and xattrs of the copy, then make it durable. */
  async migFinalize(s: Session, a: Args): Promise<Attr> {
    const f = this.fdOf(s, a);
    if (!f.tempRel) throw new FsError('EINVAL', 'fd is not a migration copy');
    const size = int(a, 'size');
    const mode = int(a, 'mode', 0, 0o7777);
    const uid = int(a, 'uid', 0, U32);
    const gid = int(a, 'gid', 0, U32);
    const atime = timespec(a, 'atime');
    const mtime = timespec(a, 'mtime');
    const xattrs = xattrPairs(a, 'xattrs');
    this.st.ftruncate(f.h, size);
    this.st.lchown(f.tempRel, uid, gid);
    this.st.chmod(f.tempRel, mode);
    this.copyUserXattrs(f.tempRel, xattrs);
    if (atime && mtime) this.st.lutimes(f.tempRel, atime, mtime);
    await this.st.fsync(f.h, false);
    return this.attr(f.tempRel, this.st.fstat(f.h), f.gfid);
  }

  private async fsyncDir(rel: string): Promise<void> {
    const h = this.st.open(rel, O_RDONLY | O_DIRECTORY, 0);
    try {
      await this.st.fsync(h, false);
    } finally {
      this.st.close(h);
    }
  }

  /**
   * step `install`: the committed copy replaces the linkto at the name. Idempotent. `durable` (the
   * migrator, before it removes src's commit record) makes the rename durable; a client that follows a
   * move does not need to wait for that: src's record still says where the copy is.
   */
  async migInstall(a: Args): Promise<Attr> {
    const rel = this.path(a);
    const gfid = gfidArg(a, 'gfid');
    const tmp = this.tempPath(gfid, str(a, 'token'));
    const durable = optBool(a, 'durable');
    let cur: Attr | null = null;
    try {
      cur = this.attrOf(rel);
    } catch (e) {
      if (codeOf(e) !== 'ENOENT') throw e;
    }
    let hasTemp = true;
    try {
      this.st.lstat(tmp);
    } catch (e) {
      if (codeOf(e) !== 'ENOENT') throw e;
      hasTemp = false;
    }
    if (cur && cur.linkto === undefined) {
      // Installed already (by another client, or an earlier try); if the name is another file's now and
      // the copy is gone, it was installed and then renamed or unlinked (ENOENT says so).
      if (cur.gfid !== gfid) throw new FsError(hasTemp ? 'EEXIST' : 'ENOENT', `/${rel} on ${this.cfg.name} is another file`);
      const dirs = this.installLinks(rel, gfid); // a brick that died part way through them
      if (durable) for (const d of new Set([parentOf(rel), ...dirs])) await this.fsyncDir(d);
      return dirs.length > 0 ? this.attrOf(rel) : cur;
    }
    if (!hasTemp) throw new FsError('ENOENT', `no migration copy ${tmp} on ${this.cfg.name}`);
    if (cur && cur.gfid !== gfid) throw new FsError('EEXIST', `/${rel} on ${this.cfg.name} is a linkto of another file`);
    this.keepingTimes(rel, true, () => this.st.rename(tmp, rel));
    this.pointHandleAt(rel, gfid); // it named the linkto's inode
    const dirs = this.installLinks(rel, gfid);
    if (durable) for (const d of new Set([parentOf(rel), ...dirs])) await this.fsyncDir(d);
    return this.attrOf(rel);
  }

  /** Whether the gfid's handle is a link of this very inode. */
  private handleOf(gfid: string, st: Stat): boolean {
    try {
      return this.st.lstat(handlePath(gfid)).ino === st.ino;
    } catch {
      return false;
    }
  }

  /** The file's names for migLease and migPrepare (a file with several names), or undefined. */
  private linksArg(a: Args): string[] | undefined {
    if (a.links === undefined || a.links === null) return undefined;
    if (!Array.isArray(a.links) || a.links.length === 0 || a.links.length > 1000) throw bad('links', 'must be 1..1000 paths');
    return a.links.map((l) => relPath(l, 'links'));
  }

  /**
   * The installed copy's other names (a file with several names: migPrepare kept them on the copy): each
   * becomes a link of the data where it is free or holds a linkto of this file, in this one brick call,
   * so that no client of this brick sees the data under one name and a linkto under another. A name that
   * holds another file now (or whose directory is gone) is left. Idempotent: the list goes last. Returns
   * the directories changed.
   */
  private installLinks(rel: string, gfid: string): string[] {
    const v = this.st.getxattr(rel, this.X.links);
    if (!v) return [];
    let names: string[] = [];
    try {
      names = (JSON.parse(Buffer.from(v).toString()) as unknown[]).map((l) => relPath(`/${String(l)}`, 'links'));
    } catch (e) {
      this.log('error', `/${rel}: unreadable list of the file's other names: ${(e as Error).message}`);
      throw new FsError('EIO', `/${rel}: unreadable list of the file's other names`);
    }
    const dirs: string[] = [];
    for (const name of names) {
      let cur: Attr | null = null;
      try {
        cur = this.attrOf(name);
      } catch (e) {
        if (codeOf(e) !== 'ENOENT') throw e;
      }
      if (cur && (cur.gfid !== gfid || cur.linkto === undefined)) continue; // another file, or done
      const tmp = `${MIGRATE_DIR}/${gfid}.link`;
      try {
        this.st.unlink(tmp);
      } catch (e) {
        if (codeOf(e) !== 'ENOENT') throw e;
      }
      try {
        this.st.link(rel, tmp);
        this.keepingTimes(name, true, () => this.st.rename(tmp, name));
        dirs.push(parentOf(name));
      } catch (e) {
        if (codeOf(e) !== 'ENOENT') throw e; // the name's directory is gone
        try {
          this.st.unlink(tmp);
        } catch {
          /* not made */
        }
      }
    }
    this.st.removexattr(rel, this.X.links);
    return dirs;
  }

  /**
   * A name with no data of its own (a symlink, a FIFO, a socket) moved to this brick, its hashed one, as
   * GlusterFS's migrate_special_files does: made under a private name with the file's gfid, owner, mode,
   * times and user xattrs, then renamed onto the name, which must be free or hold a linkto of this file
   * (rename(2): once there, the name never goes missing). The name's directory keeps its times (no user
   * made the name). The same file at the name already (a retry) gets the attributes given again.
   */
  migSpecial(a: Args): Attr {
    const rel = this.path(a);
    if (rel === '') throw new FsError('EEXIST', 'the root exists');
    const gfid = newGfidArg(a, 'gfid');
    const mode = int(a, 'mode', 0, 0o177777);
    const type = mode & S_IFMT;
    if (type !== S_IFLNK && type !== S_IFIFO && type !== S_IFSOCK) throw bad('mode', 'must be a symlink, FIFO or socket');
    const uid = int(a, 'uid', 0, U32);
    const gid = int(a, 'gid', 0, U32);
    const atime = timespec(a, 'atime');
    const mtime = timespec(a, 'mtime');
    const xattrs = a.xattrs === undefined || a.xattrs === null ? [] : xattrPairs(a, 'xattrs');
    const target = type === S_IFLNK ? symlinkTarget(a) : '';
    const apply = (p: string) => {
      this.st.lchown(p, uid, gid);
      if (type !== S_IFLNK) this.st.chmod(p, mode & 0o7777);
      this.copyUserXattrs(p, xattrs);
      if (atime && mtime) this.st.lutimes(p, atime, mtime); // last: the others move no time but ctime
    };
    let cur: Attr | null = null;
    try {
      cur = this.attrOf(rel);
    } catch (e) {
      if (codeOf(e) !== 'ENOENT') throw e;
    }
    const links = this.linksArg(a);
    if (cur && cur.gfid === gfid && cur.linkto === undefined && (cur.mode & S_IFMT) === type) {
      apply(rel);
      this.installLinks(rel, gfid);
      return this.attrOf(rel);
    }
    if (cur && (cur.linkto === undefined || cur.gfid !== gfid)) throw new FsError('EEXIST', `/${rel} on ${this.cfg.name} is another file`);
    this.ensureDir(MIGRATE_DIR, 0o700);
    const tmp = `${MIGRATE_DIR}/${gfid}.special`;
    try {
      this.st.unlink(tmp); // a leftover of a crash
    } catch (e) {
      if (codeOf(e) !== 'ENOENT') throw e;
    }
    if (type === S_IFLNK) this.st.symlink(target, tmp);
    else {
      const mknod = this.st.mknod?.bind(this.st);
      if (!mknod) throw new FsError('EPERM', `${this.cfg.name} cannot make special files`);
      mknod(tmp, mode);
    }
    try {
      this.setGfid(tmp, gfid);
      // A name of several: the others get their places once this one is in place (installLinks).
      if (links) this.st.setxattr(tmp, this.X.links, Buffer.from(JSON.stringify(links.filter((l) => l !== rel))));
      apply(tmp);
      this.keepingTimes(rel, true, () => this.st.rename(tmp, rel));
    } catch (e) {
      try {
        this.st.unlink(tmp);
      } catch {
        /* the original error matters */
      }
      throw e;
    }
    this.pointHandleAt(rel, gfid); // it named the linkto's inode, if one was at the name
    this.installLinks(rel, gfid);
    return this.attrOf(rel);
  }

  /**
   * The old name of a special file whose copy is on its hashed brick now (migSpecial): removed if it is
   * still that file (gfid) and unchanged since the migrator read it (`ctime`; changed: EAGAIN, the
   * migrator copies the attributes again first). Its directory keeps its times.
   */
  migDropSpecial(a: Args): Record<string, never> {
    const rel = this.path(a);
    const gfid = gfidArg(a, 'gfid');
    const ctime = timespec(a, 'ctime');
    const st = this.st.lstat(rel);
    if (isDir(st) || isReg(st)) throw new FsError('EINVAL', `/${rel} is not a special file`);
    if (this.readGfid(rel) !== gfid) throw new FsError('ESTALE', `/${rel} is another file now`);
    if (ctime && (st.ctime[0] !== ctime[0] || st.ctime[1] !== ctime[1])) throw new FsError('EAGAIN', `/${rel} changed meanwhile`);
    // A file of several names goes under all of them at once (each unlink moves the inode's ctime).
    const links = this.linksArg(a) ?? [rel];
    if (!links.includes(rel) || links.length !== st.nlink - (this.handleOf(gfid, st) ? 1 : 0) || !links.every((l) => this.st.lstat(l).ino === st.ino)) {
      throw new FsError('ESTALE', `/${rel}: its names are not the ones given`);
    }
    for (const l of links) this.keepingTimes(l, true, () => this.st.unlink(l));
    this.dropHandleIfLast(gfid);
    return {};
  }

  // --- locks ---------------------------------------------------------------------------------------

  private lockOp(s: Session, a: Args, key: string, domain: string, name?: string): Promise<Record<string, never>> | Record<string, never> {
    const mode = lockMode(a, 'type');
    const ownerArg = str(a, 'owner');
    // A limit hit (name sizes, lock count, domains, a waiter's deadline) is logged with the client named.
    const logged = (e: unknown) => {
      const limit = e instanceof FsError ? e.info?.limit : undefined;
      if (typeof limit === 'string') this.limitHit(limit, s, (e as Error).message);
      return e;
    };
    try {
      this.locks.checkName('domain', domain);
      if (name !== undefined) this.locks.checkName('name', name);
      this.locks.checkName('owner', ownerArg);
    } catch (e) {
      throw logged(e);
    }
    const owner = `${s.id}/${ownerArg}`;
    if (mode === 'un') {
      this.locks.release(key, owner);
      return {};
    }
    let r: Promise<void> | void;
    try {
      r = this.locks.acquire(key, owner, s.id, mode, optBool(a, 'block'), domain);
    } catch (e) {
      throw logged(e);
    }
    return r
      ? r.then(
          () => ({}),
          (e) => {
            throw logged(e);
          },
        )
      : {};
  }

  inodelk(s: Session, a: Args): Promise<Record<string, never>> | Record<string, never> {
    const domain = str(a, 'domain');
    const gfid = optGfid(a, 'gfid') ?? this.readGfid(this.path(a));
    if (!gfid) throw new FsError('EIO', 'inode has no gfid');
    return this.lockOp(s, a, `i\0${domain}\0${gfid}`, domain);
  }

  entrylk(s: Session, a: Args): Promise<Record<string, never>> | Record<string, never> {
    const domain = str(a, 'domain');
    const dir = this.path(a);
    const name = str(a, 'name');
    const gfid = dir === '' ? ROOT_GFID : this.readGfid(dir);
    if (!gfid) throw new FsError('EIO', 'directory has no gfid');
    return this.lockOp(s, a, `e\0${domain}\0${gfid}\0${name}`, domain, name);
  }
}
