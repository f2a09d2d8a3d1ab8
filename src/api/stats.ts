import type { Attr } from '../wire/types.js';
import { S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK } from '../storage/storage.js';

const ms = (t: [number, number]) => t[0] * 1000 + t[1] / 1e6;
const ns = (t: [number, number]) => BigInt(t[0]) * 1_000_000_000n + BigInt(t[1]);

/** The file-type tests of fs.Stats and fs.Dirent, from a mode. */
class ModeType {
  constructor(readonly mode: number) {}
  isFile(): boolean {
    return (this.mode & S_IFMT) === S_IFREG;
  }
  isDirectory(): boolean {
    return (this.mode & S_IFMT) === S_IFDIR;
  }
  isSymbolicLink(): boolean {
    return (this.mode & S_IFMT) === S_IFLNK;
  }
  isFIFO(): boolean {
    return (this.mode & S_IFMT) === S_IFIFO;
  }
  isSocket(): boolean {
    return (this.mode & S_IFMT) === S_IFSOCK;
  }
  isBlockDevice(): boolean {
    return (this.mode & S_IFMT) === 0o060000;
  }
  isCharacterDevice(): boolean {
    return (this.mode & S_IFMT) === 0o020000;
  }
}

/** fs.Stats-like attributes of a file on a dhtfs volume. */
export class Stats extends ModeType {
  readonly dev = 0;
  /** A device node's device (makedev(3)'s encoding); 0 for other kinds. */
  readonly rdev: number;
  readonly blksize = 4096;
  readonly ino: number;
  readonly nlink: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly blocks: number;
  readonly atimeMs: number;
  readonly mtimeMs: number;
  readonly ctimeMs: number;
  readonly atimeNs: bigint;
  readonly mtimeNs: bigint;
  readonly ctimeNs: bigint;
  /** The file's gfid: the same on every brick, stable across renames. */
  readonly gfid: string | null;

  constructor(a: Attr) {
    super(a.mode);
    this.ino = a.ino;
    this.rdev = a.rdev ?? 0;
    this.nlink = a.nlink;
    this.uid = a.uid;
    this.gid = a.gid;
    this.size = a.size;
    this.blocks = a.blocks;
    this.atimeMs = ms(a.atime);
    this.mtimeMs = ms(a.mtime);
    this.ctimeMs = ms(a.ctime);
    this.atimeNs = ns(a.atime);
    this.mtimeNs = ns(a.mtime);
    this.ctimeNs = ns(a.ctime);
    this.gfid = a.gfid;
  }
  get atime(): Date {
    return new Date(this.atimeMs);
  }
  get mtime(): Date {
    return new Date(this.mtimeMs);
  }
  get ctime(): Date {
    return new Date(this.ctimeMs);
  }
}

/** fs.Dirent-like entry of a directory listing. */
export class Dirent extends ModeType {
  constructor(
    readonly name: string,
    mode: number,
  ) {
    super(mode);
  }
}
