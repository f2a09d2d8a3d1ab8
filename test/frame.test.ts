import test from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { FrameDecoder, FrameError, encodeFrame, type Message } from '../src/wire/frame.js';

test('frames round-trip whatever way the stream is cut, attachments included', () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.nat(1000), fc.string(), fc.uint8Array({ maxLength: 5000 })), { minLength: 1, maxLength: 8 }),
      fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 20 }),
      (msgs, cuts) => {
        const frames = msgs.map(([id, op, data]): Message => [0, id, op, { data: Buffer.from(data), n: id }]);
        const bytes = Buffer.concat(frames.flatMap((m) => encodeFrame(m)));
        const dec = new FrameDecoder();
        const got: Message[] = [];
        let off = 0;
        let i = 0;
        while (off < bytes.length) {
          const n = cuts[i++ % cuts.length];
          got.push(...dec.push(bytes.subarray(off, off + n)));
          off += n;
        }
        assert.equal(got.length, frames.length);
        got.forEach((m, k) => {
          assert.equal(m[1], frames[k][1]);
          assert.equal(m[2], frames[k][2]);
          const a = m[3] as { data: Uint8Array; n: number };
          assert.deepEqual(Buffer.from(a.data), (frames[k][3] as { data: Buffer }).data);
          assert.equal(a.n, msgs[k][0]);
        });
      },
    ),
    { numRuns: 300 },
  );
});

test('large data travels as an attachment, not inside msgpack', () => {
  const data = Buffer.alloc(100_000, 9);
  const parts = encodeFrame([1, 5, null, { data, attr: { size: 1 } }]);
  assert.equal(parts.length, 2);
  assert.equal(parts[1].length, 100_000);
  assert.ok(parts[0].length < 100, 'header and body stay small');
});

test('the decoder rejects oversized and inconsistent frames', () => {
  assert.throws(() => new FrameDecoder(1000).push(Buffer.from([0, 0, 0x10, 0])), FrameError);
  assert.throws(() => new FrameDecoder().push(Buffer.from([0, 0, 0, 4, 0, 0, 0, 0])), FrameError);
  assert.throws(() => new FrameDecoder().push(Buffer.from([0, 0, 0, 5, 0, 0, 0, 9, 0x90])), FrameError);
  assert.throws(() => new FrameDecoder().push(Buffer.from([0, 0, 0, 5, 0, 0, 0, 1, 0x90])), FrameError, 'empty array is not a message');
});
