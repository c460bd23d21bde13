/** bcrypt off the event loop (src/auth/bcrypt-pool.ts): hashing leaves the request thread free. */
import { afterAll, describe, expect, it } from '@jest/globals';
import { readdirSync, readFileSync } from 'node:fs';
import { getPriority } from 'node:os';
import bcrypt from 'bcryptjs';
import { bcryptPool, closeBcryptPool, WORKER_NICE } from '../../src/auth/bcrypt-pool.js';

/** nice value of each thread of this process (Linux /proc; field 19 of stat). */
const threadNices = () => readdirSync('/proc/self/task').map((tid) => Number(readFileSync(`/proc/self/task/${tid}/stat`, 'utf8').split(') ')[1]!.split(' ')[16]));

describe('bcrypt worker pool', () => {
  afterAll(async () => { await closeBcryptPool(); });

  it('hashes and compares like bcryptjs while the event loop keeps turning', async () => {
    const pool = bcryptPool();
    let turns = 0;
    let spinning = true;
    const spin = () => { turns += 1; if (spinning) setImmediate(spin); };
    setImmediate(spin);
    const hash = await pool.hash('correct horse', 10);
    const [right, wrong] = await Promise.all([pool.compare('correct horse', hash), pool.compare('wrong horse', hash)]);
    spinning = false;
    expect(right).toBe(true);
    expect(wrong).toBe(false);
    expect(bcrypt.compareSync('correct horse', hash)).toBe(true);
    // Hashing on this thread would have left no room for a single turn until it was done.
    expect(turns).toBeGreaterThan(10);
  });

  // Thread priorities are per thread on Linux only.
  (process.platform === 'linux' ? it : it.skip)('runs its workers at a lower priority than the request thread', async () => {
    const main = getPriority(); // this thread's own nice value (the test runs on the main thread)
    await bcryptPool().compare('x', await bcryptPool().hash('x', 4));
    const lowered = Math.min(19, main + WORKER_NICE);
    expect(lowered).toBeGreaterThan(main); // else the process already runs at the lowest priority
    expect(threadNices()).toContain(lowered);
    expect(getPriority()).toBe(main);
  });
});
