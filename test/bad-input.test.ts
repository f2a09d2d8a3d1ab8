/**
 * Bad input against a running brick process: malformed frames, oversized lengths, unknown ops, bad auth,
 * bad arguments and path escapes. Afterwards the brick still serves a good client and nothing outside
 * its directory changed.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { once } from 'node:events';
import { Packr } from 'msgpackr';
import { Volume } from '../src/api/volume.js';
import { RpcClient, authMac } from '../src/wire/rpc.js';
import { tcpNetwork } from '../src/wire/tcp.js';
import { FrameDecoder, encodeFrame, PROTOCOL_VERSION } from '../src/wire/frame.js';
import { startCluster, type Cluster } from './helpers/cluster.js';
import { snapshot as snapshotTree } from './helpers/disk.js';

const packr = new Packr({ useRecords: false });

/** A directory tree with its files' bytes (helpers/disk.ts). */
const snapshot = (dir: string) => snapshotTree(dir, true);

/** A raw socket that reads the challenge, then lets the test send anything. */
async function raw(c: Cluster): Promise<{ sock: net.Socket; nonce: Uint8Array; closed: Promise<void>; replies: unknown[] }> {
  const b = c.spec.bricks[0];
  const sock = net.connect(b.port, b.host);
  await once(sock, 'connect');
  const dec = new FrameDecoder();
  const replies: unknown[] = [];
  let nonce: Uint8Array | null = null;
  let gotNonce: () => void;
  const nonceP = new Promise<void>((r) => (gotNonce = r));
  sock.on('data', (d) => {
    for (const m of dec.push(d)) {
      if (m[0] === 2 && m[1] === 'challenge') {
        nonce = (m[2] as { nonce: Uint8Array }).nonce;
        gotNonce();
      } else replies.push(m);
    }
  });
  sock.on('error', () => {});
  const closed = once(sock, 'close').then(() => {});
  await nonceP;
  return { sock, nonce: nonce!, closed, replies };
}

/** A frame around an arbitrary msgpack body (no attachment). */
function frame(body: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt32BE(body.length + 4, 0);
  h.writeUInt32BE(body.length, 4);
  return Buffer.concat([h, body]);
}

const enc = (m: Parameters<typeof encodeFrame>[0]) => Buffer.concat(encodeFrame(m));

async function closesWithin(p: Promise<void>, ms = 3000): Promise<boolean> {
  return Promise.race([p.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))]);
}

