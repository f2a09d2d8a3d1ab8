/**
 * A hostile-client suite against one running brick process (issue 17): frames generated from the brick's
 * operations and their fields with hostile values of every msgpack type, malformed envelopes, mutations
 * of a captured real session, and floods (idle connections, unread replies, slow senders, lock and fd
 * hoarders). Between rounds it checks that the brick lives, that a good client is served in time, the
 * brick's RSS, and that nothing outside the brick's folder changed. `npm run attack` runs it for minutes
 * (bench/attack.ts); test/attack.test.ts runs a short version in `npm test`.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { once } from 'node:events';
import { randomBytes, randomUUID } from 'node:crypto';
import { Packr } from 'msgpackr';
import { Volume } from '../../src/api/volume.js';
import { RpcClient, authMac } from '../../src/wire/rpc.js';
import { tcpNetwork } from '../../src/wire/tcp.js';
import { FrameDecoder, PROTOCOL_VERSION } from '../../src/wire/frame.js';
import type { Conn, Network } from '../../src/wire/transport.js';
import { ROOT_GFID } from '../../src/common/gfid.js';
import { OPS as SCHEMA } from '../../src/wire/ops.js';
import { startCluster, type Cluster } from './cluster.js';
import { snapshot } from './disk.js';
import { frame, rssOf, sleep } from './raw.js';

export { frame, sleep };

/** Every brick operation and its argument fields, from the schema (src/wire/ops.ts); the generator also adds stray ones. */
export const OPS: Record<string, string[]> = Object.fromEntries(Object.entries(SCHEMA).map(([op, o]) => [op, Object.keys(o.args)]));

/** A small seeded generator (xorshift32): a failing seed replays. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 0x9e3779b9;
  }
  next(): number {
    let x = this.s;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.s = x >>> 0;
    return this.s;
  }
  int(n: number): number {
    return this.next() % n;
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)];
  }
  chance(p: number): boolean {
    return this.next() / 0x100000000 < p;
  }
}

const packr = new Packr({ useRecords: false });

/** Raw msgpack for values msgpackr would not send as such. */
const RAW = {
  negZero: Buffer.from([0xcb, 0x80, 0, 0, 0, 0, 0, 0, 0]),
  nan: Buffer.from([0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0]),
  inf: Buffer.from([0xcb, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0]),
  negInf: Buffer.from([0xcb, 0xff, 0xf0, 0, 0, 0, 0, 0, 0]),
  u64max: Buffer.from([0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
  i64min: Buffer.from([0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0]),
  badUtf8: Buffer.from([0xa4, 0x2f, 0xff, 0xfe, 0xc0]), // "/" then bytes that are no UTF-8
  overlongSlash: Buffer.from([0xa3, 0x2f, 0xc0, 0xaf]), // "/" and an overlong "/"
  timestamp: Buffer.from([0xd6, 0xff, 0, 0, 0, 1]),
  nil: Buffer.from([0xc0]),
  // Declared lengths far past what follows: the decoder must not trust them.
};
/** Values no decoder can take (lengths past the frame's end): the brick closes the connection. */
const KILLERS = {
  ext: Buffer.from([0xd4, 0x7f, 0x01]), // an extension type no one registered
  deep: deepArray(30_000), // past the decoder's stack
  hugeStr: Buffer.from([0xdb, 0x7f, 0xff, 0xff, 0xff]),
  hugeArr: Buffer.from([0xdd, 0x7f, 0xff, 0xff, 0xff]),
  hugeMap: Buffer.from([0xdf, 0x7f, 0xff, 0xff, 0xff]),
};

/** Nested arrays `depth` deep (a recursion bomb for a decoder or a validator). */
function deepArray(depth: number): Buffer {
  return Buffer.concat([Buffer.alloc(depth, 0x91), Buffer.from([0xc0])]);
}
function deepMap(depth: number): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i < depth; i++) parts.push(Buffer.from([0x81, 0xa1, 0x61]));
  parts.push(Buffer.from([0xc0]));
  return Buffer.concat(parts);
}

