/**
 * The batcher behind PostgreSQL's token writes and lookups: the calls of one event-loop turn go together,
 * a batch that reaches `flushAt` goes at once, and each caller gets its own result or error.
 */
import { describe, expect, it } from '@jest/globals';
import { createBatcher } from '../../src/db/batcher.js';

function recording(flushAt?: number, failWhen?: (items: number[]) => boolean) {
  const batches: number[][] = [];
  const alone: number[] = [];
  const call = createBatcher<number, number>({
    async all(items) {
      batches.push(items);
      if (failWhen?.(items)) throw new Error('batch refused');
      return items.map((n) => n * 10);
    },
    async one(item) {
      alone.push(item);
      if (item < 0) throw new Error(`bad item ${item}`);
      return item * 10;
    },
    flushAt,
  });
  return { call, batches, alone };
}

describe('createBatcher', () => {
  it('sends the calls of one turn together, and those of the next turn apart', async () => {
    const { call, batches } = recording();
    const first = await Promise.all([1, 2, 3, 4, 5].map(call));
    const second = await Promise.all([6, 7].map(call));
    expect(first).toEqual([10, 20, 30, 40, 50]);
    expect(second).toEqual([60, 70]);
    expect(batches).toEqual([[1, 2, 3, 4, 5], [6, 7]]);
  });

  it('sends a batch as soon as it holds flushAt items, the rest at the end of the turn', async () => {
    const { call, batches, alone } = recording(3);
    const pending = [1, 2, 3, 4, 5, 6, 7].map(call);
    // The full batches left during the calls themselves, before the turn ended.
    expect(batches).toEqual([[1, 2, 3], [4, 5, 6]]);
    expect(await Promise.all(pending)).toEqual([10, 20, 30, 40, 50, 60, 70]);
    // The rest, a batch of one, went at the end of the turn, as the item alone.
    expect(batches).toEqual([[1, 2, 3], [4, 5, 6]]);
    expect(alone).toEqual([7]);
  });

  it('runs the items of a refused batch one by one, so a bad item fails only its own caller', async () => {
    const { call, batches, alone } = recording(3, (items) => items.some((n) => n < 0));
    const results = await Promise.allSettled([1, -2, 3, 4].map(call));
    expect(batches).toEqual([[1, -2, 3]]);
    // The refused batch's items one by one, then the last item, a batch of one, alone.
    expect(alone).toEqual([1, -2, 3, 4]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    expect((results[1] as PromiseRejectedResult).reason).toEqual(new Error('bad item -2'));
    expect((results[3] as PromiseFulfilledResult<number>).value).toBe(40);
  });
});
