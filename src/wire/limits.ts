/**
 * The bounds a brick puts on what its clients may hold of it: frame sizes before authentication, the
 * handshake deadline, reply bytes in flight, connections (all, per source address, unauthenticated),
 * open fds and locks. Each has a named default here; a brick process may override any of them from
 * its environment (`DHTFS_LIMIT_<NAME>`, read by server.ts, the edge). docs/SECURITY.md lists them.
 *
 * Pure: no IO. Time comes through the Clock, and logging through the caller's function.
 */
import type { Clock } from '../common/env.js';
import type { Conn } from './transport.js';

export interface BrickLimits {
  /** Largest frame before `hello` succeeds (a hello is a few hundred bytes). */
  preAuthMaxFrame: number;
  /** A connection that has not authenticated this long after it was accepted is closed. */
  handshakeMs: number;
  /**
   * Reply bytes a connection may owe at once (replies not yet taken by the socket, and the expected
   * size of the reads being served): past it the brick reads no more of its requests until it drops
   * to half.
   */
  maxUnsentBytes: number;
  /**
   * Reply bytes all connections of the brick may owe together: past it, a connection that owes anything
   * waits too (one that owes nothing is always served a request, so none starves).
   */
  maxUnsentBytesTotal: number;
  /** Connections per brick (authenticated or not): one more is refused. */
  maxConnections: number;
  /** Connections per source address. */
  maxConnectionsPerAddress: number;
  /** Unauthenticated connections per brick: one more evicts the oldest. */
  maxUnauthenticated: number;
  /** Unauthenticated connections per source address: one more evicts that address's oldest. */
  maxUnauthenticatedPerAddress: number;
  /** Open fds per session (connection). */
  maxFdsPerSession: number;
  /** Open fds of all sessions together (derived from the process's RLIMIT_NOFILE by server.ts). */
  maxFds: number;
  /** Bytes of a lock's domain name, an entry lock's name and a lock owner. */
  maxLockNameBytes: number;
  /** Locks one session holds or waits for. */
  maxLocksPerSession: number;
  /** Distinct lock domains one session uses at once (per session: a brick-wide count could be used up by one client). */
  maxLockDomains: number;
  /** How long a blocking lock request waits before it fails with EAGAIN (GlusterFS's features.lock-timeout). */
  lockTimeoutMs: number;
  /**
   * A synchronous storage call (metadata: the event loop waits for it) in progress longer than this is
   * a hung file system below the brick: a watchdog thread logs the call and its path and takes the
   * brick down (src/storage/health.ts). 0: never.
   */
  storageCallTimeoutMs: number;
  /**
   * How often the brick writes and fsyncs `.glusterfs/health_check` (GlusterFS's
   * storage.health-check-interval); a failure (EIO, EROFS, ...) takes the brick down. 0: never.
   */
  healthCheckIntervalMs: number;
  /** A health check's write and fsync not done by then takes the brick down (storage.health-check-timeout). */
  healthCheckTimeoutMs: number;
}

export const LIMIT_DEFAULTS: Readonly<BrickLimits> = Object.freeze({
  preAuthMaxFrame: 64 * 1024,
  handshakeMs: 10_000,
  maxUnsentBytes: 64 * 1024 * 1024,
  maxUnsentBytesTotal: 512 * 1024 * 1024,
  maxConnections: 4096,
  maxConnectionsPerAddress: 1024,
  maxUnauthenticated: 256,
  maxUnauthenticatedPerAddress: 32,
  maxFdsPerSession: 4096,
  maxFds: 16384,
  maxLockNameBytes: 256,
  maxLocksPerSession: 1024,
  maxLockDomains: 16,
  lockTimeoutMs: 30_000,
  storageCallTimeoutMs: 30_000,
  healthCheckIntervalMs: 30_000,
  healthCheckTimeoutMs: 20_000,
});

/** The environment variable that overrides a limit: maxUnsentBytes -> DHTFS_LIMIT_MAX_UNSENT_BYTES. */
export function limitEnvName(k: keyof BrickLimits): string {
  return 'DHTFS_LIMIT_' + k.replace(/[A-Z]/g, (c) => '_' + c).toUpperCase();
}

