/**
 * The cluster's state in one file, for one host without etcd (the embedded default): the same
 * compare-and-set on revisions as etcd, made atomic between the processes of this host by a lock
 * file and a rename. A claim is held while its process lives (the host's processes are all it has to
 * tell apart); a watch polls the file.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { StoreError, type Change, type Claim, type Entry, type Event, type Store } from './store.js';
import { alive } from './proc.js';

interface Data {
  rev: number;
  keys: Record<string, { value: string; rev: number; holder?: number }>;
}

/** How long a process waits for another's lock on the file before it answers with an error. */
const LOCK_WAIT_MS = 10_000;
/** How often a watch looks at the file. */
const WATCH_POLL_MS = 200;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class LocalStore implements Store {
  readonly where: string;
  private readonly lockFile: string;
  private readonly claims = new Map<string, () => void>();

  constructor(readonly file: string) {
    this.where = `local ${file}`;
    this.lockFile = `${file}.lock`;
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  }

  private read(): Data {
    let d: Data;
    try {
      d = JSON.parse(fs.readFileSync(this.file, 'utf8')) as Data;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { rev: 0, keys: {} };
      throw new StoreError(this.where, `unreadable: ${(e as Error).message}`);
    }
    // Keys whose holder died are gone, as an etcd lease's keys are when it expires.
    for (const [k, v] of Object.entries(d.keys)) if (v.holder !== undefined && !alive(v.holder)) delete d.keys[k];
    return d;
  }

  /**
   * Takes the file's lock: a lock file made whole (a temp file holding our pid, linked to its name, which
   * fails while another holds it). A holder that died leaves it: whoever finds its pid gone renames it
   * away (one rename wins) and takes the lock afresh.
   */
  private async lock(): Promise<void> {
    const deadline = Date.now() + LOCK_WAIT_MS;
    const mine = `${this.lockFile}.${process.pid}.${Math.random().toString(36).slice(2)}`;
    fs.writeFileSync(mine, String(process.pid));
    try {
      for (;;) {
        try {
          fs.linkSync(mine, this.lockFile);
          return;
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new StoreError(this.where, (e as Error).message);
        }
        let holder = 0;
        try {
          holder = Number(fs.readFileSync(this.lockFile, 'utf8'));
        } catch {
          continue; // released meanwhile
        }
        if (holder > 0 && !alive(holder)) {
          const away = `${this.lockFile}.dead.${process.pid}`;
          try {
            fs.renameSync(this.lockFile, away);
            fs.rmSync(away, { force: true });
          } catch {
            /* another process cleared it first */
          }
          continue;
        }
        if (Date.now() > deadline) throw new StoreError(this.where, `locked by process ${holder || '?'} for ${LOCK_WAIT_MS / 1000} s`);
        await sleep(5);
      }
    } finally {
      fs.rmSync(mine, { force: true });
    }
  }

  private unlock(): void {
    try {
      if (Number(fs.readFileSync(this.lockFile, 'utf8')) === process.pid) fs.unlinkSync(this.lockFile);
    } catch {
      /* gone already */
    }
  }

  /** Runs `f` holding the file's lock; `write` says whether the data it changed is written back. */
  private async locked<T>(f: (d: Data) => { write: boolean; result: T }): Promise<T> {
    await this.lock();
    try {
      const d = this.read();
      const { write, result } = f(d);
      if (write) {
        const tmp = `${this.file}.${process.pid}.tmp`;
        fs.writeFileSync(tmp, JSON.stringify(d), { mode: 0o600 });
        fs.renameSync(tmp, this.file);
      }
      return result;
    } finally {
      this.unlock();
    }
  }

  async get(key: string): Promise<Entry | null> {
    const v = this.read().keys[key];
    return v ? { key, value: v.value, rev: v.rev } : null;
  }

  async list(prefix: string): Promise<Entry[]> {
    const d = this.read();
    return Object.keys(d.keys)
      .filter((k) => k.startsWith(prefix))
      .sort()
      .map((k) => ({ key: k, value: d.keys[k].value, rev: d.keys[k].rev }));
  }

  async commit(changes: Change[]): Promise<boolean> {
    assert.ok(changes.length > 0);
    return this.locked((d) => {
      for (const c of changes) {
        if (c.ifRev === undefined) continue;
        const cur = d.keys[c.key]?.rev ?? 0;
        if (cur !== c.ifRev) return { write: false, result: false };
      }
      d.rev++;
      for (const c of changes) {
        if (c.value === null) delete d.keys[c.key];
        else d.keys[c.key] = { value: c.value, rev: d.rev };
      }
      return { write: true, result: true };
    });
  }

  async claim(key: string, value: string, _ttlSec: number): Promise<Claim | null> {
    const got = await this.locked((d) => {
      if (d.keys[key]) return { write: false, result: false };
      d.rev++;
      d.keys[key] = { value, rev: d.rev, holder: process.pid };
      return { write: true, result: true };
    });
    if (!got) return null;
    let lose!: () => void;
    const lost = new Promise<void>((r) => (lose = r));
    this.claims.set(key, lose);
    return {
      key,
      lost,
      release: async () => {
        this.claims.delete(key);
        await this.locked((d) => {
          const mine = d.keys[key]?.holder === process.pid;
          if (mine) delete d.keys[key];
          return { write: mine, result: undefined };
        });
      },
    };
  }

  async watch(prefix: string, onEvent: (e: Event) => void): Promise<() => Promise<void>> {
    let seen = new Map((await this.list(prefix)).map((e) => [e.key, e]));
    let stopped = false;
    const poll = async () => {
      while (!stopped) {
        await sleep(WATCH_POLL_MS);
        if (stopped) break;
        const now = new Map((await this.list(prefix).catch(() => [...seen.values()])).map((e) => [e.key, e]));
        const keys = [...new Set([...seen.keys(), ...now.keys()])].sort();
        for (const k of keys) {
          const a = seen.get(k);
          const b = now.get(k);
          if (a?.rev !== b?.rev) onEvent({ key: k, entry: b ?? null });
        }
        seen = now;
      }
    };
    const running = poll();
    return async () => {
      stopped = true;
      await running;
    };
  }

  async close(): Promise<void> {
    this.claims.clear();
  }
}
