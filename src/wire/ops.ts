/**
 * The brick protocol's operations, each declared once: its argument fields with their decoders, and its
 * reply type. The brick decodes a request completely with `decodeArgs` before its handler runs (an
 * invalid request never reaches a handler); callers (`RpcClient.call`, `Subvol.call`) are checked at
 * compile time against the same declarations; the hostile-client suite generates frames from them.
 *
 * A decoder checks one field's type and range and gives its decoded value (a volume path becomes a
 * brick-relative one, a float64 -0 becomes +0, an absent optional field `undefined`); anything else is
 * EINVAL (or the errno the brick always gave for it: ENAMETOOLONG, E2BIG, EPERM). Fields not declared
 * are ignored, and the decoded arguments are a fresh object with the declared fields only.
 */
import { FsError } from '../common/errors.js';
import { ROOT_GFID, isGfid } from '../common/gfid.js';
import type { FdLocal, LocalName } from '../storage/storage.js';
import { MAX_IO_SIZE } from './frame.js';
import type { Attr, DirEntryAttr, DirtyRecord, LayoutRange, Moved, RootInfo, StatFsReply, Timespec } from './types.js';

/** A name in a path: at most 255 bytes. */
export const MAX_NAME = 255;
/** A path, or a symlink's target: at most 4096 bytes. */
export const MAX_PATH = 4096;
export const MAX_XATTR_VALUE = 64 * 1024;
/** The largest read or write (and a create's initial data). */
export const MAX_IO = MAX_IO_SIZE;
/** A brick's ranges of one directory's layout: at most this many (dht/layout.ts's MAX_RANGES_PER_BRICK, checked there). */
export const MAX_RANGES = 64;
export const MAX_LEASE_MS = 10 * 60 * 1000;
/** The name at a brick's root that holds its gfid handles: no volume path may begin with it. */
export const RESERVED_ROOT_NAME = '.glusterfs';
export const U32 = 0xffffffff;
const NULL_GFID = '00000000-0000-0000-0000-000000000000';

/**
 * A request refused because it tried something no honest client does (a reserved or taken gfid, a
 * forged handle, a special file opened): the brick logs it with the client's name, once per request.
 */
export class Refused extends FsError {}

export function bad(field: string, why = 'invalid'): FsError {
  return new FsError('EINVAL', `argument '${field}': ${why}`);
}

/** What the generator of hostile frames (test/helpers/attack.ts) needs to know of a field. */
export type FieldKind = 'int' | 'bool' | 'string' | 'path' | 'gfid' | 'bytes' | 'ranges' | 'timespec' | 'enum' | 'object' | 'list';

/** One field: `decode` gives the handler's value (`O`) of what a caller sends (`I`). */
export interface Decoder<O, I = O, Opt extends boolean = boolean> {
  readonly kind: FieldKind;
  readonly optional: Opt;
  decode(v: unknown, field: string): O;
  /** Phantom: the caller's type. */
  readonly _in?: I;
}

function req<O, I = O>(kind: FieldKind, decode: (v: unknown, field: string) => O): Decoder<O, I, false> {
  return { kind, optional: false, decode };
}

/** Absent or null: undefined. */
export function opt<O, I>(d: Decoder<O, I, boolean>): Decoder<O | undefined, I | null | undefined, true> {
  return { kind: d.kind, optional: true, decode: (v, f) => (v === undefined || v === null ? undefined : d.decode(v, f)) };
}
/** Absent or null: `dflt`. */
export function withDefault<O, I>(d: Decoder<O, I, boolean>, dflt: O): Decoder<O, I | null | undefined, true> {
  return { kind: d.kind, optional: true, decode: (v, f) => (v === undefined || v === null ? dflt : d.decode(v, f)) };
}
/** null is a value of its own (required: absent is an error). */
export function orNull<O, I>(d: Decoder<O, I, boolean>): Decoder<O | null, I | null, false> {
  return { kind: d.kind, optional: false, decode: (v, f) => (v === null ? null : d.decode(v, f)) };
}

// --- field decoders -----------------------------------------------------------------------------------

