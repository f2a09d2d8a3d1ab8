/**
 * Per-directory layouts: one hash range per brick on the 32-bit ring, GlusterFS's conventions
 * (shared/reference/glusterfs-dht.md §1.2-§1.4). Pure functions only.
 */
import { dhtHash, type HashOptions } from './hash.js';

export const RING_MAX = 0xffffffff;
/** Layout type 0: DHT_HASH_TYPE_DM (normal); 1: DM_USER (set by hand, fix-layout leaves it alone). */
export const HASH_TYPE_DM = 0;
export const HASH_TYPE_DM_USER = 1;
/** Commit hash value meaning "no valid commit hash". */
export const COMMIT_HASH_INVALID = 1;

/** One brick's range in one directory's layout. A range of 0-0 means "no range". */
export interface LayoutRange {
  commit: number;
  type: number;
  start: number;
  stop: number;
}

export interface LayoutEntry extends LayoutRange {
  brick: string;
}

export type Layout = LayoutEntry[];

export function isEmptyRange(r: LayoutRange): boolean {
  return r.start === 0 && r.stop === 0;
}

/** The 16-byte on-disk xattr value: four big-endian uint32 [commit, type, start, stop]. */
export function encodeRange(r: LayoutRange): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt32BE(r.commit >>> 0, 0);
  b.writeUInt32BE(r.type >>> 0, 4);
  b.writeUInt32BE(r.start >>> 0, 8);
  b.writeUInt32BE(r.stop >>> 0, 12);
  return b;
}

export function decodeRange(b: Uint8Array): LayoutRange {
  if (b.length !== 16) throw new Error(`layout xattr must be 16 bytes, got ${b.length}`);
  const v = Buffer.from(b.buffer, b.byteOffset, 16);
  const r = { commit: v.readUInt32BE(0), type: v.readUInt32BE(4), start: v.readUInt32BE(8), stop: v.readUInt32BE(12) };
  if (r.type !== HASH_TYPE_DM && r.type !== HASH_TYPE_DM_USER) throw new Error(`unknown layout type ${r.type}`);
  if (r.start > r.stop) throw new Error(`layout start ${r.start} > stop ${r.stop}`);
  return r;
}

export function sameRange(a: LayoutRange | null | undefined, b: LayoutRange | null | undefined): boolean {
  if (!a || !b) return !a && !b;
  return a.commit === b.commit && a.type === b.type && a.start === b.start && a.stop === b.stop;
}

/** strcmp order on names, as GlusterFS sorts subvolumes. */
export function byName(a: { name: string }, b: { name: string }): number {
  const x = Buffer.from(a.name);
  const y = Buffer.from(b.name);
  return Buffer.compare(x, y);
}

export interface BrickWeight {
  name: string;
  /** Brick size in 1 MiB chunks; 0 = unknown (falls back to an equal split). */
  weight: number;
}

export interface NewLayoutOptions {
  commit: number;
  weighted?: boolean;
  hash?: HashOptions;
}

/**
 * Ranges for a new directory (dht_selfheal_layout_new_directory): bricks sorted by name, the start
 * brick rotated by the hash of the directory's path, ranges proportional to brick size, the last
 * assigned brick's stop forced to the ring's end. Every brick of `bricks` gets a range.
 */
export function newLayout(bricks: BrickWeight[], dirPath: string, opts: NewLayoutOptions): Layout {
  const sorted = [...bricks].sort(byName);
  const n = sorted.length;
  if (n === 0) return [];
  const weighted = opts.weighted !== false && sorted.every((b) => b.weight > 0);
  const total = weighted ? sorted.reduce((s, b) => s + b.weight, 0) : n;
  const chunk = RING_MAX / total;
  const startIdx = dhtHash(dirPath, opts.hash) % n;
  const out: Layout = [];
  let next = 0;
  for (let k = 0; k < n; k++) {
    const b = sorted[(startIdx + k) % n];
    const size = Math.floor(chunk * (weighted ? b.weight : 1));
    const start = next;
    let stop = k === n - 1 ? RING_MAX : start + size - 1;
    if (stop > RING_MAX) stop = RING_MAX;
    out.push({ brick: b.name, start, stop, commit: opts.commit, type: HASH_TYPE_DM });
    next = stop + 1;
  }
  return out;
}

/** dht_layout_search: the brick whose range holds the hash; first match wins. */
export function searchLayout(layout: Layout, hash: number): string | null {
  for (const e of layout) {
    if (isEmptyRange(e)) continue;
    if (e.start <= hash && hash <= e.stop) return e.brick;
  }
  return null;
}

export interface LayoutAnomalies {
  holes: number;
  overlaps: number;
  /** Sum of the lengths of all holes, in hash values. */
  holeSize: number;
}

/** dht_layout_normalize's counting: sort by start, find holes and overlaps on the ring. */
export function checkLayout(layout: Layout): LayoutAnomalies {
  const ranges = layout.filter((e) => !isEmptyRange(e)).sort((a, b) => a.start - b.start);
  let holes = 0;
  let overlaps = 0;
  let holeSize = 0;
  let expect = 0;
  for (const r of ranges) {
    if (r.start > expect) {
      holes++;
      holeSize += r.start - expect;
    } else if (r.start < expect) {
      overlaps++;
    }
    expect = Math.max(expect, r.stop + 1);
  }
  if (expect <= RING_MAX) {
    holes++;
    holeSize += RING_MAX + 1 - expect;
  }
  return { holes, overlaps, holeSize };
}

/** Directory commit hash after merge: the first entry's, or INVALID if entries disagree. */
export function layoutCommit(layout: Layout): number {
  if (layout.length === 0) return COMMIT_HASH_INVALID;
  const c = layout[0].commit;
  return layout.every((e) => e.commit === c) ? c : COMMIT_HASH_INVALID;
}
