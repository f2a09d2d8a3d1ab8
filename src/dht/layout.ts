/**
 * Per-directory layouts: one hash range per brick on the 32-bit ring, GlusterFS's conventions
 * (shared/reference/glusterfs-dht.md §1.2-§1.4). Pure functions only.
 */
import assert from 'node:assert';
import { dhtHash, type HashOptions } from './hash.js';

export const RING_MAX = 0xffffffff;
// The on-disk record format (shared with the brick): wire/layout-xattr.ts.
export { HASH_TYPE_DM, HASH_TYPE_DM_USER, COMMIT_HASH_INVALID, MAX_RANGES_PER_BRICK, isEmptyRange, encodeRange, decodeRange, sameRange, encodeRanges, decodeRanges, sameRanges, type LayoutRange } from '../wire/layout-xattr.js';
import { COMMIT_HASH_INVALID, EMPTY_RANGE, HASH_TYPE_DM, isEmptyRange, type LayoutRange } from '../wire/layout-xattr.js';

export interface LayoutEntry extends LayoutRange {
  brick: string;
}

export type Layout = LayoutEntry[];

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
  return assertWhole(out);
}

/**
 * A layout this module made: its ranges (empty ones aside), sorted by start, never overlap and leave no
 * hole on the ring. Asserted: a layout that breaks it would lose or double names.
 */
