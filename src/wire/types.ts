/** Types of the brick protocol's replies, shared by bricks and clients. */
import type { Timespec } from '../storage/storage.js';
import type { LayoutRange } from '../dht/layout.js';

export type { Timespec, LayoutRange };

/** The post-operation attributes every reply carries for the inode it touched. */
export interface Attr {
  gfid: string | null;
  ino: number;
  /** Full st_mode as on the brick (a linkto shows 0o101000). */
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  size: number;
  blocks: number;
  atime: Timespec;
  mtime: Timespec;
  ctime: Timespec;
  /** Set when this is a linkto file (mode exactly 01000 and the linkto xattr): the brick it points to. */
  linkto?: string;
  /** Directories: this brick's ranges of the directory's layout, null if it has no layout xattr. */
  layout?: LayoutRange[] | null;
  /** Directories: set when the layout xattr is unreadable or malformed. */
  layoutErr?: string;
  /** Regular files on a migration's src after its commit: the file is dst's now. */
  moved?: { dst: string; token: string; path: string };
}

export interface DirEntryAttr {
  name: string;
  attr: Attr;
}

export interface StatFsReply {
  bsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
}

export interface RootInfo {
  attr: Attr;
  commitHash: number | null;
  brick: string;
}
