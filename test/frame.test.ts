import test from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { FrameDecoder, FrameError, encodeFrame, type Message } from '../src/wire/frame.js';
import { BufferPool } from '../src/wire/pool.js';

test('frames round-trip whatever way the stream is cut, attachments included', () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.nat(1000), fc.string(), fc.uint8Array({ maxLength: 5000 })), { minLength: 1, maxLength: 8 }), fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 20 }), (msgs, cuts) => {
      const frames = msgs.map(([id, op, data]): Message => [0, id, op, { data: Buffer.from(data), n: id }]);
      const bytes = Buffer.concat(frames.flatMap((m) => encodeFrame(m)));
      const dec = new FrameDecoder();
      const got: Message[] = [];
      let off = 0;
      let i = 0;
      while (off < bytes.length) {
        const n = cuts[i++ % cuts.length];
        // The transport reuses its read buffer: the decoder may not keep a pushed chunk.
        const chunk = Buffer.from(bytes.subarray(off, off + n));
        got.push(...dec.push(chunk));
        chunk.fill(0xee);
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
    }),
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

test("a reply's attachment lands in the buffer its target names; others get a fresh one", () => {
  const into = Buffer.alloc(300_000, 1);
  const dec = new FrameDecoder(undefined, (m, len) => (m[0] === 1 && m[1] === 7 ? into.subarray(1000, 1000 + len) : null));
  const a = Buffer.alloc(200_000);
  for (let i = 0; i < a.length; i++) a[i] = i % 251;
  const bytes = Buffer.concat([...encodeFrame([1, 7, null, { data: a }]), ...encodeFrame([1, 8, null, { data: a }])]);
  const got: Message[] = [];
  for (let off = 0; off < bytes.length; off += 65536) got.push(...dec.push(bytes.subarray(off, off + 65536)));
  assert.equal(got.length, 2);
  const d7 = (got[0][3] as { data: Buffer }).data;
  const d8 = (got[1][3] as { data: Buffer }).data;
  assert.equal(d7.buffer, into.buffer, 'received in place');
  assert.equal(d7.byteOffset, into.byteOffset + 1000);
  assert.deepEqual(Buffer.from(d7), a);
  assert.deepEqual(into.subarray(0, 1000), Buffer.alloc(1000, 1), 'nothing written before the target');
  assert.notEqual(d8.buffer, into.buffer);
  assert.deepEqual(Buffer.from(d8), a);
});

test('a transport that reads into the landing zone delivers the attachment in place, whatever the read sizes', () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 1, max: 200_000 }), { minLength: 1, maxLength: 30 }), (reads) => {
      const into = Buffer.alloc(500_000);
      const dec = new FrameDecoder(undefined, (m, len) => (m[0] === 1 && m[1] === 3 ? into.subarray(0, len) : null));
      const a = Buffer.alloc(400_000);
      for (let i = 0; i < a.length; i++) a[i] = (i * 7) % 253;
      const stream = Buffer.concat([...encodeFrame([1, 3, null, { data: a }]), ...encodeFrame([1, 4, null, { ok: true }])]);
      const own = Buffer.alloc(1 << 20);
      const got: Message[] = [];
      let pos = 0;
      let landed = 0;
      for (let r = 0; pos < stream.length; r++) {
        // As tcp.ts does: the next read goes to the landing zone if the decoder names one.
        const zone = dec.landingZone();
        const buf = zone ?? own;
        const n = Math.min(reads[r % reads.length], buf.length, stream.length - pos);
        stream.copy(buf, 0, pos, pos + n);
        if (zone) landed += n;
        pos += n;
        // A chunk read into our own buffer is overwritten by the next read; the decoder must not keep it.
        got.push(...dec.push(buf.subarray(0, n)));
        if (!zone) own.fill(0xee, 0, n);
      }
      assert.equal(got.length, 2);
      const d = (got[0][3] as { data: Buffer }).data;
      assert.equal(d.buffer, into.buffer, "the data is the reader's buffer");
      assert.deepEqual(Buffer.from(d), a);
      assert.deepEqual(got[1][3], { ok: true });
      assert.ok(landed > 0 || reads.every((x) => x >= a.length), 'some reads landed in place');
    }),
    { numRuns: 60 },
  );
});

test('the buffer pool reuses what is given back, ignores foreign buffers, refuses a double give', () => {
  const pool = new BufferPool();
  const a = pool.take(1 << 20);
  assert.equal(a.length, 1 << 20);
  assert.ok(pool.owns(a) && pool.owns(a.subarray(5)));
  pool.give(a.subarray(0, 10));
  const b = pool.take(900_000);
  assert.equal(b.buffer, a.buffer, 'the block came back');
  assert.equal(b.length, 900_000);
  const c = pool.take(1 << 20);
  assert.notEqual(c.buffer, a.buffer, 'a taken block is not handed out twice');
  pool.give(Buffer.alloc(1 << 20));
  assert.ok(!pool.owns(Buffer.alloc(10)));
  assert.ok(!pool.owns(pool.take(100)), 'small buffers are not pooled');
  pool.give(b);
  assert.throws(() => pool.give(b), /twice/);
});
