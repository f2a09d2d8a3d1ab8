/**
 * A directory's layout as each brick keeps it on disk (GlusterFS's trusted.glusterfs.dht format,
 * shared/reference/glusterfs-dht.md §1.3): one 16-byte record per hash range. Shared by the brick, which
 * stores and checks it, and the DHT client (dht/layout.ts), which computes layouts.
 */
import { MAX_RANGES } from './ops.js';

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

// ---------------------------------------------------------------------------------------------------
// Several ranges per brick. GlusterFS gives a brick one range per directory; dhtfs allows several, so
// that a layout change moves only what it must. The xattr holds one 16-byte record per range: a brick
// with one range has exactly GlusterFS's value.

/** The protocol's bound (wire/ops.ts), which the xattr decoder keeps too. */
export const MAX_RANGES_PER_BRICK = MAX_RANGES;
export const EMPTY_RANGE: LayoutRange = { commit: 0, type: HASH_TYPE_DM, start: 0, stop: 0 };

export function encodeRanges(rs: LayoutRange[]): Buffer {
  const list = rs.filter((r) => !isEmptyRange(r));
  if (list.length === 0) return encodeRange({ ...EMPTY_RANGE, commit: rs[0]?.commit ?? 0 });
  return Buffer.concat(list.map(encodeRange));
}

export function decodeRanges(b: Uint8Array): LayoutRange[] {
  if (b.length === 0 || b.length % 16 !== 0 || b.length / 16 > MAX_RANGES_PER_BRICK) throw new Error(`layout xattr of ${b.length} bytes is not 1..${MAX_RANGES_PER_BRICK} records of 16`);
  const out: LayoutRange[] = [];
  for (let i = 0; i < b.length; i += 16) out.push(decodeRange(b.subarray(i, i + 16)));
  return out;
}

export function sameRanges(a: LayoutRange[] | null | undefined, b: LayoutRange[] | null | undefined): boolean {
  const x = (a ?? []).filter((r) => !isEmptyRange(r));
  const y = (b ?? []).filter((r) => !isEmptyRange(r));
  return x.length === y.length && x.every((r, i) => sameRange(r, y[i]));
}