/** Limits from the defaults, `base` (derived ones) and then an environment's overrides (non-negative integers). */
export function limitsFrom(env: Record<string, string | undefined>, base: Partial<BrickLimits> = {}): BrickLimits {
  const out = { ...LIMIT_DEFAULTS, ...base } as BrickLimits;
  for (const k of Object.keys(LIMIT_DEFAULTS) as (keyof BrickLimits)[]) {
    const v = env[limitEnvName(k)];
    if (v === undefined || v === '') continue;
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${limitEnvName(k)}=${v}: a non-negative integer is needed`);
    out[k] = n;
  }
  return out;
}

/** Cuts attacker-controlled text for a log line. */
export function clip(s: string, max = 200): string {
  return s.length <= max ? s : `${s.slice(0, max)}... (${s.length} chars)`;
}

export type WarnFn = (msg: string, extra?: Record<string, unknown>) => void;

/**
 * One warning per limit per interval: the first hit is logged at once (naming the client), later ones
 * within the interval are counted and reported with the next line. A flood cannot fill the log.
 */
export class LimitLog {
  private last = new Map<string, { at: number; suppressed: number }>();
  constructor(
    private readonly clock: Clock,
    private readonly warn: WarnFn,
    private readonly intervalMs = 10_000,
  ) {}

  hit(limit: string, client: { remote: string; client?: string }, detail: string): void {
    const who = `${client.remote}${client.client ? ` (client '${clip(client.client, 64)}')` : ''}`;
    this.line(`limit:${limit}`, `limit ${limit} hit by ${who}: ${clip(detail)}`, { limit, remote: client.remote, client: client.client ? clip(client.client, 64) : undefined });
  }

  /** Any warning, at most one per `key` per interval (later ones counted and reported with the next). */
  line(key: string, msg: string, extra?: Record<string, unknown>): void {
    const now = this.clock.now();
    const l = this.last.get(key);
    if (l && now - l.at < this.intervalMs) {
      l.suppressed++;
      return;
    }
    const more = l && l.suppressed > 0 ? ` (${l.suppressed} more like it since the last line)` : '';
    if (this.last.size > 1000) this.last.clear(); // keys are few; never let them grow
    this.last.set(key, { at: now, suppressed: 0 });
    this.warn(`${msg}${more}`, extra);
  }
}

/** The source address of a remote "host:port" (IPv6 hosts keep their colons). */
export function addressOf(remote: string): string {
  const i = remote.lastIndexOf(':');
  return i > 0 ? remote.slice(0, i) : remote;
}

interface Tracked {
  conn: Conn;
  addr: string;
  authenticated: boolean;
}

/**
 * Counts a brick's connections. A new connection over the total or its address's limit is refused;
 * over the unauthenticated limits, the oldest unauthenticated one (of its address, or of all) makes
 * room, so idle sockets that never authenticate cannot keep a real client out: it authenticates within
 * a round trip, long before it would be the oldest.
 */
export class ConnectionGate {
  private all = new Set<Tracked>();
  private perAddr = new Map<string, number>();
  /** Unauthenticated connections, oldest first (a Set keeps insertion order). */
  private unauth = new Set<Tracked>();
  private unauthPerAddr = new Map<string, Set<Tracked>>();

  constructor(
    private readonly limits: BrickLimits,
    private readonly log: LimitLog,
  ) {}

  get size(): number {
    return this.all.size;
  }

  /** Admits a new connection (or closes it): the returned marks are called at authentication and close. */
  admit(conn: Conn): { authenticated(): void; closed(): void } | null {
    const addr = addressOf(conn.remote);
    const L = this.limits;
    if (this.all.size >= L.maxConnections) {
      this.log.hit('maxConnections', { remote: conn.remote }, `${this.all.size} connections (limit ${L.maxConnections}); refused`);
      conn.close('too many connections');
      return null;
    }
    if ((this.perAddr.get(addr) ?? 0) >= L.maxConnectionsPerAddress) {
      this.log.hit('maxConnectionsPerAddress', { remote: conn.remote }, `${this.perAddr.get(addr)} connections from ${addr} (limit ${L.maxConnectionsPerAddress}); refused`);
      conn.close('too many connections from this address');
      return null;
    }
    const mine = this.unauthPerAddr.get(addr);
    if (mine && mine.size >= L.maxUnauthenticatedPerAddress) {
      const old = mine.values().next().value as Tracked;
      this.log.hit('maxUnauthenticatedPerAddress', { remote: conn.remote }, `${mine.size} unauthenticated connections from ${addr} (limit ${L.maxUnauthenticatedPerAddress}); closing the oldest`);
      this.forget(old);
      old.conn.close('evicted: too many unauthenticated connections from this address');
    }
    if (this.unauth.size >= L.maxUnauthenticated) {
      const old = this.unauth.values().next().value as Tracked;
      this.log.hit('maxUnauthenticated', { remote: conn.remote }, `${this.unauth.size} unauthenticated connections (limit ${L.maxUnauthenticated}); closing the oldest`);
      this.forget(old);
      old.conn.close('evicted: too many unauthenticated connections');
    }
    const t: Tracked = { conn, addr, authenticated: false };
    this.all.add(t);
    this.perAddr.set(addr, (this.perAddr.get(addr) ?? 0) + 1);
    this.unauth.add(t);
    let s = this.unauthPerAddr.get(addr);
    if (!s) this.unauthPerAddr.set(addr, (s = new Set()));
    s.add(t);
    return {
      authenticated: () => {
        if (!this.all.has(t) || t.authenticated) return;
        t.authenticated = true;
        this.dropUnauth(t);
      },
      closed: () => this.forget(t),
    };
  }

  private dropUnauth(t: Tracked): void {
    this.unauth.delete(t);
    const s = this.unauthPerAddr.get(t.addr);
    if (s) {
      s.delete(t);
      if (s.size === 0) this.unauthPerAddr.delete(t.addr);
    }
  }

  private forget(t: Tracked): void {
    if (!this.all.delete(t)) return;
    this.dropUnauth(t);
    const n = (this.perAddr.get(t.addr) ?? 1) - 1;
    if (n <= 0) this.perAddr.delete(t.addr);
    else this.perAddr.set(t.addr, n);
  }
}

/**
 * The bricks' limits that `volume set limit.NAME N` changes on every brick at once (the
 * lock-timeout is `features.lock-timeout`, in seconds). -1: the brick's own value (its default, derived
 * from its fd limit where it is, or its DHTFS_LIMIT_* environment).
 */
export type LimitKey = Exclude<keyof BrickLimits, 'lockTimeoutMs'>;
export const LIMIT_OPTION_KEYS: readonly LimitKey[] = [
  'preAuthMaxFrame',
  'handshakeMs',
  'maxUnsentBytes',
  'maxConnections',
  'maxConnectionsPerAddress',
  'maxUnauthenticated',
  'maxUnauthenticatedPerAddress',
  'maxFdsPerSession',
  'maxFds',
  'maxLockNameBytes',
  'maxLocksPerSession',
  'maxLockDomains',
  'storageCallTimeoutMs',
  'healthCheckIntervalMs',
  'healthCheckTimeoutMs',
];