export const str = req<string>('string', (v, k) => {
  if (typeof v !== 'string') throw bad(k, 'must be a string');
  return v;
});
export function int(min = 0, max = Number.MAX_SAFE_INTEGER): Decoder<number, number, false> {
  return req('int', (v, k) => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) throw bad(k, `must be an integer in [${min}, ${max}]`);
    // A float64 -0 passes the checks above but makes Node's fs abort the process (a mode of -0): +0.
    return v === 0 ? 0 : v;
  });
}
export const u32 = int(0, U32);
export const fdNum = int(0, 2 ** 31);
/** Absent or null: false. */
export const flag: Decoder<boolean, boolean | null | undefined, true> = {
  kind: 'bool',
  optional: true,
  decode: (v, k) => {
    if (v === undefined || v === null) return false;
    if (typeof v !== 'boolean') throw bad(k, 'must be a boolean');
    return v;
  },
};
export const bytes = req<Uint8Array>('bytes', (v, k) => {
  if (!(v instanceof Uint8Array)) throw bad(k, 'must be binary');
  return v;
});
/** At most `max` bytes; more is `code`. */
export function bytesUpTo(max: number, code = 'EINVAL'): Decoder<Uint8Array, Uint8Array, false> {
  return req('bytes', (v, k) => {
    const b = bytes.decode(v, k);
    if (b.length > max) throw code === 'EINVAL' ? bad(k, `larger than ${max} bytes`) : new FsError(code, `argument '${k}': larger than ${max} bytes`);
    return b;
  });
}
export const gfid = req<string>('gfid', (v, k) => {
  if (!isGfid(v)) throw bad(k, 'must be a gfid');
  return v;
});
/** The gfid of a new inode: any but the root's and the null gfid (no one may take those over). */
export const newGfid = req<string>('gfid', (v, k) => {
  const g = gfid.decode(v, k);
  if (g === ROOT_GFID || g === NULL_GFID) throw new Refused('EPERM', `argument '${k}': gfid ${g} is reserved`);
  return g;
});
export function oneOf<const T extends string>(...values: T[]): Decoder<T, T, false> {
  return req('enum', (v, k) => {
    if (!values.includes(v as T)) throw bad(k, `must be ${values.map((x) => `'${x}'`).join(', ')}`);
    return v as T;
  });
}
export const timespec = req<Timespec>('timespec', (v, k) => {
  if (!Array.isArray(v) || v.length !== 2 || !v.every((x) => Number.isSafeInteger(x)) || v[1] < 0 || v[1] >= 1e9) throw bad(k, 'must be [sec, nsec]');
  return [v[0] === 0 ? 0 : v[0], v[1] === 0 ? 0 : v[1]];
});
/** A map (the topology, a brick's local name): only its type is checked here. */
export const map = req<Record<string, unknown>, object>('object', (v, k) => {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Uint8Array) throw bad(k, 'must be a map');
  return v as Record<string, unknown>;
});

function oneRange(v: unknown, k: string): LayoutRange {
  if (typeof v !== 'object' || v === null) throw bad(k, 'must be a layout range');
  const r = v as Record<string, unknown>;
  const out = { commit: u32.decode(r.commit, 'commit'), type: int(0, 1).decode(r.type, 'type'), start: u32.decode(r.start, 'start'), stop: u32.decode(r.stop, 'stop') };
  if (out.start > out.stop) throw bad(k, 'start > stop');
  return out;
}
/** A brick's ranges of a directory's layout, each start <= stop. */
export const ranges = req<LayoutRange[]>('ranges', (v, k) => {
  if (!Array.isArray(v) || v.length > MAX_RANGES) throw bad(k, `must be a list of at most ${MAX_RANGES} layout ranges`);
  return v.map((r) => oneRange(r, k));
});

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
  if (parts[0] === RESERVED_ROOT_NAME) throw new FsError('EPERM', `${RESERVED_ROOT_NAME} is reserved`);
  return parts.join('/');
}
/** A volume path; decoded: the brick-relative path (relPath). */
export const path = req<string>('path', (v, k) => relPath(v, k));