test('a brick survives hostile input and keeps serving good clients', async () => {
  const c = await startCluster(1);
  // A sentinel tree next to the brick directory: nothing in it may change.
  const outside = path.join(c.base, 'outside');
  fs.mkdirSync(outside);
  fs.writeFileSync(path.join(outside, 'secret.txt'), 'do not touch');
  const brickDir = c.dirs[0];
  const before = snapshot(outside);
  const good = await Volume.connect(c.spec);
  await good.writeFile('/keep', 'precious');

  try {
    const bad: [string, (s: net.Socket, nonce: Uint8Array) => void][] = [
      ['garbage bytes', (s) => s.write(Buffer.from('GET / HTTP/1.1\r\n\r\n'))],
      ['oversized length', (s) => s.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 1, 2, 3]))],
      ['zero length', (s) => s.write(Buffer.from([0, 0, 0, 0]))],
      ['undecodable msgpack', (s) => s.write(frame(Buffer.from([0xc1, 0xc1, 0xc1])))],
      ['body length beyond the frame', (s) => s.write(Buffer.from([0, 0, 0, 6, 0, 0, 0, 200, 1, 2]))],
      ['msgpack that is not a message', (s) => s.write(frame(packr.pack({ hello: 'world' })))],
      ['request before hello', (s) => s.write(enc([0, 1, 'unlink', { path: '/keep' }]))],
      ['wrong secret', (s, n) => s.write(enc([0, 1, 'hello', { proto: PROTOCOL_VERSION, volumeId: c.spec.volumeId, mac: authMac('wrong', n, c.spec.volumeId) }]))],
      ['wrong volume id', (s, n) => s.write(enc([0, 1, 'hello', { proto: PROTOCOL_VERSION, volumeId: '00000000-0000-4000-8000-000000000000', mac: authMac(c.spec.secret, n, c.spec.volumeId) }]))],
      ['wrong protocol version', (s, n) => s.write(enc([0, 1, 'hello', { proto: 999, volumeId: c.spec.volumeId, mac: authMac(c.spec.secret, n, c.spec.volumeId) }]))],
      ['replayed mac from another nonce', (s) => s.write(enc([0, 1, 'hello', { proto: PROTOCOL_VERSION, volumeId: c.spec.volumeId, mac: authMac(c.spec.secret, Buffer.alloc(32), c.spec.volumeId) }]))],
    ];
    for (const [what, send] of bad) {
      const r = await raw(c);
      send(r.sock, r.nonce);
      assert.ok(await closesWithin(r.closed), `${what}: the brick closed the connection`);
      assert.equal(await good.readFile('/keep', 'utf8'), 'precious', `${what}: good client unaffected`);
    }

    // Authenticated, but asking for bad things: each gets an error reply, the connection stays.
    const b = c.spec.bricks[0];
    const r = await RpcClient.connect(tcpNetwork, b.host, b.port, { volumeId: c.spec.volumeId, secret: c.spec.secret });
    const refused: [string, Record<string, unknown>, string][] = [
      ['noSuchOp', {}, 'ENOSYS'],
      ['__proto__', {}, 'ENOSYS'],
      ['constructor', {}, 'ENOSYS'],
      ['lookup', { path: '/../etc/passwd' }, 'EINVAL'],
      ['lookup', { path: '/a/../../x' }, 'EINVAL'],
      ['lookup', { path: 'etc/passwd' }, 'EINVAL'],
      ['lookup', { path: '//etc' }, 'EINVAL'],
      ['lookup', { path: '/.glusterfs' }, 'EPERM'],
      ['lookup', { path: '/x\0y' }, 'EINVAL'],
      ['lookup', { path: 42 }, 'EINVAL'],
      ['lookup', { path: '/' + 'a'.repeat(300) }, 'ENAMETOOLONG'],
      ['lookup', {}, 'EINVAL'],
      ['create', { path: '/../escape', mode: 0o644, flags: 2, gfid: '11111111-1111-4111-8111-111111111111' }, 'EINVAL'],
      ['mkdir', { path: '/.glusterfs/x', mode: 0o755, gfid: '11111111-1111-4111-8111-111111111112' }, 'EPERM'],
      ['rename', { from: '/keep', to: '/../stolen' }, 'EINVAL'],
      ['link', { from: '/keep', to: '/.glusterfs/stolen' }, 'EPERM'],
      ['read', { fd: 'zero', offset: 0, length: 10 }, 'EINVAL'],
      ['read', { fd: 99999, offset: 0, length: 10 }, 'EBADF'],
      ['read', { fd: 1, offset: -5, length: 10 }, 'EINVAL'],
      ['write', { fd: 1, offset: 0, data: 'not binary' }, 'EINVAL'],
      ['open', { path: '/keep', flags: 0o100 }, 'EINVAL'],
      ['setxattr', { path: '/keep', name: 'trusted.glusterfs.dht.linkto', value: Buffer.from('x') }, 'EPERM'],
      ['setxattr', { path: '/keep', name: 'user.x', value: Buffer.alloc(100_000) }, 'E2BIG'],
      ['mkdir', { path: '/d', mode: 0o755, gfid: 'not-a-gfid' }, 'EINVAL'],
      // A migration's xattrs are bounded: pairs, name and value sizes.
      ['migSpecial', { path: '/sx', gfid: '55555555-5555-4555-8555-555555555555', mode: 0o10644, uid: 0, gid: 0, xattrs: new Array(2000).fill(['user.a', Buffer.alloc(1)]) }, 'EINVAL'],
      ['migSpecial', { path: '/sx', gfid: '55555555-5555-4555-8555-555555555555', mode: 0o10644, uid: 0, gid: 0, xattrs: [['user.big', Buffer.alloc(70_000)]] }, 'EINVAL'],
      ['migSpecial', { path: '/sx', gfid: '55555555-5555-4555-8555-555555555555', mode: 0o10644, uid: 0, gid: 0, xattrs: [['user.' + 'n'.repeat(300), Buffer.alloc(1)]] }, 'EINVAL'],
      ['setLayout', { path: '/', layout: [{ commit: 1, type: 7, start: 0, stop: 1 }] }, 'EINVAL'],
      ['setLayout', { path: '/', layout: { commit: 1, type: 0, start: 0, stop: 1 } }, 'EINVAL'],
      ['inodelk', { domain: 'd', path: '/', type: 'bogus', owner: 'o' }, 'EINVAL'],
      ['readdir', { path: '/keep' }, 'ENOTDIR'],
      ['mknod', { path: '/dir', mode: 0o040755, gfid: '11111111-1111-4111-8111-111111111113' }, 'EPERM'],
      ['mknod', { path: '/dev', mode: 0o020644, rdev: 2 ** 32, gfid: '11111111-1111-4111-8111-111111111118' }, 'EINVAL'],
      ['mknod', { path: '/reg', mode: 0o100644, gfid: '11111111-1111-4111-8111-111111111114' }, 'EPERM'],
      ['mknod', { path: '/fifo', mode: -1, gfid: '11111111-1111-4111-8111-111111111115' }, 'EINVAL'],
      ['mknod', { path: '/../fifo', mode: 0o010644, gfid: '11111111-1111-4111-8111-111111111116' }, 'EINVAL'],
      ['mknod', { path: '/.glusterfs/fifo', mode: 0o010644, gfid: '11111111-1111-4111-8111-111111111117' }, 'EPERM'],
    ];
    for (const [op, args, code] of refused) {
      await assert.rejects(r.request(op, args), { code }, `${op} ${JSON.stringify(args).slice(0, 80)}`);
    }
    // An oversized read is refused by argument check, not attempted.
    const o = await r.call('open', { path: '/keep', flags: 0 });
    await assert.rejects(r.call('read', { fd: o.fd, offset: 0, length: 1 << 30 }), { code: 'EINVAL' });

    // Symlinks pointing out of the brick are stored, but never followed by the brick.
    await r.call('symlink', { path: '/evil', target: outside, gfid: '22222222-2222-4222-8222-222222222222' });
    await r.call('symlink', { path: '/evilfile', target: path.join(outside, 'secret.txt'), gfid: '22222222-2222-4222-8222-222222222223' });
    await assert.rejects(r.call('lookup', { path: '/evil/secret.txt' }), { code: 'ELOOP' });
    await assert.rejects(r.call('open', { path: '/evil/secret.txt', flags: 2 }), { code: 'ELOOP' });
    await assert.rejects(r.call('create', { path: '/evil/new', mode: 0o644, flags: 2, gfid: '33333333-3333-4333-8333-333333333333' }), { code: 'ELOOP' });
    await assert.rejects(r.call('open', { path: '/evilfile', flags: 2 }), { code: 'ELOOP' });
    await assert.rejects(r.call('setattr', { path: '/evil/secret.txt', mode: 0o777 }), { code: 'ELOOP' });
    await r.call('setattr', { path: '/evilfile', mode: 0o777 }); // a symlink's mode: no-op, target untouched
    await assert.rejects(r.call('setattr', { path: '/evilfile', size: 0 }), { code: 'EINVAL' });
    await assert.rejects(r.call('mkdir', { path: '/evil/sub', mode: 0o755, gfid: '44444444-4444-4444-8444-444444444444' }), { code: 'ELOOP' });
    await assert.rejects(r.call('unlink', { path: '/evil/secret.txt' }), { code: 'ELOOP' });
    await assert.rejects(r.call('rename', { from: '/keep', to: '/evil/keep' }), { code: 'ELOOP' });
    await assert.rejects(r.call('setxattr', { path: '/evil/secret.txt', name: 'user.x', value: Buffer.from('1') }), { code: 'ELOOP' });
    await assert.rejects(r.call('readdir', { path: '/evil' }), { code: 'ENOTDIR' });
    // The connection that asked all this still works.
    const attr = await r.call('lookup', { path: '/keep' });
    assert.equal(attr.size, 8);
    r.close();

    // Many connections at once, half of them hostile: the brick keeps up.
    const storm = await Promise.all(Array.from({ length: 20 }, () => raw(c)));
    storm.forEach((s, i) => (i % 2 ? s.sock.write(Buffer.from([0xff, 0xff, 0xff, 0xff])) : s.sock.destroy()));
    await Promise.all(storm.map((s) => closesWithin(s.closed)));
    assert.ok(c.procs[0] && c.procs[0].exitCode === null, 'brick process alive');
    assert.equal(await good.readFile('/keep', 'utf8'), 'precious');
    await good.writeFile('/after', 'still serving');
    assert.equal(await good.readFile('/after', 'utf8'), 'still serving');
    assert.equal(snapshot(outside), before, 'nothing outside the brick changed');
    for (const reason of ['exceeds limit', 'empty frame', 'bad body length', 'undecodable frame', 'frame is not an array', 'unauthenticated request', 'bad secret', 'wrong volume id', 'protocol version mismatch']) {
      assert.ok(c.logs[0].includes(reason), `brick logged '${reason}'`);
    }
    assert.ok(!fs.existsSync(path.join(path.dirname(brickDir), 'escape')));
    assert.ok(!fs.existsSync(path.join(path.dirname(brickDir), 'stolen')));
  } finally {
    await good.close();
    await c.stop();
  }
});
