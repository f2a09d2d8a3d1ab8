/** A volume spec: what a client needs to reach a volume. Stored as JSON by the CLI. */
import { LIMIT_OPTION_KEYS, type LimitKey } from '../wire/limits.js';

export interface BrickSpec {
  /** Subvolume name, e.g. `vol-client-0`; linkto xattrs carry it. */
  name: string;
  host: string;
  port: number;
  /** The directory on the brick's host (informational for clients). */
  dir?: string;
}

/** Also the bricks' limits set with `volume set limit.NAME` (see LIMIT_OPTION_KEYS). */
export interface VolumeOptions extends Partial<Record<LimitKey, number>> {
  /** Percent of the brick when < 100, else bytes. GlusterFS default: 10%. */
  minFreeDisk?: number;
  /** Percent of inodes. GlusterFS default: 5%. */
  minFreeInodes?: number;
  /** Look up only the hashed brick when the directory's layout is committed (GlusterFS default on). */
  lookupOptimize?: boolean;
  /** Layout ranges proportional to brick size (default on). */
  weightedRebalance?: boolean;
  /** Regex source; its first group is hashed. `null` disables. Default: GlusterFS's rsync regex. */
  rsyncHashRegex?: string | null;
  extraHashRegex?: string | null;
  /**
   * `safe` (default): dhtfs's protocol. `legacy`: GlusterFS's order and client rules (phase bits in mode,
   * writes mirrored in phase 1, reads ignoring phase 1), kept to show its stale read on the real system.
   */
  migrationProtocol?: 'safe' | 'legacy';
  /**
   * Seconds a brick with calls in flight may stay silent (no reply, no answer to a ping) before a client
   * cuts its connection and its calls fail with ENOTCONN: GlusterFS's network.ping-timeout (default 42).
   * 0: wait for ever.
   */
  pingTimeout?: number;
  /**
   * Seconds a brick lets a blocking lock request wait before it fails with EAGAIN: GlusterFS's
   * features.lock-timeout (bricks: 30). 0: for ever. Taken up by the bricks, not the clients.
   */
  lockTimeout?: number;
  /**
   * `transport.tls on`: the bricks accept only TLS 1.3 clients with a certificate of the volume's CA
   * (wire/tls.ts); the HMAC handshake runs inside. Taken up by bricks when they (re)start.
   */
  tls?: boolean;
}

/** A client's TLS files (PEM paths): the CA bricks are checked against, its certificate and key. */
export interface SpecTls {
  ca: string;
  cert: string;
  key: string;
  /** The CA's CRL: a brick whose certificate it revokes is refused. */
  crl?: string;
}

export interface VolumeSpec {
  name: string;
  volumeId: string;
  secret: string;
  /**
   * The volume's administrative secret: clients holding it may change the volume (topology, commit
   * hash). Kept in the CLI's state on the volume's hosts; `volume spec` leaves it out.
   */
  adminSecret?: string;
  bricks: BrickSpec[];
  options?: VolumeOptions;
  /** Bricks being drained by remove-brick: they get no hash range and no new files. */
  decommissioned?: string[];
  /** Topology version: every add-brick and remove-brick step raises it. */
  version?: number;
  /** This client's TLS files, for a volume with `options.tls` (or ConnectOptions.tlsDir). */
  tls?: SpecTls;
}

/** What every brick keeps on its root so that clients learn about added and removed bricks. */
export interface Topology {
  version: number;
  bricks: BrickSpec[];
  decommissioned: string[];
  /** The options a running client takes up (`volume set`); absent: the spec's. */
  options?: LiveOptions;
}

export { LIMIT_OPTION_KEYS, type LimitKey } from '../wire/limits.js';

/** The options `volume set` changes, and every client connected adopts with the next topology. */
export type LiveOptions = Pick<VolumeOptions, 'minFreeDisk' | 'minFreeInodes' | 'lookupOptimize' | 'pingTimeout' | 'lockTimeout'> & Partial<Record<LimitKey, number>>;

/** Their defaults (GlusterFS's; -1 for a limit: the brick's own). */
export const LIVE_DEFAULTS: Required<LiveOptions> = {
  minFreeDisk: 10,
  minFreeInodes: 5,
  lookupOptimize: true,
  pingTimeout: 42,
  lockTimeout: 30,
  ...(Object.fromEntries(LIMIT_OPTION_KEYS.map((k) => [k, -1])) as Record<LimitKey, number>),
};