/** A symlink's target: 1..4096 bytes, no NUL (any text else: it is the user's, never followed by a brick). */
export const symlinkTarget = req<string>('string', (v, k) => {
  const t = str.decode(v, k);
  if (t.length === 0 || Buffer.byteLength(t) > MAX_PATH || t.includes('\0')) throw bad(k, 'must be 1..4096 bytes without NUL');
  return t;
});
/** A brick's name (a linkto's target): 1..255 characters, no NUL. */
export const brickName = req<string>('string', (v, k) => {
  const t = str.decode(v, k);
  if (t.length === 0 || t.length > 255 || t.includes('\0')) throw bad(k, 'must be a brick name');
  return t;
});
/** A user xattr's name: 1..255 characters (its namespace is the brick's to check). */
export const xattrName = req<string>('string', (v, k) => {
  const t = str.decode(v, k);
  if (t.length === 0 || t.length > 255) throw bad(k, 'must be 1..255 bytes');
  return t;
});
/** A file's xattrs as a migration carries them: at most 1024 [name, value] pairs, names of 1..255 bytes, values of 64 KiB at most. */
export const xattrPairs = req<[string, Uint8Array][]>('list', (v, k) => {
  if (!Array.isArray(v) || v.length > 1024) throw bad(k, 'must be at most 1024 [name, value] pairs');
  for (const x of v) {
    if (!Array.isArray(x) || x.length !== 2 || typeof x[0] !== 'string' || !(x[1] instanceof Uint8Array)) throw bad(k, 'must be [name, value] pairs');
    if (x[0].length === 0 || Buffer.byteLength(x[0]) > MAX_NAME || x[1].length > MAX_XATTR_VALUE) throw bad(k, `names of 1..${MAX_NAME} bytes, values of ${MAX_XATTR_VALUE} bytes at most`);
  }
  return v as [string, Uint8Array][];
});
/** A file's names (a file with several): 1..1000 volume paths, decoded to brick-relative ones. */
export const links = req<string[]>('list', (v, k) => {
  if (!Array.isArray(v) || v.length === 0 || v.length > 1000) throw bad(k, 'must be 1..1000 paths');
  return v.map((l) => relPath(l, k));
});
/** A migration copy's token on dst (part of a file name): 1..32 hex digits. */
export const hexToken = req<string>('string', (v, k) => {
  const t = str.decode(v, k);
  if (!/^[0-9a-f]{1,32}$/.test(t)) throw bad(k, 'must be hex');
  return t;
});
/** A file's mode with its type: a symlink, a FIFO, a socket, or a block or character device (migSpecial). */
export const specialMode = req<number>('int', (v, k) => {
  const m = int(0, 0o177777).decode(v, k);
  const type = m & 0o170000;
  if (type !== 0o120000 && type !== 0o010000 && type !== 0o140000 && type !== 0o060000 && type !== 0o020000) throw bad(k, 'must be a symlink, FIFO, socket or device node');
  return m;
});
/** Where a brick on this host reads a file under migration (migSource's answer). */
export const localSource = req<LocalName & { path: string }>('object', (v, k) => {
  if (!v || typeof v !== 'object') throw bad(k, 'must be an object');
  const o = v as Record<string, unknown>;
  return { host: str.decode(o.host, 'host'), root: str.decode(o.root, 'root'), path: str.decode(o.path, 'path') };
});
/**
 * The file a rename's new name replaced (link's `replaced`): lenient, as it always was: anything that is
 * not `{ brick (<= 255 characters), gfid? }` is taken as absent, and a malformed gfid is left out.
 */
export const replacedFile: Decoder<{ brick: string; gfid?: string } | undefined, { brick: string; gfid?: string } | null | undefined, true> = {
  kind: 'object',
  optional: true,
  decode: (v) => {
    const rep = v as { brick?: unknown; gfid?: unknown } | null | undefined;
    if (!rep || typeof rep !== 'object' || typeof rep.brick !== 'string' || rep.brick.length > 255) return undefined;
    return { brick: rep.brick, ...(typeof rep.gfid === 'string' && isGfid(rep.gfid) ? { gfid: rep.gfid } : {}) };
  },
};

