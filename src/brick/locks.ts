/**
 * Inode and entry locks held by brick clients: shared (read) and exclusive (write), blocking or not.
 * Every hold belongs to a session and is dropped when the session closes.
 */
import { FsError } from '../common/errors.js';

export type LockMode = 'rd' | 'wr';

interface Waiter {
  owner: string;
  session: number;
  mode: LockMode;
  resolve(): void;
  reject(e: Error): void;
}

interface LockState {
  readers: Map<string, number>;
  writer: string | null;
  writerCount: number;
  queue: Waiter[];
  sessions: Map<string, number>;
}

export class LockTable {
  private locks = new Map<string, LockState>();

  private state(key: string): LockState {
    let s = this.locks.get(key);
    if (!s) {
      s = { readers: new Map(), writer: null, writerCount: 0, queue: [], sessions: new Map() };
      this.locks.set(key, s);
    }
    return s;
  }

  private grantable(s: LockState, owner: string, mode: LockMode): boolean {
    if (mode === 'rd') return s.writer === null || s.writer === owner;
    const othersReading = [...s.readers.keys()].some((o) => o !== owner);
    return (s.writer === null || s.writer === owner) && !othersReading;
  }

  private grant(s: LockState, owner: string, session: number, mode: LockMode): void {
    if (mode === 'rd') s.readers.set(owner, (s.readers.get(owner) ?? 0) + 1);
    else {
      s.writer = owner;
      s.writerCount++;
    }
    s.sessions.set(owner, session);
  }

  /** Owners are unique strings; `session` is the connection that holds the lock. */
  acquire(key: string, owner: string, session: number, mode: LockMode, block: boolean): Promise<void> | void {
    const s = this.state(key);
    if (s.queue.length === 0 && this.grantable(s, owner, mode)) {
      this.grant(s, owner, session, mode);
      return;
    }
    if (!block) throw new FsError('EAGAIN', `lock ${key} is held`);
    return new Promise<void>((resolve, reject) => s.queue.push({ owner, session, mode, resolve, reject }));
  }

  release(key: string, owner: string): void {
    const s = this.locks.get(key);
    if (!s) throw new FsError('ENOLCK', `no lock ${key}`);
    if (s.writer === owner) {
      if (--s.writerCount === 0) s.writer = null;
    } else if (s.readers.has(owner)) {
      const n = s.readers.get(owner)! - 1;
      if (n === 0) s.readers.delete(owner);
      else s.readers.set(owner, n);
    } else {
      throw new FsError('ENOLCK', `lock ${key} is not held by this owner`);
    }
    if (s.writer !== owner && !s.readers.has(owner)) s.sessions.delete(owner);
    this.wake(key, s);
  }

  private wake(key: string, s: LockState): void {
    while (s.queue.length > 0 && this.grantable(s, s.queue[0].owner, s.queue[0].mode)) {
      const w = s.queue.shift()!;
      this.grant(s, w.owner, w.session, w.mode);
      w.resolve();
    }
    if (s.writer === null && s.readers.size === 0 && s.queue.length === 0) this.locks.delete(key);
  }

  /** Drops every hold and wait of a session (its connection closed). */
  releaseSession(session: number): void {
    for (const [key, s] of [...this.locks]) {
      const mine = s.queue.filter((w) => w.session === session);
      s.queue = s.queue.filter((w) => w.session !== session);
      for (const w of mine) w.reject(new FsError('ENOTCONN', 'session closed'));
      for (const [owner, sess] of [...s.sessions]) {
        if (sess !== session) continue;
        if (s.writer === owner) {
          s.writer = null;
          s.writerCount = 0;
        }
        s.readers.delete(owner);
        s.sessions.delete(owner);
      }
      this.wake(key, s);
    }
  }

  held(key: string): { writer: string | null; readers: string[] } {
    const s = this.locks.get(key);
    return { writer: s?.writer ?? null, readers: s ? [...s.readers.keys()] : [] };
  }
}
