/**
 * A brick that leaves the volume (remove-brick commit) is closed by its clients only once their calls in
 * flight on it have their answers: the commit stops it after a grace, so that they do.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { Volume } from '../src/api/volume.js';
import { startCluster } from './helpers/cluster.js';

test('a read in flight on a brick when it leaves the volume gets its answer', async () => {
  const c = await startCluster(2);
  try {
    await c.pushTopology();
    const vol = await Volume.connect(c.spec, { localFiles: null });
    try {
      const data = Buffer.from('on the brick that leaves\n'.repeat(100));
      await vol.writeFile('/f', data);
      const at = (await vol.client.locate('/f')).cached;
      const i = c.spec.bricks.findIndex((b) => b.name === at);
      const h = await vol.open('/f', 'r');
      try {
        // The brick is held still, so that the read is surely in flight when the topology without it
        // comes (what the commit announces).
        const proc = c.procs[i]!;
        proc.kill('SIGSTOP');
        const buf = Buffer.alloc(data.length);
        const read = h.read(buf, 0, data.length, 0);
        for (let k = 0; k < 10; k++) await new Promise((r) => setImmediate(r));
        vol.client.adoptTopology({ version: 99, bricks: c.spec.bricks.filter((b) => b.name !== at).map(({ name, host, port }) => ({ name, host, port })), decommissioned: [] });
        proc.kill('SIGCONT');
        // Before, the connection was closed at once: ENOTCONN, 'client closed'.
        const { bytesRead } = await read;
        assert.equal(bytesRead, data.length);
        assert.ok(buf.equals(data));
        // A new call to it goes nowhere.
        assert.throws(() => vol.client.sv(at), { code: 'ESTALE' });
      } finally {
        await h.close().catch(() => {});
      }
    } finally {
      await vol.close();
    }
  } finally {
    await c.stop();
  }
});