// --- the operations ------------------------------------------------------------------------------------

type Fields = Record<string, Decoder<unknown, unknown, boolean>>;
export interface OpSpec<F extends Fields, R> {
  readonly args: F;
  /** Phantom: the reply's type. */
  readonly _reply?: R;
}
function op<F extends Fields>(args: F): { reply<R>(): OpSpec<F, R> } {
  return { reply: () => ({ args }) };
}

type OptKeys<F> = { [K in keyof F]: F[K] extends { optional: true } ? K : never }[keyof F];
type InOfField<D> = D extends Decoder<unknown, infer I, boolean> ? I : never;
type OutOfField<D> = D extends Decoder<infer O, unknown, boolean> ? O : never;
type Simplify<T> = { [K in keyof T]: T[K] } & {};
/** What a caller sends. */
export type InOf<F> = Simplify<{ [K in Exclude<keyof F, OptKeys<F>>]: InOfField<F[K]> } & { [K in OptKeys<F>]?: InOfField<F[K]> }>;
/** What a handler gets. */
export type OutOf<F> = { [K in keyof F]: OutOfField<F[K]> };

type Empty = Record<string, never>;
type FdAttr = { fd: number; attr: Attr };
/** The layout check of entry operations (the parent's ranges as the client knows them, and their commit). */
const parentCheck = { parentLayout: opt(ranges), parentCommit: opt(u32) };
const owner = { uid: opt(u32), gid: opt(u32) };

