/** A volume spec: what a client needs to reach a volume. Stored as JSON by the CLI. */
export interface BrickSpec {
  /** Subvolume name, e.g. `vol-client-0`; linkto xattrs carry it. */
  name: string;
  host: string;
  port: number;
  /** The directory on the brick's host (informational for clients). */
  dir?: string;
}

export interface VolumeOptions {
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
}

export interface VolumeSpec {
  name: string;
  volumeId: string;
  secret: string;
  bricks: BrickSpec[];
  options?: VolumeOptions;
  /** Bricks being drained by remove-brick: they get no hash range and no new files. */
  decommissioned?: string[];
  /** Topology version: every add-brick and remove-brick step raises it. */
  version?: number;
}

/** What every brick keeps on its root so that clients learn about added and removed bricks. */
export interface Topology {
  version: number;
  bricks: BrickSpec[];
  decommissioned: string[];
}

export function validateTopology(t: unknown): Topology {
  const v = t as Topology;
  if (!v || !Number.isSafeInteger(v.version) || !Array.isArray(v.bricks) || !Array.isArray(v.decommissioned)) throw new Error('bad topology');
  for (const b of v.bricks) if (typeof b.name !== 'string' || typeof b.host !== 'string' || !Number.isInteger(b.port)) throw new Error('bad topology brick');
  return { version: v.version, bricks: v.bricks.map(({ name, host, port }) => ({ name, host, port })), decommissioned: v.decommissioned.filter((x) => typeof x === 'string') };
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