/** The fields the schema decodes as integers. */
const NUMERIC = new Set(
  Object.values(SCHEMA).flatMap((o) =>
    Object.entries(o.args as Record<string, { kind: string }>)
      .filter(([, d]) => d.kind === 'int')
      .map(([k]) => k),
  ),
);

export interface Known {
  gfids: string[];
  paths: string[];
  bricks: string[];
}

/** Each field's kind in the schema (the first operation's, where two differ). */
const FIELD_KIND = new Map<string, string>();
for (const o of Object.values(SCHEMA)) for (const [f, d] of Object.entries(o.args as Record<string, { kind: string }>)) if (!FIELD_KIND.has(f)) FIELD_KIND.set(f, d.kind);
/** The fields the near-valid values below know by name. */
const NAMED = new Set([
  'path',
  'from',
  'to',
  'gfid',
  'expect',
  'target',
  'dst',
  'src',
  'fd',
  'mode',
  'flags',
  'data',
  'value',
  'layout',
  'parentLayout',
  'topology',
  'type',
  'domain',
  'owner',
  'name',
  'token',
  'atime',
  'mtime',
  'source',
  'xattrs',
  'links',
]);
/** A field known by its schema kind only (a new operation's): the near-valid values of a field of that kind. */
const KIND_AS: Record<string, string> = { path: 'path', gfid: 'gfid', bytes: 'data', ranges: 'layout', timespec: 'atime', list: 'xattrs', object: 'source', int: '(int)' };