export const OPS = {
  // A client's watchdog (ping-timeout) asks whether this brick is alive; answered at once.
  ping: op({}).reply<Empty>(),
  rootInfo: op({}).reply<RootInfo>(),
  getTopology: op({}).reply<{ topology: unknown }>(),
  setTopology: op({ topology: map }).reply<{ topology: unknown }>(),
  statfs: op({}).reply<StatFsReply>(),
  setCommitHash: op({ value: u32 }).reply<RootInfo>(),
  setLayout: op({ path, layout: orNull(ranges) }).reply<Attr>(),
  watchAck: op({ id: int() }).reply<void>(),

  lookup: op({ path, ...parentCheck }).reply<Attr>(),
  lookupGfid: op({ gfid }).reply<Attr>(),
  mkdir: op({ path, mode: int(0, 0o7777), gfid: newGfid, layout: opt(ranges), ...owner, atime: opt(timespec), mtime: opt(timespec), watch: flag, keepTimes: flag, ...parentCheck }).reply<Attr>(),
  create: op({ path, mode: int(0, 0o7777), flags: u32, gfid: newGfid, ...owner, data: opt(bytesUpTo(MAX_IO)), close: flag, ...parentCheck }).reply<FdAttr>(),
  mklinkto: op({ path, gfid: newGfid, target: brickName, ...owner, replace: flag, keepTimes: flag, ...parentCheck }).reply<Attr>(),
  symlink: op({ path, target: symlinkTarget, gfid: newGfid, ...owner, ...parentCheck }).reply<Attr>(),
  /** `rdev`: a device node's device (glibc's makedev encoding, which the kernel's devices fit in 32 bits of). */
  mknod: op({ path, mode: int(0, 0o177777), rdev: opt(u32), gfid: newGfid, ...owner, ...parentCheck }).reply<Attr>(),
  unlink: op({ path, gfid: opt(gfid), onlyIfLinkto: flag, ifNotOpen: flag, ifOtherNames: flag, clearIntent: flag, keepTimes: flag }).reply<Attr>(),
  rmdir: op({ path, purgeLinktos: flag }).reply<Empty>(),
  rename: op({ from: path, to: path, gfid: opt(gfid), ...parentCheck }).reply<Attr>(),
  link: op({ from: path, to: path, gfid: opt(gfid), intent: flag, replaced: replacedFile, ...parentCheck }).reply<Attr>(),
  renameSettled: op({ gfid }).reply<Empty>(),
  /**
   * renameat2 RENAME_EXCHANGE of two names of this brick, each the data of the file `gfid` / `toGfid`
   * (no linkto, no directory); `fromLayout` checks `from`'s parent as `parentLayout` checks `to`'s.
   */
  exchange: op({ from: path, to: path, gfid, toGfid: gfid, fromLayout: opt(ranges), ...parentCheck }).reply<Attr>(),
  readlink: op({ path }).reply<{ target: string; attr: Attr }>(),
  readdir: op({ path, offset: withDefault(int(), 0), limit: withDefault(int(1, 100_000), 1000) }).reply<{ entries: DirEntryAttr[]; eof: boolean; attr: Attr }>(),

  /** By gfid, or by path (one of them). */
  open: op({ path: opt(path), gfid: opt(gfid), flags: u32, expect: opt(gfid) }).reply<FdAttr>(),
  read: op({ fd: fdNum, offset: int(), length: int(0, MAX_IO) }).reply<{ data: Buffer; attr: Attr }>(),
  write: op({ fd: fdNum, offset: int(), data: bytesUpTo(MAX_IO), dropPrivs: flag }).reply<{ written: number; attr: Attr }>(),
  fsync: op({ fd: fdNum, datasync: flag, all: flag }).reply<Attr>(),
  ftruncate: op({ fd: fdNum, size: int() }).reply<Attr>(),
  /** fallocate(2): `mode` FALLOC_FL_* bits (allocate, KEEP_SIZE, PUNCH_HOLE, ZERO_RANGE, COLLAPSE_RANGE, INSERT_RANGE). */
  fallocate: op({ fd: fdNum, mode: int(0, 0xff), offset: int(), length: int(1) }).reply<Attr>(),
  fstat: op({ fd: fdNum }).reply<Attr>(),
  fdLocal: op({ fd: fdNum }).reply<FdLocal>(),
  seek: op({ fd: fdNum, offset: int(), whence: oneOf('data', 'hole') }).reply<{ offset: number; attr: Attr }>(),
  close: op({ fd: fdNum }).reply<Empty>(),
  /** By fd, or by path (one of them). */
  setattr: op({ path: opt(path), fd: opt(fdNum), mode: opt(int(0, 0o7777)), ...owner, atime: opt(timespec), mtime: opt(timespec), size: opt(int()), ctime: flag }).reply<Attr>(),

  getxattr: op({ path, name: xattrName }).reply<{ value: Buffer }>(),
  setxattr: op({ path, name: xattrName, value: bytesUpTo(MAX_XATTR_VALUE, 'E2BIG'), create: flag, replace: flag }).reply<Attr>(),
  listxattr: op({ path }).reply<{ names: string[] }>(),
  removexattr: op({ path, name: xattrName }).reply<Attr>(),

  /** By gfid, or by path (one of them). */
  inodelk: op({ domain: str, path: opt(path), gfid: opt(gfid), type: oneOf('rd', 'wr', 'un'), block: flag, owner: str }).reply<Empty>(),
  entrylk: op({ domain: str, path, name: str, type: oneOf('rd', 'wr', 'un'), block: flag, owner: str }).reply<Empty>(),

  // Migration (docs/MIGRATION.md), this brick as src.
  migLease: op({ path, gfid, dst: str, leaseMs: int(1, MAX_LEASE_MS), links: opt(links) }).reply<{ token: string; attr: Attr }>(),
  migRenew: op({ gfid, token: str, leaseMs: int(1, MAX_LEASE_MS) }).reply<Empty>(),
  migSource: op({ gfid, token: str }).reply<{ source: (LocalName & { path: string }) | null }>(),
  migDirty: op({ gfid, token: str }).reply<DirtyRecord & { size: number }>(),
  migSegments: op({ gfid, token: str, offset: int(), max: withDefault(int(1, 65536), 4096) }).reply<{ segments: [number, number][]; next: number | null }>(),
  migFreeze: op({ gfid, token: str }).reply<{ dirty: DirtyRecord; attr: Attr; xattrs: [string, Buffer][] }>(),
  migCommit: op({ gfid, token: str }).reply<{ moved: Moved }>(),
  migAbort: op({ gfid, token: str }).reply<Empty>(),
  migCleanup: op({ path, gfid }).reply<Empty>(),
  migSweep: op({ olderThanMs: int() }).reply<{ removed: number }>(),
  /** The legacy (GlusterFS) order's linkto xattr on a data file; `target` null removes it. */
  legacySetLinkto: op({ path, target: orNull(brickName) }).reply<Attr>(),

  // Migration, this brick as dst.
  migPrepare: op({ path, gfid: newGfid, src: str, token: hexToken, ...owner, links: opt(links) }).reply<{ fd: number }>(),
  /** `again`: a range copied before (a client changed it since), which may be a hole on src now. */
  migPull: op({ fd: fdNum, offset: int(), length: int(0, MAX_IO), source: localSource, again: flag }).reply<{ copied: number }>(),
  /** dst: copies a range into this migration copy from src brick `from` (another host), over the brick path. */
  migFetch: op({ fd: fdNum, offset: int(), length: int(0, MAX_IO), from: brickName, token: str }).reply<{ copied: number }>(),
  /** src: a range of the file under migration, for dst's migFetch (the lease's token). */
  migRead: op({ gfid, token: str, offset: int(), length: int(0, MAX_IO) }).reply<{ data: Buffer }>(),
  migFinalize: op({ fd: fdNum, size: int(), mode: int(0, 0o7777), uid: u32, gid: u32, atime: opt(timespec), mtime: opt(timespec), xattrs: xattrPairs }).reply<Attr>(),
  migInstall: op({ path, gfid, token: hexToken, durable: flag }).reply<Attr>(),
  migSpecial: op({ path, gfid: newGfid, mode: specialMode, rdev: opt(u32), target: opt(symlinkTarget), uid: u32, gid: u32, atime: opt(timespec), mtime: opt(timespec), xattrs: withDefault(xattrPairs, []), links: opt(links) }).reply<Attr>(),
  migDropSpecial: op({ path, gfid, ctime: opt(timespec), links: opt(links) }).reply<Empty>(),
};

