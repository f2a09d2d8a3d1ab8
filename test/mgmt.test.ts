/**
 * The management path's protocol and server without a cluster (no root needed; the TLS and several hosts
 * are tested in cluster-hosts.test.ts): HOST:/NAME addresses, a node daemon's server answering from the
 * store (a started volume's client spec without its admin secret; a missing or stopped volume said so), a
 * client that skips a server that does not answer (backup-volfile-servers), and mount's options for it.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LocalStore } from '../src/cluster/local-store.js';
import { MgmtServer } from '../src/cluster/mgmt-server.js';
import { keys, type VolumeRecord } from '../src/cluster/records.js';
import { fetchSpec, parseServerList, parseVolumeAddress, serveMgmt, MGMT_PORT } from '../src/wire/mgmt.js';
import { tcpNetwork } from '../src/wire/tcp.js';
import { realClock } from '../src/common/real-env.js';
import { parseMountOptions } from '../src/cli/mount.js';

test('HOST:/NAME addresses and backup server lists', () => {
  assert.deepEqual(parseVolumeAddress('host1:/gv'), { server: { host: 'host1', port: MGMT_PORT }, volume: 'gv' });
  assert.deepEqual(parseVolumeAddress('10.0.0.1:24100:/gv'), { server: { host: '10.0.0.1', port: 24100 }, volume: 'gv' });
  assert.deepEqual(parseVolumeAddress('[fd00::1]:/gv'), { server: { host: 'fd00::1', port: MGMT_PORT }, volume: 'gv' });
  for (const not of ['gv', '/tmp/gv.json', 'host1:/a/b', 'host1:gv', 'host1:99999:/gv', ':/gv']) assert.equal(parseVolumeAddress(not), null, not);
  assert.deepEqual(parseServerList('host2:host3'), [
    { host: 'host2', port: MGMT_PORT },
    { host: 'host3', port: MGMT_PORT },
  ]);
  const o = parseMountOptions('ro,backup-volfile-servers=h2:h3,tls-dir=/etc/dhtfs/tls,_netdev');
  assert.deepEqual([o.fuse, o.volfileServers, o.tlsDir], [['ro'], 'h2:h3', '/etc/dhtfs/tls']);
});

test("a node daemon serves a started volume's client spec; a dead server is skipped, a missing or stopped volume is said", async () => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'dhtfs-mgmt-'));
  const store = new LocalStore(path.join(base, 'store.json'));
  const logs: string[] = [];
  const srv = new MgmtServer(store, tcpNetwork, realClock, (_l, m) => logs.push(m));
  const dead = await tcpNetwork.listen('127.0.0.1', 0, (c) => c.close());
  const deadPort = dead.port;
  await dead.close();
  try {
    const v: VolumeRecord = { name: 'gv', volumeId: 'id-1', secret: 's3cret', adminSecret: 'admin', state: 'started', bricks: [{ name: 'gv-client-0', node: 'n1', host: '10.0.0.1', dir: '/b0', port: 49152 }], decommissioned: [], version: 3 };
    await store.commit([
      { key: keys.volume('gv'), value: JSON.stringify(v) },
      { key: keys.volume('off'), value: JSON.stringify({ ...v, name: 'off', state: 'stopped' }) },
    ]);
    const port = await srv.listen('127.0.0.1', 0);
    const timer = (ms: number, fn: () => void) => realClock.setTimer(ms, fn);
    const got = await fetchSpec(
      tcpNetwork,
      [
        { host: '127.0.0.1', port: deadPort },
        { host: '127.0.0.1', port },
      ],
      'gv',
      timer,
    );
    assert.equal(got.server.port, port);
    assert.deepEqual(got.spec, { name: 'gv', volumeId: 'id-1', secret: 's3cret', bricks: [{ name: 'gv-client-0', host: '10.0.0.1', port: 49152 }], decommissioned: [], version: 3 });
    assert.ok(
      logs.some((l) => /mgmt: spec of gv given to 127\.0\.0\.1:\d+/.test(l)),
      logs.join('\n'),
    );
    await assert.rejects(fetchSpec(tcpNetwork, [{ host: '127.0.0.1', port }], 'nosuch', timer), /volume nosuch does not exist/);
    await assert.rejects(fetchSpec(tcpNetwork, [{ host: '127.0.0.1', port }], 'off', timer), /volume off is not started/);
    await assert.rejects(fetchSpec(tcpNetwork, [{ host: '127.0.0.1', port: deadPort }], 'gv', timer), /no volume server gave the spec of gv: 127\.0\.0\.1:\d+: /);
    // auth.ssl-allow: only the named certificates get the spec (the name is the TLS session's; none over TCP).
    await store.commit([{ key: keys.volume('gv'), value: JSON.stringify({ ...v, sslAllow: ['alice'] }) }]);
    assert.equal((await srv.answer({ op: 'getSpec', volume: 'gv' }, 'r:1', 'alice')).ok, true);
    assert.deepEqual(await srv.answer({ op: 'getSpec', volume: 'gv' }, 'r:1', 'carol'), { ok: false, error: "volume gv is not for this client's certificate (carol; auth.ssl-allow)", code: 'EACCES' });
    await assert.rejects(
      fetchSpec(
        tcpNetwork,
        [
          { host: '127.0.0.1', port },
          { host: '127.0.0.1', port },
        ],
        'gv',
        timer,
      ),
      /not for this client's certificate \(none; auth\.ssl-allow\)/,
    );
    assert.ok(
      logs.some((l) => /mgmt: spec of gv refused to r:1 \(certificate carol\): not in the volume's auth\.ssl-allow/.test(l)),
      logs.join('\n'),
    );
  } finally {
    await srv.close();
    await store.close();
    fs.rmSync(base, { recursive: true, force: true });
  }
});

test('the management server closes a connection that sends no request in time, and answers a malformed one with EINVAL', async () => {
  const fired: (() => void)[] = [];
  const l = await serveMgmt(
    tcpNetwork,
    '127.0.0.1',
    0,
    (_ms, fn) => (fired.push(fn), { cancel: () => {} }),
    async () => ({ ok: false, error: 'not reached' }),
  );
  try {
    const idle = await tcpNetwork.connect('127.0.0.1', l.port);
    const closed = new Promise<void>((r) => idle.onClose(() => r()));
    while (fired.length === 0) await new Promise((r) => setTimeout(r, 10));
    fired[0](); // the request's time is up
    await closed;
    const bad = await tcpNetwork.connect('127.0.0.1', l.port);
    let got = '';
    bad.onData((d) => (got += d.toString()));
    const done = new Promise<void>((r) => bad.onClose(() => r()));
    bad.write([Buffer.from('{"op":"rm -rf"}\n')]);
    await done;
    assert.deepEqual(JSON.parse(got), { ok: false, error: 'bad request', code: 'EINVAL' });
  } finally {
    await l.close();
  }
});