/** `o` with every live option, a default where `o` has none. */
export function liveOptionsIn(o: VolumeOptions | undefined): Required<LiveOptions> {
  const keys = Object.keys(LIVE_DEFAULTS) as (keyof LiveOptions)[];
  return Object.fromEntries(keys.map((k) => [k, o?.[k] ?? LIVE_DEFAULTS[k]])) as Required<LiveOptions>;
}

/** `volume set` keys (GlusterFS's names, and short ones) and how each value is read. */
export const LIVE_OPTIONS: Record<string, { key: keyof LiveOptions; parse: (v: string) => number | boolean; help: string }> = {
  'cluster.min-free-disk': { key: 'minFreeDisk', parse: nonNegative, help: 'percent (< 100) or bytes kept free on each brick (10)' },
  'cluster.min-free-inodes': { key: 'minFreeInodes', parse: nonNegative, help: 'percent of inodes kept free on each brick (5)' },
  'cluster.lookup-optimize': { key: 'lookupOptimize', parse: onOff, help: 'on: an absent name is looked for on its hashed brick only (on)' },
  'network.ping-timeout': { key: 'pingTimeout', parse: nonNegative, help: 'seconds a silent brick with calls in flight is waited for (42; 0: for ever)' },
  'features.lock-timeout': { key: 'lockTimeout', parse: nonNegative, help: 'seconds a brick lets a blocking lock request wait before EAGAIN (30; 0: for ever)' },
  ...Object.fromEntries(LIMIT_OPTION_KEYS.map((k) => [`limit.${k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())}`, { key: k, parse: limitValue, help: `brick limit ${k} (docs/SECURITY.md; -1: the brick's own)` }])),
};

function limitValue(v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isSafeInteger(n) || n < -1) throw new Error(`${v}: not a whole number of 0 or more (or -1: the brick's own)`);
  return n;
}

function nonNegative(v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n < 0) throw new Error(`${v}: not a number of 0 or more`);
  return n;
}

function onOff(v: string): boolean {
  if (/^(on|true|yes|enable|1)$/i.test(v)) return true;
  if (/^(off|false|no|disable|0)$/i.test(v)) return false;
  throw new Error(`${v}: not on or off`);
}

/** The option `name` names: a GlusterFS key, its last part, or the spec's own name. */
export function liveOption(name: string): { name: string; key: keyof LiveOptions; parse: (v: string) => number | boolean; help: string } {
  for (const [full, o] of Object.entries(LIVE_OPTIONS)) if (name === full || name === full.split('.')[1] || name === o.key) return { name: full, ...o };
  throw new Error(`unknown option ${name}; options: ${Object.keys(LIVE_OPTIONS).join(', ')}`);
}

/** The live options in `o` that are well formed, of their defaults' types (anything else is left out). */
function liveOptionsOf(o: unknown): LiveOptions | undefined {
  if (!o || typeof o !== 'object') return undefined;
  const src = o as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [k, d] of Object.entries(LIVE_DEFAULTS)) {
    const v = src[k];
    if (typeof v === typeof d && (typeof v !== 'number' || (Number.isFinite(v) && v >= 0))) out[k] = v;
  }
  return out as LiveOptions;
}

export function validateTopology(t: unknown): Topology {
  const v = t as Topology;
  if (!v || !Number.isSafeInteger(v.version) || !Array.isArray(v.bricks) || !Array.isArray(v.decommissioned)) throw new Error('bad topology');
  for (const b of v.bricks) if (typeof b.name !== 'string' || typeof b.host !== 'string' || !Number.isInteger(b.port)) throw new Error('bad topology brick');
  const options = liveOptionsOf((v as { options?: unknown }).options);
  return { version: v.version, bricks: v.bricks.map(({ name, host, port }) => ({ name, host, port })), decommissioned: v.decommissioned.filter((x) => typeof x === 'string'), ...(options ? { options } : {}) };
}

export function validateSpec(s: unknown): VolumeSpec {
  const v = s as VolumeSpec;
  if (!v || typeof v.name !== 'string' || typeof v.volumeId !== 'string' || typeof v.secret !== 'string' || !Array.isArray(v.bricks)) {
    throw new Error('volume spec needs name, volumeId, secret and bricks');
  }
  if (v.bricks.length === 0) throw new Error('volume spec has no bricks');
  const names = new Set<string>();
  for (const b of v.bricks) {
    if (typeof b.name !== 'string' || typeof b.host !== 'string' || !Number.isInteger(b.port)) throw new Error(`bad brick entry ${JSON.stringify(b)}`);
    if (names.has(b.name)) throw new Error(`duplicate brick name ${b.name}`);
    names.add(b.name);
  }
  return v;
}
