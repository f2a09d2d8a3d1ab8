/**
 * What a brick needs from its disk. Paths are relative to the brick's root and already validated by the
 * brick ('' is the root, components joined by '/'). Nothing here follows a symlink in the last component,
 * and no call goes through one above it: a symlink there is ELOOP, a file ENOTDIR (a folder swapped for a
 * symlink on the brick's disk must not lead outside the brick; DiskStorage checks it in the kernel, at
 * the moment of the call), and no call leaves the root (EXDEV).
 *
 * Metadata calls are synchronous on purpose: a brick is a single-threaded state machine, and each
 * request's metadata section runs without interleaving with other requests, on disk and in simulation
 * alike. Data calls (read, write, fsync) are asynchronous.
 */

export type Timespec = [sec: number, nsec: number];

export interface Stat {
  ino: number;
  /** Full st_mode: type and permission bits, S_ISUID/S_ISGID/S_ISVTX included. */
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  size: number;
  blocks: number;
  atime: Timespec;
  mtime: Timespec;
  ctime: Timespec;
  /** Device nodes: the device they name (st_rdev, glibc's makedev encoding); absent or 0 for other kinds. */
  rdev?: number;
}

export interface DirEntry {
  name: string;
  type: 'file' | 'dir' | 'symlink' | 'other';
}

export interface StatFs {
  bsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  /**
   * Which file system this is (host and device), where the storage knows: bricks that report the same
   * fsid share their space, and a volume's statfs counts it once.
   */
  fsid?: string;
}

/** Storage errors are thrown as objects with an errno-name `code` (ENOENT, ENOSPC, ...). */
export interface Storage {
  lstat(p: string): Stat;
  mkdir(p: string, mode: number): void;
  rmdir(p: string): void;
  unlink(p: string): void;
  rename(from: string, to: string): void;
  link(existing: string, p: string): void;
  symlink(target: string, p: string): void;
  readlink(p: string): string;
  readdir(p: string): DirEntry[];
  chmod(p: string, mode: number): void;
  lchown(p: string, uid: number, gid: number): void;
  lutimes(p: string, atime: Timespec, mtime: Timespec): void;
  truncate(p: string, size: number): void;

  getxattr(p: string, name: string): Buffer | null;
  setxattr(p: string, name: string, value: Uint8Array): void;
  removexattr(p: string, name: string): void;
  listxattr(p: string): string[];

  /**
   * Opens with O_NOFOLLOW and O_NONBLOCK added (a FIFO met here must never block the brick; regular
   * files ignore it); flags are Linux open(2) flags. Returns a handle.
   */
  open(p: string, flags: number, mode: number): number;
  close(h: number): void;
  fstat(h: number): Stat;
  ftruncate(h: number, size: number): void;
  /** Reads up to `length` bytes at `offset`, into `into` when given (then the result is a view of it). */
  read(h: number, offset: number, length: number, into?: Buffer): Promise<Buffer>;
  write(h: number, offset: number, data: Uint8Array): Promise<number>;
  fsync(h: number, datasync: boolean): Promise<void>;

  statfs(): StatFs;

  /**
   * Optional, for a migration between two bricks of one host: how a brick on this host names this
   * storage, to read a file of it directly (Brick.migSource); null when it cannot be shared.
   */
  localName?(): LocalName | null;
  /** Optional: the storage another brick of this host named (read only use); null if it is not here. */
  peer?(name: LocalName): Storage | null;
  /**
   * Optional: copies `length` bytes at `offset` of the file open as `from` in `peer` to the same offset
   * of `h`, in the kernel; resolves to the bytes copied (fewer at the end of the source). Rejects with
   * EXDEV, EINVAL, EOPNOTSUPP or ENOSYS where it cannot, and the caller copies through memory.
   */
  copyRange?(peer: Storage, from: number, h: number, offset: number, length: number): Promise<number>;
  /** Optional: makes everything written to this storage's file system durable (syncfs), through `h`. */
  syncAll?(h: number): Promise<void>;
  /**
   * Optional: an open file description lock on one byte of the file open as `h`, never waiting: false
   * when another description holds a conflicting lock. Migrations take the gate and the writers' lock of
   * a file with it (LOCK_GATE, LOCK_WRITERS); without it, clients get no local writes.
   */
  lock?(h: number, byte: number, mode: FileLockMode): boolean;
  /**
   * Optional: makes a FIFO, a socket, or a block or character device (`mode`'s type bits say which;
   * `rdev`: the device of a device node); without it, a brick refuses them.
   */
  mknod?(p: string, mode: number, rdev: number): void;
  /**
   * Optional: lseek(2) SEEK_DATA (`hole` false) or SEEK_HOLE (`hole` true) from `offset` in the file open
   * as `h`; -1 when there is no data from there on (ENXIO). Migrations copy data segments only with it;
   * without it, a file is all data.
   */
  seekData?(h: number, offset: number, hole: boolean): number;
  /**
   * Optional: fallocate(2) on the file open as `h`, `mode` one of the FALLOC_* combinations below (the
   * brick checks it); without it, a brick answers EOPNOTSUPP.
   */
  fallocate?(h: number, mode: number, offset: number, length: number): void;
  /** Optional: swaps the inodes of two existing names at once (renameat2 RENAME_EXCHANGE); without it, a brick answers EXDEV. */
  exchange?(from: string, to: string): void;
  /**
   * Optional: the attributes of the file open as `h` (fchown, fchmod, futimens): for a file that has no
   * name left (unlinked while open), which the path-based calls cannot reach.
   */
  fsetattr?(h: number, o: { mode?: number; uid?: number; gid?: number; atime?: Timespec; mtime?: Timespec }): void;
  /**
   * Optional: `p` is a folder of the brick's own, under its private folder, that only the brick names and
   * it never renames (the folder new names are made whole in, the gfid handle tree's first level): the
   * storage may resolve it once and keep it (its descriptor) for later calls, until the brick renames or
   * removes it, or pins it again (it made it anew). Never a folder of the volume.
   */
  pinDir?(p: string): void;
}

