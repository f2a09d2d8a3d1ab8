/**
 * Directory watches, for clients' negative-lookup caches (DhtClient, "negative lookups"; GlusterFS's
 * nl-cache does the same with upcalls). A client that makes a directory asks each brick to watch it; it
 * then knows every name that can be in it (none, plus those it makes itself) and answers a lookup of
 * any other name with ENOENT without asking a brick. A brick tells a watcher, once, when another
 * connection changes a name in the directory, or when anyone renames or removes the directory or a
 * directory above it; the watch is then gone.
 *
 * The brick changes names only through `watchedStorage`, which reports every change: no operation, heal
 * or migration step can change a watched directory unseen.
 */
import type { Storage } from '../storage/storage.js';
import { O_CREAT } from '../storage/storage.js';
import { DIR_CHANGED, type DirChanged } from '../wire/types.js';
import type { Clock } from '../common/env.js';

/** A connection that can watch directories. */
export interface Watcher {
  /** Sends the connection an event (the wire's EVENT message). */
  notify(kind: string, payload: unknown): void;
  /** The directories it watches (brick-relative paths), oldest first. */
  watching: Set<string>;
}

/** Watches one connection may hold; the oldest goes (and its watcher is told) to make room. */
export const MAX_WATCHES_PER_CONNECTION = 4096;

/**
 * How long a change waits for a watcher to acknowledge the news. A watcher that has not answered by then
 * has heard nothing from this brick for that long, so its client no longer trusts its cache
 * (DhtClient's NEG_FRESH_MS is half of this).
 */
export const ACK_WAIT_MS = 2000;

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };
const settledOk = (value: unknown): Outcome => ({ ok: true, value });
const settledFailed = (error: unknown): Outcome => ({ ok: false, error });

export class DirWatches {
  private byDir = new Map<string, Set<Watcher>>();
  /** The connection whose request is running: a change it makes itself is no news to it. */
  private origin: Watcher | null = null;
  /** While a request runs: the acknowledgements its reply waits for. */
  private acks: Promise<void>[] | null = null;
  private inRequest = false;
  private nextId = 1;
  private waiting = new Map<number, () => void>();

  constructor(private readonly clock: Clock) {}

  /**
   * Runs a request of `origin`'s. If it changed names that other connections watch, its reply waits until
   * each of them has acknowledged the news (or ACK_WAIT_MS): when the change is seen done, no watcher
   * answers from a cache that misses it. Changes made after the request first waits are told all the
   * same (the origin too), without that wait.
   */
  run(origin: Watcher, fn: () => unknown): unknown {
    this.origin = origin;
    this.inRequest = true;
    let r: unknown;
    let err: unknown;
    let threw = false;
    try {
      r = fn();
    } catch (e) {
      threw = true;
      err = e;
    } finally {
      this.origin = null;
      this.inRequest = false;
    }
    const acks = this.acks;
    this.acks = null;
    if (!acks) {
      if (threw) throw err;
      return r;
    }
    if (threw) return Promise.all(acks).then(() => Promise.reject(err));
    // A request still running (`r` a promise) may fail while the acknowledgements are awaited: its outcome
    // is taken now, so that its rejection is never one without a handler (which ends the process).
    const outcome = r instanceof Promise ? r.then(settledOk, settledFailed) : settledOk(r);
    return Promise.all([Promise.all(acks), outcome]).then(([, o]) => {
      if (!o.ok) throw o.error;
      return o.value;
    });
  }

  /**
   * For a request that waits before it changes names (a migration about to settle): `fn`, to run later
   * as part of the same request, its reply waiting for acknowledgements as in `run`.
   */
  resumed<T>(fn: () => T | Promise<T>): () => T | Promise<T> {
    const origin = this.origin;
    return origin ? () => this.run(origin, fn) as T | Promise<T> : fn;
  }

  /** A watcher's acknowledgement of event `id`. */
  ack(id: number): void {
    const f = this.waiting.get(id);
    if (f) f();
  }

  /** `w` watches directory `rel` from now on. */
  add(w: Watcher, rel: string): void {
    if (w.watching.has(rel)) return;
    if (w.watching.size >= MAX_WATCHES_PER_CONNECTION) {
      const oldest = w.watching.values().next().value as string;
      this.forget(w, oldest);
      this.tell(w, oldest, false);
    }
    w.watching.add(rel);
    let ws = this.byDir.get(rel);
    if (!ws) this.byDir.set(rel, (ws = new Set()));
    ws.add(w);
  }

  /** The connection closed: its watches go with it. */
  drop(w: Watcher): void {
    for (const rel of [...w.watching]) this.forget(w, rel);
  }

  /**
   * A name in directory `dir` was made, removed or replaced: its watchers but the origin are told
   * (`everyone`: the origin too).
   */
  changedIn(dir: string, everyone = false): void {
    const ws = this.byDir.get(dir);
    if (!ws) return;
    for (const w of [...ws]) {
      if (w === this.origin && !everyone) continue;
      this.forget(w, dir);
      this.tell(w, dir, false);
    }
  }

