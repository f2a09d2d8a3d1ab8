/**
 * The DHT client's directory and layout cache, a layer of its own: each directory's layout as merged from
 * every brick (DirInfo), kept until an operation finds it stale (ELAYOUT), the directory is renamed or
 * removed, or the topology changes; and hints of paths seen to be directories lately (in a listing, made
 * here, with a layout known), so that a lookup of one asks every brick at once, the hashed one for the
 * entry and the others for the times, in one round trip instead of two (`find`, `ls -lR`). Switched off
 * (`enabled: false`), every directory's layout is read from the bricks each time it is needed.
 */
import type { Clock } from '../common/env.js';
import type { Layout } from './layout.js';
import type { Attr } from '../wire/types.js';

/** How long a path seen to be a directory is taken for one, and how many such hints are kept. */
export const DIR_HINT_MS = 2000;
export const DIR_HINTS_MAX = 100_000;

/** A directory's layout as merged from all bricks. */
export interface DirInfo {
  path: string;
  gfid: string;
  layout: Layout;
  /** Attributes from the directory's hashed brick (or the first that answered). */
  attr: Attr;
  /**
   * Bricks that could not be asked (down, or hung past the ping-timeout). Their ranges are unknown, so
   * names hashing there answer ENOTCONN; such a layout is neither healed nor cached.
   */
  down?: string[];
  /**
   * Bricks without a copy of the directory whose copy could not be made (its heal failed: another
   * client held the namespace lock past the lock-timeout, say). They hold no range and no name of it;
   * such a layout is not cached.
   */
  missing?: string[];
}

export class DirCache {
  private dirs = new Map<string, DirInfo>();
  private hints = new Map<string, number>();

  constructor(
    private readonly clock: Clock,
    readonly enabled = true,
  ) {}

  get(path: string): DirInfo | undefined {
    return this.dirs.get(path);
  }

  /** A layout read whole from every brick. */
  set(path: string, info: DirInfo): void {
    if (this.enabled) this.dirs.set(path, info);
  }

  /** The directory's layout may be stale (ELAYOUT, a heal, a rename in it). */
  drop(path: string): void {
    this.dirs.delete(path);
  }

  /** The directory is renamed or removed: nothing of it or below is known. */
  dropTree(path: string): void {
    const below = path === '/' ? '/' : `${path}/`;
    for (const k of [...this.dirs.keys()]) if (k === path || k.startsWith(below)) this.dirs.delete(k);
  }

  /** A new topology: every layout is to be read again. */
  clear(): void {
    this.dirs.clear();
  }

  /** `path` was seen to be a directory. */
  hint(path: string): void {
    if (this.hints.size >= DIR_HINTS_MAX) this.hints.clear();
    this.hints.set(path, this.clock.now() + DIR_HINT_MS);
  }

  /** Whether `path` is taken for a directory (its layout is known, or it was seen to be one lately). */
  hinted(path: string): boolean {
    if (this.dirs.has(path)) return true;
    const until = this.hints.get(path);
    if (until === undefined) return false;
    if (until >= this.clock.now()) return true;
    this.hints.delete(path);
    return false;
  }
}