/** One hostile value (msgpack bytes) for a field; often of the right kind, often not. */
export function hostileValue(r: Rng, field: string, k: Known, kind = r.int(100)): Buffer {
  if (kind < 60) {
    // Something close to valid for the field, so that handlers are reached.
    switch (NAMED.has(field) ? field : (KIND_AS[FIELD_KIND.get(field) ?? ''] ?? field)) {
      case 'links':
        return packr.pack(r.pick([[r.pick(k.paths)], k.paths, ['/../x'], [], new Array(1001).fill('/d'), ['/.glusterfs/00'], 'x']));
      case '(int)':
        return packr.pack(r.pick([0, 1, 2, 4096, 0o644, 0xffffffff, 2 ** 31, 2 ** 53 - 1]));
      case 'path':
      case 'from':
      case 'to':
        if (r.chance(0.5)) return packr.pack(r.pick(['/d', '/d/e', '']) + '/n' + r.int(1e9));
        return packr.pack(
          r.pick([
            r.pick(k.paths),
            r.pick(k.paths) + '/' + r.pick(['x', 'new', '..', '.', '', '.glusterfs', 'a'.repeat(256)]),
            '/' + randomUUID(),
            '/../../etc/passwd',
            '/.glusterfs/00/00/' + ROOT_GFID,
            '//',
            '/a\0b',
            'relative',
            '/' + 'd/'.repeat(2100),
          ]),
        );
      case 'gfid':
      case 'expect':
        return packr.pack(r.chance(0.5) ? randomUUID() : r.pick([...k.gfids, ROOT_GFID, '00000000-0000-0000-0000-000000000000', randomUUID().toUpperCase(), '../../00/00']));
      case 'target':
      case 'dst':
      case 'src':
        return packr.pack(r.pick([...k.bricks, '../../00/00/' + ROOT_GFID + '/../..', '/etc/shadow', 'x'.repeat(5000), '']));
      case 'fd':
        return packr.pack(r.pick([0, 1, 2, 3, 4, 5, -1, 2 ** 31, 2 ** 53]));
      case 'mode':
        return packr.pack(r.pick([0o644, 0o755, 0o10644, 0o20644, 0o60644, 0o140644, 0o4777, 0o177777, 2 ** 32]));
      case 'flags':
        return packr.pack(r.pick([0, 1, 2, 0o100, 0o200, 0o1000, 0o2000, 0o200000, 0o4000, 0xffffffff]));
      case 'data':
      case 'value':
        return packr.pack(randomBytes(r.pick([0, 1, 511, 512, 4096, 65536])));
      case 'layout':
      case 'parentLayout':
        return packr.pack(r.pick([[{ commit: 1, type: 0, start: 0, stop: 0xffffffff }], [{ start: 5, stop: 1 }], new Array(100).fill({ commit: 0, type: 0, start: 0, stop: 1 }), null]));
      case 'topology':
        return packr.pack(r.pick([{ version: 2 ** 50, bricks: [{ name: 'evil', host: '127.0.0.1', port: 1 }], decommissioned: [] }, { version: -1 }, {}]));
      case 'type':
        return packr.pack(r.pick(['rd', 'wr', 'un', 'xx']));
      case 'domain':
      case 'owner':
      case 'name':
      case 'token':
        return packr.pack(r.pick(['d', 'user.x', 'trusted.gfid', 'user.' + 'n'.repeat(300), 'a'.repeat(r.pick([1, 256, 257, 60000])), 'ab12', '../../x']));
      case 'atime':
      case 'mtime':
        return packr.pack(r.pick([[0, 0], [-1, 0], [2 ** 53, 999_999_999], [1, 1e9], [1]]));
      case 'source':
        return packr.pack(r.pick([{ host: 'h', root: '/', path: '.glusterfs/00/00/' + ROOT_GFID }, { host: 'h', root: '/etc', path: 'shadow' }, null]));
      case 'xattrs':
        return packr.pack(
          r.pick([[['user.a', Buffer.from('v')]], [['trusted.gfid', Buffer.alloc(16)]], [[1, 2]], 'x', new Array(2000).fill(['user.a', Buffer.alloc(1)]), [['user.' + 'n'.repeat(300), Buffer.alloc(1)]], [['user.big', Buffer.alloc(70_000)]]]),
        );
      default:
        return packr.pack(r.pick([true, false, 0, 1, 'x', null]));
    }
  }
  if (kind < 80) {
    // Numbers' own traps, for the fields that take numbers: -0, NaN, infinities, 64-bit extremes.
    if (NUMERIC.has(field) && r.chance(0.6)) return r.pick([RAW.negZero, RAW.negZero, RAW.nan, RAW.inf, RAW.negInf, RAW.u64max, RAW.i64min]);
    return r.pick(Object.values(RAW));
  }
  if (kind < 84) return r.chance(0.5) ? deepArray(r.pick([64, 1000])) : deepMap(r.pick([64, 500]));
  if (kind === 99 && r.chance(0.1)) return r.pick(Object.values(KILLERS));
  return packr.pack(
    r.pick<unknown>([
      -0.0,
      0.5,
      -1,
      2 ** 31,
      2 ** 32,
      2 ** 53,
      -(2 ** 53),
      Number.MAX_VALUE,
      '',
      'x'.repeat(r.pick([255, 256, 4096, 4097, 60_000])),
      [],
      {},
      [1, 2, 3],
      { path: '/' },
      Buffer.alloc(0),
      Buffer.alloc(70_000),
      true,
      null,
      new Date(0),
      { __proto__: { polluted: true } },
      JSON.parse('{"__proto__": {"polluted": 1}, "constructor": {"prototype": {"x": 1}}}'),
    ]),
  );
}

/** A request frame: [0, id, op, args] with each field's value given as raw msgpack. */
export function requestFrame(id: number, op: string | Buffer, fields: [string, Buffer][]): Buffer {
  const parts: Buffer[] = [Buffer.from([0x94, 0x00, 0xce, 0, 0, 0, 0])];
  parts[0].writeUInt32BE(id >>> 0, 3);
  parts.push(typeof op === 'string' ? packr.pack(op) : op);
  const head = Buffer.alloc(3);
  head[0] = 0xde;
  head.writeUInt16BE(fields.length, 1);
  parts.push(head);
  for (const [k, v] of fields) parts.push(packr.pack(k), v);
  return frame(Buffer.concat(parts));
}

