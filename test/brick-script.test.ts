/**
 * The brick's contract as data-driven scripts (test/scripts/brick/*.txt; the runner and the language are
 * in test/helpers/script.ts): requests, replies and the disk tree with its xattrs after them, over
 * simulated storage with crashes. `UPDATE_GOLDEN=1` rewrites the expected outputs from the code's.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { playScript } from './helpers/script.js';

const dir = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'test', 'scripts', 'brick');
const update = process.env.UPDATE_GOLDEN === '1';

for (const f of fs
  .readdirSync(dir)
  .filter((n) => n.endsWith('.txt'))
  .sort()) {
  test(`brick script ${f}`, async () => {
    const wrong = await playScript(path.join(dir, f), update);
    if (update) return;
    assert.deepEqual(
      wrong.slice(0, 3).map((w) => `${w.command}\n----\n${w.got}`),
      wrong.slice(0, 3).map((w) => `${w.command}\n----\n${w.expected}`),
      `${wrong.length} blocks of ${f} differ (UPDATE_GOLDEN=1 rewrites them; review the diff)`,
    );
  });
}
