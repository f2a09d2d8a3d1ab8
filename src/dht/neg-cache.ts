/**
 * The DHT client's negative-lookup cache, a layer of its own (GlusterFS's nl-cache, over the bricks'
 * directory watches: brick/watch.ts). For each directory this client made, with every brick watching it
 * for us, it knows the names that may be in it (those this client made there since): a lookup of any
 * other name is answered ENOENT without asking a brick. An event from a brick (another client changed a
 * name there; the directory was renamed, removed or given a new layout), a lost connection or a new
 * topology drops the directory's entry. Switched off (`enabled: false`), it knows nothing and every
 * lookup asks the bricks.
 */

/** Names a cache holds for one directory before the directory is dropped. */
export const NEG_MAX_NAMES = 100_000;

interface Entry {
  names: Set<string>;
  /** Every brick made the directory and watches it. */
  ready: boolean;
}

/** A directory being made: what `made` and `failed` take. */
export type NegToken = Entry;

export class NegativeCache {
  private dirs = new Map<string, Entry>();

  /**
   * `fresh`: whether every brick answered lately (a connection that went silent may have lost the news
   * of a name made since; the cache then answers nothing).
   */
  constructor(
    private readonly fresh: () => boolean,
    readonly enabled = true,
    private readonly maxNames = NEG_MAX_NAMES,
  ) {}

  /** Directories with an entry (tests). */
  get size(): number {
    return this.dirs.size;
  }

  /**
   * This client is making directory `path` on every brick, watched: its entry is in place before the
   * first brick makes it (so that an event about it is not missed), of use once `made` says every brick
   * has it. Null when the cache is off.
   */
  begin(path: string): NegToken | null {
    if (!this.enabled) return null;
    const e: Entry = { names: new Set(), ready: false };
    this.dirs.set(path, e);
    return e;
  }

  /** The directory's mkdir answered: of use if every brick made it, dropped if not. */
  made(path: string, t: NegToken | null, everywhere: boolean): void {
    if (t === null || this.dirs.get(path) !== t) return;
    if (everywhere) t.ready = true;
    else this.dirs.delete(path);
  }

  /** The directory's mkdir failed. */
  failed(path: string, t: NegToken | null): void {
    if (t !== null && this.dirs.get(path) === t) this.dirs.delete(path);
  }

  /** Whether `name` in `parent` is known not to exist without asking. */
  knownAbsent(parent: string, name: string): boolean {
    const e = this.dirs.get(parent);
    if (!e || !e.ready || e.names.has(name)) return false;
    return this.fresh();
  }

  /** This client is about to make `name` in `parent` (in any way): lookups of it must ask. */
  mayExist(parent: string, name: string): void {
    const e = this.dirs.get(parent);
    if (!e) return;
    e.names.add(name);
    if (e.names.size > this.maxNames) this.dirs.delete(parent);
  }

  /** A brick says directory `path` changed (another client made or removed a name in it). */
  changed(path: string): void {
    this.dirs.delete(path);
  }

  /** `path` is renamed or removed: no entry for it or below. */
  gone(path: string): void {
    if (this.dirs.size === 0) return;
    const below = path === '/' ? '/' : `${path}/`;
    for (const k of [...this.dirs.keys()]) if (k === path || k.startsWith(below)) this.dirs.delete(k);
  }

  /** A brick forgot our watches (its connection went), or the bricks changed: nothing is known. */
  clear(): void {
    this.dirs.clear();
  }
}