export interface RawSession {
  sock: net.Socket;
  replies: number;
  closed: boolean;
}

/** A raw authenticated connection: hello done, then anything. Replies are counted, not kept. */
export async function rawSession(host: string, port: number, volumeId: string, secret: string, client = 'attacker'): Promise<RawSession> {
  const sock = net.connect(port, host);
  sock.on('error', () => {});
  await once(sock, 'connect');
  const s: RawSession = { sock, replies: 0, closed: false };
  sock.on('close', () => (s.closed = true));
  const dec = new FrameDecoder();
  let nonce: Uint8Array | null = null;
  let helloDone: (() => void) | null = null;
  const hello = new Promise<void>((r) => (helloDone = r));
  sock.on('data', (d) => {
    let msgs;
    try {
      msgs = dec.push(d);
    } catch {
      sock.destroy();
      return;
    }
    for (const m of msgs) {
      if (m[0] === 2 && m[1] === 'challenge') {
        nonce = (m[2] as { nonce: Uint8Array }).nonce;
        sock.write(frame(packr.pack([0, 1, 'hello', { proto: PROTOCOL_VERSION, volumeId, mac: authMac(secret, nonce, volumeId), client, cnonce: randomBytes(32) }])));
      } else if (m[0] === 1 && m[1] === 1 && helloDone) {
        helloDone();
        helloDone = null;
      } else if (m[0] === 1) s.replies++;
    }
  });
  await Promise.race([hello, once(sock, 'close').then(() => Promise.reject(new Error('closed during hello'))), sleep(5000).then(() => Promise.reject(new Error('no hello reply')))]);
  return s;
}

class BrickDied extends Error {}

/** A Network that records every frame a real client sends (for mutation). */
export function recordingNetwork(sent: Buffer[]): Network {
  return {
    async connect(host: string, port: number): Promise<Conn> {
      const c = await tcpNetwork.connect(host, port);
      const write = c.write.bind(c);
      (c as { write: Conn['write'] }).write = (data, onSent) => {
        if (sent.length < 5000) sent.push(Buffer.concat(data));
        return write(data, onSent);
      };
      return c;
    },
    listen: tcpNetwork.listen.bind(tcpNetwork),
  };
}

export interface AttackReport {
  frames: number;
  /** Requests the brick answered (a frame it cannot decode closes its connection: the rest are not read). */
  answered: number;
  connections: number;
  crashes: number;
  hangs: number;
  peakRssMiB: number;
  worstGoodMs: number;
  outsideChanged: boolean;
  notes: string[];
}

const rssMiB = (pid: number): number => {
  try {
    return rssOf(pid) / 2 ** 20;
  } catch {
    return 0;
  }
};

/**
 * Runs every attack for about `seconds` in all, seeded; `rssBoundMiB` is the bound the brick's RSS must
 * stay under. Returns what was done and seen; throws nothing for what the brick did (the caller asserts).
 */
