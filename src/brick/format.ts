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