/** fallocate(2)'s mode bits (linux/falloc.h). */
export const FALLOC_FL_KEEP_SIZE = 0x01;
export const FALLOC_FL_PUNCH_HOLE = 0x02;
export const FALLOC_FL_COLLAPSE_RANGE = 0x08;
export const FALLOC_FL_ZERO_RANGE = 0x10;
export const FALLOC_FL_INSERT_RANGE = 0x20;

/**
 * Local writes (docs/MIGRATION.md, "Local writes"): a client writing a brick's file itself holds byte 1
 * of it (the writers' lock) shared, having passed byte 0 (the gate) shared; src holds both exclusive
 * from a migration's lease to its commit or abort.
 */
export const LOCK_GATE = 0;
export const LOCK_WRITERS = 1;
export type FileLockMode = 'unlock' | 'shared' | 'exclusive';

/**
 * A client's local reads and writes (docs/MIGRATION.md, "Local reads", "Local writes"): the data file of
 * a handle, read and written on the brick's host without the brick, checked for a migration's commit
 * record after each read and before each write.
 */
export interface LocalFiles {
  /**
   * Opens the file a brick named, if it is on this host and is that very inode with this gfid; null
   * otherwise. `writable`: for local writes too (read and write).
   */
  open(src: FdLocal, gfid: string, writable: boolean): Promise<LocalFile | null>;
}
/** Brick.fdLocal's answer: where the brick's host keeps the data file of an open fd. */
export interface FdLocal {
  /** The host, the storage's root there and the file's path under it; null when it cannot be shared. */
  source: (LocalName & { path: string }) | null;
  /** The inode the brick reads for the fd. */
  ino: number;
  /** The names of the xattrs that carry the file's gfid and a migration's commit record. */
  gfidXattr: string;
  recordXattr: string;
  /** Whether src takes the file's gate and writers' lock for each migration, so that a client may write it itself. */
  writers: boolean;
}
export interface LocalFile {
  /** Reads up to `length` bytes at `position` into `into`; resolves to the count. */
  read(into: Uint8Array, length: number, position: number): Promise<number>;
  /** Writes `length` bytes of `data` at `position`; resolves to the count written. */
  write(data: Uint8Array, length: number, position: number): Promise<number>;
  /** Whether the file carries a commit record now (true also when that cannot be told). */
  recorded(): boolean;
  /** A lock on byte LOCK_GATE or LOCK_WRITERS of the file, as Storage.lock (false: held elsewhere, or no locks here). */
  lock(byte: number, mode: FileLockMode): boolean;
  /** Closes the file once the reads and writes in flight are done; resolves when its descriptor is closed. */
  close(): Promise<void>;
}

/** A storage as bricks of one host name it: the host's identity and the storage's root there. */
export interface LocalName {
  host: string;
  root: string;
}

/** The file a brick's health check writes and fsyncs (GlusterFS's name and place): storage/health.ts. */
export const HEALTH_CHECK_FILE = '.glusterfs/health_check';

export const S_IFMT = 0o170000;
export const S_IFREG = 0o100000;
export const S_IFDIR = 0o040000;
export const S_IFLNK = 0o120000;
export const S_IFIFO = 0o010000;
export const S_IFSOCK = 0o140000;
export const S_IFBLK = 0o060000;
export const S_IFCHR = 0o020000;
export const S_ISUID = 0o4000;
export const S_ISGID = 0o2000;
export const S_ISVTX = 0o1000;
export const S_IXGRP = 0o0010;

export const O_RDONLY = 0;
export const O_WRONLY = 1;
export const O_RDWR = 2;
export const O_ACCMODE = 3;
export const O_CREAT = 0o100;
export const O_EXCL = 0o200;
export const O_TRUNC = 0o1000;
export const O_APPEND = 0o2000;
export const O_NOFOLLOW = 0o400000;
export const O_DIRECTORY = 0o200000;
export const O_NONBLOCK = 0o4000;

export function fileType(mode: number): DirEntry['type'] {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return 'file';
    case S_IFDIR:
      return 'dir';
    case S_IFLNK:
      return 'symlink';
    default:
      return 'other';
  }
}
