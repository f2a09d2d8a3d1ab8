// The brick's directory watches (src/brick/watch.ts): a request whose reply waits for watchers'
// acknowledgements, and that fails while it waits, fails for its client and nothing else. A rejection
// left without a handler while the acknowledgements were awaited ended the brick's process (seen in
// rebalance-walk.test: an rm of a directory the rebalancer was settling took two bricks down).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DirWatches, type Watcher } from '../src/brick/watch.js';
import { realClock } from '../src/common/real-env.js';
import { FsError } from '../src/common/errors.js';

function watcher(events: { id: number }[]): Watcher {
  return { watching: new Set(), notify: (_kind, payload) => events.push(payload as { id: number }) };
}

test('a request that fails while its reply waits for acknowledgements is rejected, with no unhandled rejection', async () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown) => unhandled.push(e);
  process.on('unhandledRejection', onUnhandled);
  try {
    const w = new DirWatches(realClock);
    const events: { id: number }[] = [];
    const other = watcher(events);
    const origin = watcher([]);
    w.add(other, 'd');
    const r = w.run(origin, () => {
      w.changedIn('d');
      // The request goes on after its first change, and fails later (as a rm that meets ENOENT).
      return new Promise((_, reject) => setImmediate(() => reject(new FsError('ENOENT', 'getxattr /d/sub'))));
    });
    assert.ok(r instanceof Promise, 'the reply waits');
    assert.equal(events.length, 1, 'the other watcher was told');
    // The acknowledgement comes well after the request failed.
    await new Promise((resolve) => setTimeout(resolve, 50));
    w.ack(events[0].id);
    await assert.rejects(r as Promise<unknown>, { code: 'ENOENT' });
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(unhandled, [], 'no rejection went without a handler');
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
});

test('a request that succeeds while its reply waits for acknowledgements answers its value after them', async () => {
  const w = new DirWatches(realClock);
  const events: { id: number }[] = [];
  const other = watcher(events);
  w.add(other, 'd');
  let acked = false;
  const r = w.run(watcher([]), () => {
    w.changedIn('d');
    return Promise.resolve(7);
  });
  setTimeout(() => {
    acked = true;
    w.ack(events[0].id);
  }, 20);
  assert.equal(await (r as Promise<unknown>), 7);
  assert.ok(acked, 'the reply came after the acknowledgement');
});
