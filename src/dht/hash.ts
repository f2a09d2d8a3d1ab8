/**
 * The Davies-Meyer name hash of GlusterFS's DHT (libglusterfs hashfn.c, gf_dm_hashfn), bit-exact with
 * x86-64 clients: tail bytes >= 0x80 are sign-extended, as the C code reads them through `char*`.
 * Written from the reference description (shared/reference/glusterfs-dht.md §1.1).
 */

const DELTA = 0x9e3779b9;
const PART_ROUNDS = 6;
const FULL_ROUNDS = 10;

function round(rounds: number, a: Uint32Array, h: Uint32Array): void {
  let sum = 0;
  let b0 = h[0];
  let b1 = h[1];
  for (let n = 0; n < rounds; n++) {
    sum = (sum + DELTA) >>> 0;
    b0 = (b0 + ((((b1 << 4) + a[0]) ^ (b1 + sum) ^ ((b1 >>> 5) + a[1])) >>> 0)) >>> 0;
    b1 = (b1 + ((((b0 << 4) + a[2]) ^ (b0 + sum) ^ ((b0 >>> 5) + a[3])) >>> 0)) >>> 0;
  }
  h[0] = (h[0] + b0) >>> 0;
  h[1] = (h[1] + b1) >>> 0;
}

/** Hash raw bytes. `signedChar` selects x86 semantics (default) or aarch64/ppc semantics. */
export function dmHashBytes(msg: Uint8Array, signedChar = true): number {
  const len = msg.length;
  const h = new Uint32Array([0x9464a485, 0x542e1a94]);
  const a = new Uint32Array(4);
  let pad = len >>> 0;
  pad = (pad | (pad << 8)) >>> 0;
  pad = (pad | (pad << 16)) >>> 0;
  const word = (off: number) => (msg[off] | (msg[off + 1] << 8) | (msg[off + 2] << 16) | (msg[off + 3] << 24)) >>> 0;
  let pos = 0;
  let fullWords = len >>> 2;
  let fullBytes = len;
  const fullQuads = len >>> 4;
  for (let i = 0; i < fullQuads; i++) {
    for (let j = 0; j < 4; j++) {
      a[j] = word(pos);
      pos += 4;
      fullWords--;
      fullBytes -= 4;
    }
    round(PART_ROUNDS, a, h);
  }
  for (let j = 0; j < 4; j++) {
    if (fullWords > 0) {
      a[j] = word(pos);
      pos += 4;
      fullWords--;
      fullBytes -= 4;
    } else {
      let v = pad;
      while (fullBytes > 0) {
        const byte = msg[len - fullBytes];
        const ext = signedChar && byte >= 0x80 ? (0xffffff00 | byte) >>> 0 : byte;
        v = ((v << 8) | ext) >>> 0;
        fullBytes--;
      }
      a[j] = v;
    }
  }
  round(FULL_ROUNDS, a, h);
  return (h[0] ^ h[1]) >>> 0;
}

/** GlusterFS's built-in default for rsync-hash-regex: `.foo.txt.Ab12Cd` hashes as `foo.txt`. */
export const RSYNC_HASH_REGEX = /^\.(.+)\.[^.]+$/;

export interface HashOptions {
  /** Checked first; its first capture group is hashed when it matches. */
  extraHashRegex?: RegExp | null;
  /** Defaults to RSYNC_HASH_REGEX; null disables ("none"). */
  rsyncHashRegex?: RegExp | null;
}

/** The name actually hashed after GlusterFS's munging (dht_munge_name). */
export function mungeName(name: string, opts: HashOptions = {}): string {
  const extra = opts.extraHashRegex;
  if (extra) {
    const m = extra.exec(name);
    if (m && m[1] !== undefined) return m[1];
  }
  const rsync = opts.rsyncHashRegex === undefined ? RSYNC_HASH_REGEX : opts.rsyncHashRegex;
  if (rsync) {
    const m = rsync.exec(name);
    if (m && m[1] !== undefined) return m[1];
  }
  return name;
}

const utf8 = new TextEncoder();

/** dht_hash_compute: munge, then hash the UTF-8 bytes. */
export function dhtHash(name: string, opts: HashOptions = {}): number {
  return dmHashBytes(utf8.encode(mungeName(name, opts)));
}