function assertWhole(layout: Layout): Layout {
  if (layout.length === 0) return layout; // no bricks
  const a = checkLayout(layout);
  assert.ok(a.holes === 0 && a.overlaps === 0, `layout made with ${a.holes} holes and ${a.overlaps} overlaps: ${JSON.stringify(layout)}`);
  for (const e of layout) assert.ok(isEmptyRange(e) || e.start <= e.stop, `layout range ${e.start}..${e.stop} of ${e.brick}`);
  return layout;
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

// ---------------------------------------------------------------------------------------------------
// Several ranges per brick. GlusterFS gives a brick one range per directory; dhtfs allows several, so
// that a layout change moves only what it must. The xattr holds one 16-byte record per range: a brick
// with one range has exactly GlusterFS's value.

/** A brick's ranges in a layout (possibly none). */
export function rangesOf(layout: Layout, brick: string): LayoutRange[] {
  return layout.filter((e) => e.brick === brick && !isEmptyRange(e)).map(({ commit, type, start, stop }) => ({ commit, type, start, stop }));
}

/** Per-brick hash-space share of a layout, in hash values. */
export function shares(layout: Layout): Map<string, number> {
  const m = new Map<string, number>();
  for (const e of layout) m.set(e.brick, (m.get(e.brick) ?? 0) + (isEmptyRange(e) ? 0 : e.stop - e.start + 1));
  return m;
}

/** Target share of each brick, proportional to weight (equal if any weight is unknown), summing to 2^32. */
export function targetShares(bricks: BrickWeight[], weighted = true): Map<string, number> {
  const sorted = [...bricks].sort(byName);
  const useW = weighted && sorted.every((b) => b.weight > 0);
  const total = useW ? sorted.reduce((s, b) => s + b.weight, 0) : sorted.length;
  const out = new Map<string, number>();
  let given = 0;
  sorted.forEach((b, i) => {
    const t = i === sorted.length - 1 ? RING_MAX + 1 - given : Math.floor(((RING_MAX + 1) * (useW ? b.weight : 1)) / total);
    out.set(b.name, t);
    given += t;
  });
  return out;
}

/**
 * Fix-layout that moves the least data: every brick keeps as much of its current ranges as its new
 * share allows; bricks over their share (and bricks leaving) give up the ends of their ranges, and bricks
 * under their share (new bricks) take those pieces. The hash space that changes owner is exactly
 * sum(max(0, old share - new share)), the least any layout can move, whatever the weights.
 */
export function fixLayout(old: Layout, bricks: BrickWeight[], opts: { commit: number; weighted?: boolean; dir?: string }): Layout {
  if (opts.dir !== undefined) {
    // Spread per directory: where in its ranges a brick gives up hash space depends on the directory's
    // hash, so a new brick takes different hash values in different directories and same-named files
    // spread over the bricks as any names do (GlusterFS rotates new directories' layouts for this).
    // A brick's ranges split at most once more per change; past a few, the ends are given up instead.
    const spread = fixLayoutAt(old, bricks, opts, dhtHash(opts.dir));
    if (bricks.every((b) => rangesOf(spread, b.name).length <= SPREAD_MAX_RANGES)) return spread;
  }
  return fixLayoutAt(old, bricks, opts, null);
}

/** Past this many ranges in a brick, fix-layout gives up the ends of its ranges (no new split). */
const SPREAD_MAX_RANGES = 16;

/**
 * The window of `excess` hash values a brick over its share gives up, starting `seed` (mod its share)
 * into its ranges taken end to end: any window moves the least; `seed` null gives up the ends.
 */
function giveUp(ps: [number, number][], excess: number, seed: number | null, brick: string): { keep: [number, number][]; freed: [number, number][] } {
  const len = (p: [number, number]) => p[1] - p[0] + 1;
  const total = ps.reduce((s, p) => s + len(p), 0);
  if (excess <= 0 || ps.length === 0) return { keep: ps, freed: [] };
  // Offsets into the brick's ranges taken end to end: [from, to) is freed, wrapping at `total`.
  const from = seed === null ? total - excess : ((seed ^ dhtHash(brick)) >>> 0) % total;
  const windows: [number, number][] =
    from + excess <= total
      ? [[from, from + excess]]
      : [
          [from, total],
          [0, from + excess - total],
        ];
  const keep: [number, number][] = [];
  const freed: [number, number][] = [];
  let at = 0;
  for (const p of ps) {
    // Cut the piece [at, at + len) of the concatenation by the windows.
    let cur = p[0];
    const end = p[1];
    const cuts = windows
      .map(([a, b]) => [Math.max(a, at) - at + p[0], Math.min(b, at + len(p)) - at + p[0] - 1] as [number, number])
      .filter(([a, b]) => a <= b)
      .sort((x, y) => x[0] - y[0]);
    for (const [a, b] of cuts) {
      if (a > cur) keep.push([cur, a - 1]);
      freed.push([a, b]);
      cur = b + 1;
    }
    if (cur <= end) keep.push([cur, end]);
    at += len(p);
  }
  return { keep, freed };
}

function fixLayoutAt(old: Layout, bricks: BrickWeight[], opts: { commit: number; weighted?: boolean }, seed: number | null): Layout {
  const target = targetShares(bricks, opts.weighted !== false);
  type Piece = [number, number];
  const own = new Map<string, Piece[]>();
  for (const b of bricks) own.set(b.name, []);
  const freed: Piece[] = [];
  // Old ranges, resolving overlaps (first owner keeps) and finding holes.
  const ranges = old.filter((e) => !isEmptyRange(e)).sort((a, b) => a.start - b.start || byName({ name: a.brick }, { name: b.brick }));
  let next = 0;
  for (const e of ranges) {
    const s = Math.max(e.start, next);
    if (e.start > next) freed.push([next, e.start - 1]);
    if (s <= e.stop) {
      if (own.has(e.brick)) own.get(e.brick)!.push([s, e.stop]);
      else freed.push([s, e.stop]); // a brick that leaves
      next = e.stop + 1;
    }
  }
  if (next <= RING_MAX) freed.push([next, RING_MAX]);
  const len = (p: Piece) => p[1] - p[0] + 1;
  const names = [...own.keys()].sort((a, b) => byName({ name: a }, { name: b }));
  // Bricks over their share give up a window of their ranges (the ends, or where the seed says).
  for (const n of names) {
    const ps = own.get(n)!.sort((a, b) => a[0] - b[0]);
    const excess = ps.reduce((s, p) => s + len(p), 0) - target.get(n)!;
    const g = giveUp(ps, excess, seed, n);
    own.set(n, g.keep);
    freed.push(...g.freed);
  }
  freed.sort((a, b) => a[0] - b[0]);
  // Bricks under their share take freed pieces in ring order.
  for (const n of names) {
    const ps = own.get(n)!;
    let need = target.get(n)! - ps.reduce((s, p) => s + len(p), 0);
    while (need > 0 && freed.length > 0) {
      const f = freed[0];
      if (len(f) <= need) {
        ps.push(freed.shift()!);
        need -= len(f);
      } else {
        ps.push([f[0], f[0] + need - 1]);
        f[0] += need;
        need = 0;
      }
    }
  }
  const out: Layout = [];
  for (const n of names) {
    const ps = own.get(n)!.sort((a, b) => a[0] - b[0]);
    const merged: Piece[] = [];
    for (const p of ps) {
      const m = merged[merged.length - 1];
      if (m && m[1] + 1 === p[0]) m[1] = p[1];
      else merged.push([p[0], p[1]]);
    }
    if (merged.length === 0) out.push({ brick: n, ...EMPTY_RANGE, commit: opts.commit });
    for (const [start, stop] of merged) out.push({ brick: n, commit: opts.commit, type: HASH_TYPE_DM, start, stop });
  }
  return assertWhole(out);
}

/** Hash values whose owner differs between two layouts. */
export function movedShare(a: Layout, b: Layout): number {
  const cuts = new Set<number>([0, RING_MAX + 1]);
  for (const e of [...a, ...b]) {
    if (isEmptyRange(e)) continue;
    cuts.add(e.start);
    cuts.add(e.stop + 1);
  }
  const points = [...cuts].sort((x, y) => x - y);
  let moved = 0;
  for (let i = 0; i + 1 < points.length; i++) {
    const h = points[i];
    if (searchLayout(a, h) !== searchLayout(b, h)) moved += points[i + 1] - h;
  }
  return moved;
}
