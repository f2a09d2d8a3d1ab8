/** Types of the brick protocol's replies, shared by bricks and clients. */
import type { Stat, StatFs, Timespec } from '../storage/storage.js';
import type { LayoutRange } from '../dht/layout.js';

export type { Timespec, LayoutRange };

/** The post-operation attributes every reply carries for the inode it touched: the brick's stat and DHT facts. */
export interface Attr extends Stat {
  gfid: string | null;
  /** Set when this is a linkto file (mode exactly 01000 and the linkto xattr): the brick it points to. */
  linkto?: string;
  /** Directories: this brick's ranges of the directory's layout, null if it has no layout xattr. */
  layout?: LayoutRange[] | null;
  /** Directories: set when the layout xattr is unreadable or malformed. */
  layoutErr?: string;
  /** Legacy (GlusterFS) migration, phase 1: the file has S+T mode bits and a linkto xattr naming dst. */
  phase1To?: string;
  /** Regular files on a migration's src after its commit: the file is dst's now. */
  moved?: { dst: string; token: string; path: string };
  /**
   * Regular files with more than one name, one of them a rename's new name given before the rename
   * finished (DhtClient.rename): the rename, with the volume paths of its old and new name, and where the
   * data of the file it replaces is (to be removed once it is done).
   */
  renaming?: { from: string; to: string; replaced?: { brick: string; gfid?: string } };
}

/** A committed migration's record on src: the file is dst's now (migration/records.ts). */
export interface Moved {
  dst: string;
  token: string;
  /** The file's path when it was committed: where dst installs the copy. */
  path: string;
}

/** What changed in a file under migration since the migrator last asked (migration/records.ts). */
export interface DirtyRecord {
  ranges: [number, number][];
  /** Mode, owner, times or xattrs changed. */
  attrs: boolean;
}

export interface DirEntryAttr {
  name: string;
  attr: Attr;
}

/** statfs of a brick's file system. */
export type StatFsReply = StatFs;

export interface RootInfo {
  attr: Attr;
  commitHash: number | null;
  brick: string;
}

/**
 * The event a brick sends a connection that watches a directory (brick/watch.ts) when its negative-lookup
 * cache of `path` (and, with `subtree`, of every directory below) is void. The client acknowledges it
 * with the request `watchAck` { id }.
 */
export const DIR_CHANGED = 'dirChanged';
/** The event a brick sends every connection when it is given a new topology (bricks, options): `{ version }`. */
export const TOPOLOGY_CHANGED = 'topologyChanged';
export interface DirChanged {
  path: string;
  subtree: boolean;
  id: number;
}
