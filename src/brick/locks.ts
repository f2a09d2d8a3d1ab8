/**
 * Inode and entry locks held by brick clients: shared (read) and exclusive (write), blocking or not.
 * Every hold belongs to a session and is dropped when the session closes.
 *
 * Bounded (wire/limits.ts): lock names (domains, entry names, owners) of `maxLockNameBytes` at most,
 * `maxLocksPerSession` holds and waits per session, in `maxLockDomains` domains at most (ENOLCK past
 * either; both per session, so that no client can use up what others need), and a blocking request waits `lockTimeoutMs` at most, then fails with EAGAIN
 * (GlusterFS's features.lock-timeout), so a lock held for ever by a live client stalls others for a
 * bounded time. A refusal for a limit carries `info.limit` (the limit's name) for the brick's log.
 */
import assert from 'node:assert';
import { FsError } from '../common/errors.js';
import type { Clock, Timer } from '../common/env.js';
import { LIMIT_DEFAULTS, type BrickLimits } from '../wire/limits.js';

export type LockMode = 'rd' | 'wr';

interface Waiter {
  owner: string;
  session: number;
  mode: LockMode;
  resolve(): void;
  reject(e: Error): void;
  timer: Timer | null;
}

interface LockState {
  domain: string;
  readers: Map<string, number>;
  writer: string | null;
  writerCount: number;
  queue: Waiter[];
  sessions: Map<string, number>;
}

type LockLimits = Pick<BrickLimits, 'maxLockNameBytes' | 'maxLocksPerSession' | 'maxLockDomains' | 'lockTimeoutMs'>;

function limitError(code: string, limit: keyof LockLimits, message: string): FsError {
  return new FsError(code, message, { limit });
}

export class LockTable {
  private locks = new Map<string, LockState>();
  /** Holds (each recursive hold counted) and waits per session, by domain. */
  private perSession = new Map<number, { n: number; domains: Map<string, number> }>();

  constructor(
    private readonly clock: Clock | null = null,
    private readonly limits: LockLimits = LIMIT_DEFAULTS,
  ) {}

  /** Refuses a domain, entry name or owner longer than the limit (bytes of UTF-8). */
  checkName(what: string, v: string): void {
    if (Buffer.byteLength(v) > this.limits.maxLockNameBytes) throw limitError('ENAMETOOLONG', 'maxLockNameBytes', `lock ${what} longer than ${this.limits.maxLockNameBytes} bytes`);
  }

  /** Refuses a new hold or wait past the session's limits. */
  private room(session: number, domain: string): void {
    const c = this.perSession.get(session);
    if (!c) return;
    if (c.n >= this.limits.maxLocksPerSession) {
      throw limitError('ENOLCK', 'maxLocksPerSession', `the session holds or waits for ${c.n} locks (limit ${this.limits.maxLocksPerSession})`);
    }
    if (!c.domains.has(domain) && c.domains.size >= this.limits.maxLockDomains) {
      throw limitError('ENOLCK', 'maxLockDomains', `the session uses ${c.domains.size} lock domains (limit ${this.limits.maxLockDomains})`);
    }
  }

  private count(session: number, domain: string, d: number): void {
    let c = this.perSession.get(session);
    if (!c) this.perSession.set(session, (c = { n: 0, domains: new Map() }));
    c.n += d;
    const k = (c.domains.get(domain) ?? 0) + d;
    assert.ok(c.n >= 0 && k >= 0, 'lock count of a session below zero');
    if (k === 0) c.domains.delete(domain);
    else c.domains.set(domain, k);
    if (c.n === 0) this.perSession.delete(session);
  }

  private state(key: string, domain: string): LockState {
    let s = this.locks.get(key);
    if (!s) {
      s = { domain, readers: new Map(), writer: null, writerCount: 0, queue: [], sessions: new Map() };
      this.locks.set(key, s);
    }
    return s;
  }

  private dropIfIdle(key: string, s: LockState): void {
    if (s.writer !== null || s.readers.size > 0 || s.queue.length > 0) return;
    if (this.locks.get(key) === s) this.locks.delete(key);
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

  /** Owners are unique strings; `session` is the connection that holds the lock; `domain` is the key's. */
  acquire(key: string, owner: string, session: number, mode: LockMode, block: boolean, domain = ''): Promise<void> | void {
    this.room(session, domain);
    const s = this.state(key, domain);
    if (s.queue.length === 0 && this.grantable(s, owner, mode)) {
      this.grant(s, owner, session, mode);
      this.count(session, domain, 1);
      return;
    }
    if (!block) {
      this.dropIfIdle(key, s);
      throw new FsError('EAGAIN', `lock ${key} is held`);
    }
    this.count(session, domain, 1);
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = { owner, session, mode, resolve, reject, timer: null };
      const ms = this.limits.lockTimeoutMs;
      if (this.clock && ms > 0) {
        w.timer = this.clock.setTimer(ms, () => {
          w.timer = null;
          const i = s.queue.indexOf(w);
          if (i < 0) return;
          s.queue.splice(i, 1);
          this.count(w.session, s.domain, -1);
          w.reject(limitError('EAGAIN', 'lockTimeoutMs', `lock not granted within ${ms} ms (lock-timeout)`));
          // Those behind it may be grantable now.
          this.wake(key, s);
        });
      }
      s.queue.push(w);
    });
  }

  release(key: string, owner: string): void {
    const s = this.locks.get(key);
    if (!s) throw new FsError('ENOLCK', `no lock ${key}`);
    const session = s.sessions.get(owner);
    if (s.writer === owner) {
      if (--s.writerCount === 0) s.writer = null;
    } else if (s.readers.has(owner)) {
      const n = s.readers.get(owner)! - 1;
      if (n === 0) s.readers.delete(owner);
      else s.readers.set(owner, n);
    } else {
      throw new FsError('ENOLCK', `lock ${key} is not held by this owner`);
    }
    if (session !== undefined) this.count(session, s.domain, -1);
    if (s.writer !== owner && !s.readers.has(owner)) s.sessions.delete(owner);
    this.wake(key, s);
  }

  private wake(key: string, s: LockState): void {
    while (s.queue.length > 0 && this.grantable(s, s.queue[0].owner, s.queue[0].mode)) {
      const w = s.queue.shift()!;
      w.timer?.cancel();
      this.grant(s, w.owner, w.session, w.mode);
      w.resolve();
    }
    this.dropIfIdle(key, s);
  }

  /** Drops every hold and wait of a session (its connection closed). */
  releaseSession(session: number): void {
    for (const [key, s] of [...this.locks]) {
      const mine = s.queue.filter((w) => w.session === session);
      s.queue = s.queue.filter((w) => w.session !== session);
      for (const w of mine) {
        w.timer?.cancel();
        w.reject(new FsError('ENOTCONN', 'session closed'));
      }
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
    this.perSession.delete(session);
  }

  held(key: string): { writer: string | null; readers: string[] } {
    const s = this.locks.get(key);
    return { writer: s?.writer ?? null, readers: s ? [...s.readers.keys()] : [] };
  }
}
