/**
 * The operation schema (src/wire/ops.ts): a request is decoded completely before its handler runs, so an
 * invalid one changes nothing; unknown operations are ENOSYS; decoders keep today's checks.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { Brick } from '../src/brick/brick.js';
import type { Session } from '../src/brick/core.js';
import { DiskStorage } from '../src/storage/disk.js';
import { realClock, realRandom } from '../src/common/real-env.js';
import { codeOf } from '../src/common/errors.js';
import { OPS, decodeArgs, isOp } from '../src/wire/ops.js';
import { OPS as ATTACK_OPS } from './helpers/attack.js';

const VID = '5f0e8a4c-1d2b-4c3a-9e8f-0a1b2c3d4e5f';

function brick(): { b: Brick; s: Session; dir: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-ops-'));
  const b = new Brick(new DiskStorage(dir), { name: 'v-client-0', volumeId: VID, xattrPrefix: 'user.' }, realClock, realRandom);
  b.init();
  return { b, s: b.openSession({ remote: 'test', client: 'test' }), dir };
}

async function code(p: unknown): Promise<string> {
  try {
    await p;
    return 'OK';
  } catch (e) {
    return codeOf(e);
  }
}
const call = (b: Brick, s: Session, op: string, args: Record<string, unknown>) => code(Promise.resolve().then(() => b.handle(s, op, args)));

test('an unlink with a bad optional argument is refused before it touches the file: a migration of it goes on', async () => {
  const { b, s, dir } = brick();
  try {
    const gfid = randomUUID();
    assert.equal(await call(b, s, 'create', { path: '/f', mode: 0o644, flags: 2, gfid, data: Buffer.from('hello'), close: true }), 'OK');
    const lease = (await b.handle(s, 'migLease', { path: '/f', gfid, dst: 'v-client-1', leaseMs: 60_000 })) as { token: string };
    // keepTimes was read after the unlink had aborted the file's migration: EINVAL, and the lease gone.
    assert.equal(await call(b, s, 'unlink', { path: '/f', keepTimes: 'yes' }), 'EINVAL');
    assert.equal(await call(b, s, 'migDirty', { gfid, token: lease.token }), 'OK', 'the migration is live');
    assert.ok(fs.existsSync(path.join(dir, 'f')));
    assert.equal(await call(b, s, 'unlink', { path: '/f' }), 'OK');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a request with a bad field makes nothing: every field is decoded before the handler runs', async () => {
  const { b, s, dir } = brick();
  try {
    // mkdir read `keepTimes` when it was making the directory, after the other fields.
    assert.equal(await call(b, s, 'mkdir', { path: '/d', mode: 0o755, gfid: randomUUID(), keepTimes: 1 }), 'EINVAL');
    assert.equal(fs.existsSync(path.join(dir, 'd')), false);
    // create's `close` was read only when there was data to write.
    assert.equal(await call(b, s, 'create', { path: '/g', mode: 0o644, flags: 2, gfid: randomUUID(), close: 'no' }), 'EINVAL');
    assert.equal(fs.existsSync(path.join(dir, 'g')), false);
    assert.equal(await call(b, s, 'frobnicate', {}), 'ENOSYS');
    assert.equal(await call(b, s, 'constructor', {}), 'ENOSYS');
    assert.equal(await call(b, s, '__proto__', {}), 'ENOSYS');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('decoders: -0 becomes +0, null optional fields are absent, paths become brick-relative, stray fields are dropped', () => {
  const a = decodeArgs('mkdir', { path: '/a/b', mode: -0, gfid: randomUUID(), uid: null, keepTimes: null, stray: 1, __proto__: { x: 1 } });
  assert.equal(Object.is(a.mode, 0), true);
  assert.equal(a.path, 'a/b');
  assert.equal(a.uid, undefined);
  assert.equal(a.keepTimes, false);
  assert.equal(Object.hasOwn(a, 'stray'), false);
  assert.throws(
    () => decodeArgs('lookup', { path: '/.glusterfs/00' }),
    (e) => codeOf(e) === 'EPERM',
  );
  assert.throws(
    () => decodeArgs('lookup', { path: '/' + 'x'.repeat(256) }),
    (e) => codeOf(e) === 'ENAMETOOLONG',
  );
  assert.throws(
    () => decodeArgs('setxattr', { path: '/f', name: 'user.a', value: Buffer.alloc(64 * 1024 + 1) }),
    (e) => codeOf(e) === 'E2BIG',
  );
  assert.throws(
    () => decodeArgs('mkdir', { path: '/d', mode: 0o755, gfid: '00000000-0000-0000-0000-000000000001' }),
    (e) => codeOf(e) === 'EPERM',
  );
  assert.equal(isOp('hasOwnProperty'), false);
});

test('the hostile-client generator sends every operation of the schema with its fields', () => {
  assert.deepEqual(Object.keys(ATTACK_OPS).sort(), Object.keys(OPS).sort());
  for (const [op, fields] of Object.entries(ATTACK_OPS)) assert.deepEqual(fields, Object.keys(OPS[op as keyof typeof OPS].args), op);
});
