/** gfid: the 16-byte id a file or directory has on every brick that holds it. */
import { FsError } from './errors.js';
import type { Random } from './env.js';

export const ROOT_GFID = '00000000-0000-0000-0000-000000000001';

export function gfidToBytes(s: string): Buffer {
  if (!isGfid(s)) throw new Error(`bad gfid ${s}`);
  return Buffer.from(s.replace(/-/g, ''), 'hex');
}

export function gfidFromBytes(b: Uint8Array): string {
  if (b.length !== 16) throw new Error(`gfid must be 16 bytes, got ${b.length}`);
  const h = Buffer.from(b.buffer, b.byteOffset, 16).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const GFID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** A file's gfid where the protocol needs one (a reply's gfid is null only for a file made outside the volume): EIO without. */
export function needGfid(g: string | null | undefined, what: string): string {
  if (!isGfid(g)) throw new FsError('EIO', `${what} has no gfid`);
  return g;
}

export function isGfid(s: unknown): s is string {
  return typeof s === 'string' && GFID_RE.test(s);
}

/** A random (version 4) gfid. */
export function newGfid(random: Random): string {
  const b = Buffer.from(random.bytes(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  return gfidFromBytes(b);
}