export async function runAttacks(opts: { seconds: number; seed: number; rssBoundMiB: number; log?: (s: string) => void }): Promise<AttackReport> {
  const log = opts.log ?? (() => {});
  const r = new Rng(opts.seed);
  const c = await startCluster(1, { name: 'atk' });
  const rep: AttackReport = { frames: 0, answered: 0, connections: 0, crashes: 0, hangs: 0, peakRssMiB: 0, worstGoodMs: 0, outsideChanged: false, notes: [] };
  const b = c.spec.bricks[0];
  const outside = path.join(c.base, 'outside');
  fs.mkdirSync(outside);
  fs.writeFileSync(path.join(outside, 'secret'), 'outside the brick', { mode: 0o600 });
  fs.symlinkSync('secret', path.join(outside, 'link'));
  const before = snapshot(outside);
  try {
    // A volume with something in it, and the gfids of what is there.
    const sent: Buffer[] = [];
    const vol = await Volume.connect(c.spec, { network: recordingNetwork(sent) });
    await vol.mkdir('/d/e', { recursive: true });
    await vol.writeFile('/d/f', 'file f');
    await vol.writeFile('/big', Buffer.alloc(8 << 20, 1));
    await vol.symlink('../../00/00/' + ROOT_GFID + '/..', '/d/s');
    await vol.mkfifo('/d/p');
    await vol.link('/d/f', '/d/e/hard');
    await vol.rename('/d/e/hard', '/d/hard2');
    await vol.readdir('/d');
    const h = await vol.open('/d/f', 'r+');
    await h.write('again', 0);
    await h.close();
    await vol.close();
    const k: Known = { gfids: [], paths: ['/', '/d', '/d/e', '/d/f', '/big', '/d/s', '/d/p', '/d/hard2'], bricks: [b.name] };
    const good = await RpcClient.connect(tcpNetwork, b.host, b.port, { volumeId: c.spec.volumeId, secret: c.spec.secret, clientName: 'good' });
    for (const p of k.paths) k.gfids.push(((await good.call('lookup', { path: p })) as { gfid: string }).gfid);
    const pid = c.procs[0]!.pid!;

    /** The good client's round trip, and the brick's health. */
    const check = async (what: string) => {
      if (!c.procs[0] || c.procs[0].exitCode !== null || c.procs[0].signalCode !== null) {
        rep.crashes++;
        rep.notes.push(`brick died during ${what}: ${c.logs[0].slice(-400)}`);
        throw new BrickDied(what);
      }
      const t0 = performance.now();
      // Any answer counts (the fuzzer may have removed /d/f): only silence or a lost connection does not.
      const answered = good.call('lookup', { path: '/d/f' }).then(
        () => true,
        (e: { code?: string }) => e.code !== 'ENOTCONN' && e.code !== 'ETIMEDOUT',
      );
      const ok = await Promise.race([answered, sleep(5000).then(() => false)]);
      const ms = performance.now() - t0;
      rep.worstGoodMs = Math.max(rep.worstGoodMs, ms);
      if (!ok) {
        rep.hangs++;
        rep.notes.push(`good client not served within 5 s after ${what}`);
      }
      rep.peakRssMiB = Math.max(rep.peakRssMiB, rssMiB(pid));
      if (snapshot(outside) !== before) rep.outsideChanged = true;
    };

    const deadline = Date.now() + opts.seconds * 1000;
    const share = (n: number) => Date.now() + (opts.seconds * 1000 * n) / 10;
    const ops = Object.keys(OPS);

    log('schema fuzzing');
    // 1. Frames from the operation table, hostile values, pipelined on a few connections.
    const until1 = share(4);
    while (Date.now() < until1) {
      const s = await rawSession(b.host, b.port, c.spec.volumeId, c.spec.secret);
      rep.connections++;
      for (let i = 0; i < 300 && !s.closed; i++) {
        const op = r.chance(0.97) ? r.pick(ops) : r.pick(['nosuchop', '', 'x'.repeat(1000), '__proto__', 'constructor', 'hello']);
        const fields: [string, Buffer][] = [];
        const known = Object.hasOwn(OPS, op) ? OPS[op] : [];
        // Mostly one hostile field among near-valid ones (so that the handler is reached), else all random.
        const one = r.chance(0.7) && known.length > 0 ? r.pick(known) : null;
        for (const f of known) {
          if (one === null ? r.chance(0.85) : f === one || r.chance(0.95)) fields.push([f, hostileValue(r, f, k, one === null || f === one ? r.int(100) : r.int(60))]);
        }
        if (r.chance(0.1)) fields.push([r.pick(['__proto__', 'constructor', 'data', 'x', '']), hostileValue(r, 'x', k)]);
        s.sock.write(requestFrame(100 + i, op, fields));
        rep.frames++;
      }
      for (const t0 = Date.now(); !s.closed && s.replies < 300 && Date.now() - t0 < 2000;) await sleep(10);
      rep.answered += s.replies;
      s.sock.destroy();
      await check('schema fuzzing');
    }

    log('malformed envelopes');
    // 2. Malformed envelopes and bodies.
    const until2 = share(5);
    while (Date.now() < until2) {
      const s = await rawSession(b.host, b.port, c.spec.volumeId, c.spec.secret);
      rep.connections++;
      const shapes: Buffer[] = [
        frame(packr.pack([0, 1, 'lookup'])),
        frame(packr.pack([0, 'id', 'lookup', {}])),
        frame(packr.pack([0, 1, 7, {}])),
        frame(packr.pack([0, 1, 'lookup', []])),
        frame(packr.pack([1, 1, null, {}])),
        frame(packr.pack([2, 'challenge', {}])),
        frame(packr.pack({ 0: 0 })),
        frame(deepArray(100_000)),
        frame(deepMap(20_000)),
        frame(Buffer.concat([Buffer.from([0x94, 0x00, 0x01]), packr.pack('lookup'), KILLERS.hugeMap])),
        frame(Buffer.concat([Buffer.from([0x94, 0x00, 0x01]), packr.pack('lookup'), Buffer.from([0x81, 0xa4]), Buffer.from('path'), r.pick(Object.values(KILLERS))])),
        frame(Buffer.concat([Buffer.from([0x94, 0x00, 0x01]), RAW.badUtf8, Buffer.from([0x80])])),
        frame(Buffer.concat([packr.pack([0, 1, 'write', { fd: 1, offset: 0, data: null }]), randomBytes(100)])),
        Buffer.from([0, 0, 0, 3, 0, 0, 0, 9]),
        Buffer.from([0xff, 0xff, 0xff, 0xff]),
        randomBytes(r.pick([1, 7, 100, 5000])),
      ];
      s.sock.write(r.pick(shapes));
      rep.frames++;
      await sleep(10);
      s.sock.destroy();
      if (r.chance(0.2)) await check('malformed frames');
    }
    await check('malformed frames');

    log('session mutations');
    // 3. Mutations of the captured real session (its hello answered a nonce long gone: ours first).
    const recorded = sent.filter((f) => f.length > 8);
    const until3 = share(6.5);
    while (Date.now() < until3 && recorded.length > 0) {
      const s = await rawSession(b.host, b.port, c.spec.volumeId, c.spec.secret);
      rep.connections++;
      for (let i = 0; i < 100 && !s.closed; i++) {
        const f = Buffer.from(r.pick(recorded));
        const how = r.int(4);
        if (how === 0) for (let j = 0; j < 1 + r.int(4); j++) f[8 + r.int(f.length - 8)] ^= 1 << r.int(8);
        else if (how === 1) f.writeUInt32BE(Math.min(f.readUInt32BE(4), r.int(f.length)), 4);
        else if (how === 2) f[8 + r.int(f.length - 8)] = r.pick([0xc0, 0xc1, 0xdd, 0xdf, 0xcb, 0xff]);
        s.sock.write(how === 3 ? f.subarray(0, 8 + r.int(f.length - 8)) : f);
        rep.frames++;
      }
      await sleep(30);
      rep.answered += s.replies;
      s.sock.destroy();
      await check('session mutations');
    }

    log('floods');
    // 4. Floods, each bounded, each followed by a check while it holds.
    // 4a. Idle connections (never a hello).
    const idle: net.Socket[] = [];
    for (let i = 0; i < 1500; i++) {
      const s = net.connect(b.port, b.host);
      s.on('error', () => {});
      idle.push(s);
    }
    rep.connections += idle.length;
    await sleep(500);
    await check('1,500 idle connections');
    for (const s of idle) s.destroy();
    // 4b. Unread replies: 8 MiB reads pipelined by a client that never reads its socket.
    const hog = await rawSession(b.host, b.port, c.spec.volumeId, c.spec.secret);
    rep.connections++;
    hog.sock.pause();
    hog.sock.write(frame(packr.pack([0, 2, 'open', { path: '/big', flags: 0 }])));
    for (let i = 0; i < 400; i++) hog.sock.write(frame(packr.pack([0, 10 + i, 'read', { fd: 1, offset: 0, length: 8 << 20 }])));
    rep.frames += 401;
    await sleep(2000);
    await check('400 unread 8 MiB reads');
    hog.sock.destroy();
    await sleep(300);
    await check('after the unread-reads client left');
    // 4c. Slow senders: a frame header, then a byte at a time.
    const slow: net.Socket[] = [];
    for (let i = 0; i < 40; i++) {
      const s = net.connect(b.port, b.host);
      s.on('error', () => {});
      slow.push(s);
    }
    for (let t = 0; t < 10; t++) {
      for (const s of slow) s.write(Buffer.from([t === 0 ? 0 : 0x41]));
      await sleep(100);
    }
    await check('40 slow senders');
    for (const s of slow) s.destroy();
    // 4d. Lock and fd hoarders.
    const locker = await rawSession(b.host, b.port, c.spec.volumeId, c.spec.secret);
    rep.connections++;
    for (let i = 0; i < 3000; i++) {
      locker.sock.write(frame(packr.pack([0, 10 + i, i % 2 ? 'inodelk' : 'entrylk', { domain: `dom${i % 40}`.padEnd(200, 'x'), path: '/d', name: `n${i}`, type: 'wr', block: true, owner: `o${i}` }])));
      locker.sock.write(frame(packr.pack([0, 100_000 + i, 'open', { path: '/d/f', flags: 0 }])));
      rep.frames += 2;
    }
    await sleep(1000);
    await check('3,000 locks and opens');
    locker.sock.destroy();
    // 4e. Big frames before authentication, from many sockets.
    const pre: net.Socket[] = [];
    for (let i = 0; i < 30; i++) {
      const s = net.connect(b.port, b.host);
      s.on('error', () => {});
      const body = Buffer.alloc(8 << 20, 0x41);
      s.write(frame(Buffer.concat([Buffer.from([0xdb]), Buffer.from([0, 0x7f, 0xff, 0xf0]), body.subarray(0, 1 << 20)])));
      pre.push(s);
    }
    rep.connections += pre.length;
    await sleep(500);
    await check('30 oversized frames before authentication');
    for (const s of pre) s.destroy();
    await sleep(Math.max(0, Math.min(2000, deadline - Date.now())));
    await check('the end');
    good.close();
    log(`brick log: ${c.logs[0].split('\n').length} lines, longest ${Math.max(...c.logs[0].split('\n').map((l) => l.length))} bytes`);
    const longest = Math.max(...c.logs[0].split('\n').map((l) => l.length));
    if (longest > 1000) rep.notes.push(`a brick log line of ${longest} bytes`);
    return rep;
  } catch (e) {
    if (e instanceof BrickDied) return rep;
    // A connection refused or cut because the brick died: count it as the crash it is.
    const p = c.procs[0];
    if (p && (p.exitCode !== null || p.signalCode !== null)) {
      rep.crashes++;
      rep.notes.push(`brick died (${p.signalCode ?? p.exitCode}): ${c.logs[0].slice(-400)}`);
      return rep;
    }
    // Alive but not answering (a connection's handshake never came): a hang. It is killed, not waited for.
    rep.hangs++;
    rep.notes.push(`brick stopped answering: ${(e as Error).message}`);
    if (p) {
      const gone = once(p, 'exit');
      p.kill('SIGKILL');
      await gone;
      c.procs[0] = null;
    }
    return rep;
  } finally {
    // A brick that died is not waited for (its exit came already).
    if (c.procs[0] && (c.procs[0].exitCode !== null || c.procs[0].signalCode !== null)) c.procs[0] = null;
    await c.stop().catch(() => {});
  }
}

export type { Cluster };
