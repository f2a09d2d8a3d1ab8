/**
 * The brick's on-disk format (GlusterFS conventions, names under a configurable prefix, `trusted.` as root):
 *   <prefix>gfid                        16-byte id of every file and directory
 *   <prefix>glusterfs.dht               layout ranges on directories, 16 bytes each (one: GlusterFS's value)
 *   <prefix>glusterfs.dht.linkto        NUL-terminated brick name on linkto files (mode exactly 01000)
 *   <prefix>glusterfs.dht.commithash    volume commit hash on the root, decimal ASCII + NUL
 *   <prefix>glusterfs.volume-id         16-byte volume id on the root
 *   .glusterfs/ab/cd/<gfid>             handle: hard link for files and symlinks, symlink for directories
 */
import { MAX_NAME, MAX_PATH, MAX_XATTR_VALUE, RESERVED_ROOT_NAME } from '../wire/ops.js';
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, S_ISVTX, type Stat } from '../storage/storage.js';

/** The gfid handles' directory, at the brick's root: no volume path may name it (wire/ops.ts). */
export const HANDLE_DIR = RESERVED_ROOT_NAME;
/** Where dst keeps migration copies until they are installed: outside the namespace. */
export const MIGRATE_DIR = `${HANDLE_DIR}/dhtfs-migrate`;
/** Where a linkto that replaces a name is made before it is renamed over the name. */
export const RENAME_DIR = `${HANDLE_DIR}/dhtfs-rename`;
export { MAX_NAME, MAX_PATH, MAX_XATTR_VALUE };
export const LINKTO_MODE = S_IFREG | S_ISVTX;

/** The xattrs of the brick's format, under its prefix (`trusted.` as root, `user.` otherwise). */
export interface XattrNames {
  gfid: string;
  /** A directory's layout ranges on this brick. */
  dht: string;
  /** A linkto file's target brick. */
  linkto: string;
  /** The volume's commit hash, on the root. */
  commit: string;
  volumeId: string;
  /** Which brick of the volume the directory is, on the root. */
  brickId: string;
  /** A committed migration's record on src (migration.ts). */
  migration: string;
  /** An unfinished rename's intent on its second name. */
  rename: string;
  /** A migration copy's other names (migPrepare, migSpecial), until they are installed. */
  links: string;
  /** The volume's topology, on the root. */
  topology: string;
  /** The volume root's mode and owner (the brick's root itself is 0700). */
  rootAttr: string;
  /** Prefixes no client may read or write as a user xattr. */
  reserved: string[];
}

export function xattrNames(p: string): XattrNames {
  return {
    gfid: `${p}gfid`,
    dht: `${p}glusterfs.dht`,
    linkto: `${p}glusterfs.dht.linkto`,
    commit: `${p}glusterfs.dht.commithash`,
    volumeId: `${p}glusterfs.volume-id`,
    brickId: `${p}dhtfs.brick-id`,
    migration: `${p}dhtfs.migration`,
    rename: `${p}dhtfs.rename`,
    links: `${p}dhtfs.links`,
    topology: `${p}dhtfs.volume`,
    rootAttr: `${p}dhtfs.root-attr`,
    reserved: [`${p}gfid`, `${p}glusterfs.`, `${p}dhtfs.`],
  };
}

/** The volume root's mode and owner as `rootAttr` keeps them: three big-endian u32. */
export interface RootAttr {
  mode: number;
  uid: number;
  gid: number;
}
export function encodeRootAttr(r: RootAttr): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt32BE(r.mode & 0o7777, 0);
  b.writeUInt32BE(r.uid >>> 0, 4);
  b.writeUInt32BE(r.gid >>> 0, 8);
  return b;
}
export function decodeRootAttr(b: Uint8Array | null): RootAttr | null {
  if (!b || b.length !== 12) return null;
  const v = Buffer.from(b);
  return { mode: v.readUInt32BE(0) & 0o7777, uid: v.readUInt32BE(4), gid: v.readUInt32BE(8) };
}

/** A linkto xattr's value: the target brick's name, NUL-terminated as GlusterFS writes it. */
export function encodeLinkto(target: string): Buffer {
  return Buffer.from(`${target}\0`);
}
export function decodeLinkto(b: Uint8Array | null): string | null {
  if (!b) return null;
  const s = Buffer.from(b).toString('utf8');
  return s.endsWith('\0') ? s.slice(0, -1) : s;
}

/** The directory of a brick-relative path ('' for the root and its entries). */
export function parentOf(rel: string): string {
  const i = rel.lastIndexOf('/');
  return i < 0 ? '' : rel.slice(0, i);
}
export function baseOf(rel: string): string {
  return rel.slice(rel.lastIndexOf('/') + 1);
}
/** A gfid's handle: `.glusterfs/ab/cd/<gfid>`, a hard link for files and symlinks, a symlink for directories. */
export function handlePath(gfid: string): string {
  return `${HANDLE_DIR}/${gfid.slice(0, 2)}/${gfid.slice(2, 4)}/${gfid}`;
}
export const isReg = (st: Stat) => (st.mode & S_IFMT) === S_IFREG;
export const isDir = (st: Stat) => (st.mode & S_IFMT) === S_IFDIR;
export const isLnk = (st: Stat) => (st.mode & S_IFMT) === S_IFLNK;
/** A device node's device for `mknod` (`rdev` as the request gave it): 0 for a FIFO or a socket. */
export const deviceOf = (type: number, rdev: number | undefined) => (type === S_IFBLK || type === S_IFCHR ? (rdev ?? 0) : 0);