  /** Directory `rel` was renamed or removed (or was a file): the watchers of it and below, origin too. */
  gone(rel: string): void {
    if (this.byDir.size === 0) return;
    const below = rel === '' ? '' : `${rel}/`;
    const told = new Set<Watcher>();
    for (const [dir, ws] of [...this.byDir]) {
      if (dir !== rel && !dir.startsWith(below)) continue;
      for (const w of [...ws]) {
        this.forget(w, dir);
        told.add(w);
      }
    }
    for (const w of told) this.tell(w, rel, true);
  }

  private forget(w: Watcher, rel: string): void {
    w.watching.delete(rel);
    const ws = this.byDir.get(rel);
    ws?.delete(w);
    if (ws?.size === 0) this.byDir.delete(rel);
  }

  private tell(w: Watcher, rel: string, subtree: boolean): void {
    const id = this.nextId++;
    w.notify(DIR_CHANGED, { path: `/${rel}`, subtree, id } satisfies DirChanged);
    if (!this.inRequest) return;
    (this.acks ??= []).push(
      new Promise<void>((resolve) => {
        const t = this.clock.setTimer(ACK_WAIT_MS, () => done());
        const done = () => {
          t.cancel();
          this.waiting.delete(id);
          resolve();
        };
        this.waiting.set(id, done);
      }),
    );
  }
}

function parentOf(rel: string): string {
  const i = rel.lastIndexOf('/');
  return i < 0 ? '' : rel.slice(0, i);
}

/**
 * `st`, reporting each change of a name outside `internal` paths (the brick's handle directory) to
 * `watches` once the change is made.
 */
export function watchedStorage(st: Storage, watches: DirWatches, internal: (rel: string) => boolean): Storage {
  const changed = (rel: string) => {
    if (!internal(rel)) watches.changedIn(parentOf(rel));
  };
  const gone = (rel: string) => {
    if (!internal(rel)) watches.gone(rel);
  };
  const w: Storage = {
    lstat: (p) => st.lstat(p),
    mkdir: (p, mode) => {
      st.mkdir(p, mode);
      changed(p);
    },
    rmdir: (p) => {
      st.rmdir(p);
      gone(p);
      changed(p);
    },
    unlink: (p) => {
      st.unlink(p);
      changed(p);
    },
    rename: (from, to) => {
      st.rename(from, to);
      gone(from);
      gone(to);
      changed(from);
      changed(to);
    },
    link: (existing, p) => {
      st.link(existing, p);
      changed(p);
    },
    symlink: (target, p) => {
      st.symlink(target, p);
      changed(p);
    },
    readlink: (p) => st.readlink(p),
    readdir: (p) => st.readdir(p),
    chmod: (p, mode) => st.chmod(p, mode),
    lchown: (p, uid, gid) => st.lchown(p, uid, gid),
    lutimes: (p, atime, mtime) => st.lutimes(p, atime, mtime),
    truncate: (p, size) => st.truncate(p, size),
    getxattr: (p, name) => st.getxattr(p, name),
    setxattr: (p, name, value) => st.setxattr(p, name, value),
    removexattr: (p, name) => st.removexattr(p, name),
    listxattr: (p) => st.listxattr(p),
    open: (p, flags, mode) => {
      const h = st.open(p, flags, mode);
      if (flags & O_CREAT) changed(p);
      return h;
    },
    close: (h) => st.close(h),
    fstat: (h) => st.fstat(h),
    ftruncate: (h, size) => st.ftruncate(h, size),
    read: (h, offset, length, into) => st.read(h, offset, length, into),
    write: (h, offset, data) => st.write(h, offset, data),
    fsync: (h, datasync) => st.fsync(h, datasync),
    statfs: () => st.statfs(),
  };
  // The optional parts, where `st` has them. `peer` and `copyRange` deal in the storages themselves.
  if (st.localName) w.localName = () => st.localName!();
  if (st.peer) w.peer = (name) => st.peer!(name);
  if (st.copyRange) w.copyRange = (peer, from, h, offset, length) => st.copyRange!(peer, from, h, offset, length);
  if (st.syncAll) w.syncAll = (h) => st.syncAll!(h);
  if (st.lock) w.lock = (h, byte, mode) => st.lock!(h, byte, mode);
  if (st.seekData) w.seekData = (h, offset, hole) => st.seekData!(h, offset, hole);
  if (st.exchange) {
    w.exchange = (from, to) => {
      st.exchange!(from, to);
      gone(from);
      gone(to);
      changed(from);
      changed(to);
    };
  }
  if (st.fsetattr) w.fsetattr = (h, o) => st.fsetattr!(h, o);
  if (st.pinDir) w.pinDir = (p) => st.pinDir!(p);
  if (st.fallocate) w.fallocate = (h, mode, offset, length) => st.fallocate!(h, mode, offset, length);
  if (st.mknod) {
    w.mknod = (p, mode, rdev) => {
      st.mknod!(p, mode, rdev);
      changed(p);
    };
  }
  return w;
}