export type Ops = typeof OPS;
export type OpName = keyof Ops;
/** The arguments a caller sends for `op`. */
export type ArgsOf<N extends OpName> = InOf<Ops[N]['args']>;
/** The arguments as `op`'s handler gets them, decoded. */
export type Decoded<N extends OpName> = OutOf<Ops[N]['args']>;
/** The reply of `op`. */
export type Reply<N extends OpName> = Ops[N] extends OpSpec<Fields, infer R> ? R : never;
/** The operations that act on an open fd (a FileHandle sends them with its fd). */
export type FdOp = { [N in OpName]: 'fd' extends keyof Ops[N]['args'] ? N : never }[OpName];

/** The arguments of an fd operation without its fd (the caller's handle adds it). */
export type FdArgs<N extends FdOp> = Omit<ArgsOf<N>, 'fd'>;

export function isOp(op: string): op is OpName {
  return Object.hasOwn(OPS, op);
}

/** Each operation's fields as [name, decoder] pairs in their declared order, listed once. */
const FIELD_LISTS = new Map<string, [string, Decoder<unknown, unknown, boolean>][]>(Object.entries(OPS).map(([name, spec]) => [name, Object.entries(spec.args as Fields)]));

/**
 * Decodes a request's arguments completely (every declared field, in order); throws on the first bad one.
 * The result is a plain object whose fields are set in the same order for every request of `op`, so the
 * handlers read objects of one shape per operation (an object made by Object.create(null) is a
 * dictionary, slow to build and to read); it holds the declared fields only, so nothing of the request
 * but their values reaches a handler.
 */
export function decodeArgs<N extends OpName>(op: N, args: Record<string, unknown>): Decoded<N> {
  const fields = FIELD_LISTS.get(op)!;
  const out: Record<string, unknown> = {};
  for (let i = 0; i < fields.length; i++) {
    const [k, d] = fields[i];
    out[k] = d.decode(Object.hasOwn(args, k) ? args[k] : undefined, k);
  }
  return out as Decoded<N>;
}
