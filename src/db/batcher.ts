/**
 * Collects the calls made in one turn of the event loop and hands them over together, so that a burst of
 * statements costs one round trip (and, for writes, one commit) instead of one each. Every caller's
 * promise settles with its own item's result (or error): when the batch fails as a whole, the items are
 * tried one by one, in order, so a bad item fails only its own caller.
 */
export function createBatcher<T, R = void>(handlers: {
  /** The results of `items`, in their order (nothing for a batcher of writes). */
  all(items: T[]): Promise<[R] extends [void] ? void : R[]>;
  one(item: T): Promise<R>;
  /** Whether, after the batch failed with `error`, the items are worth trying alone (default: yes). */
  retryAlone?(error: unknown): boolean;
  /**
   * Sends the batch as soon as it holds this many items, without waiting for the turn to end (default:
   * never), so the store works on the first of them while this thread prepares the rest.
   */
  flushAt?: number;
}): (item: T) => Promise<R> {
  let queue: Array<{ item: T; resolve(result: R): void; reject(error: unknown): void }> = [];

  async function flush(): Promise<void> {
    const batch = queue;
    queue = [];
    // Nothing left: a flush earlier in this turn (flushAt, or the one scheduled before it) took the items.
    if (batch.length === 0) return;
    if (batch.length > 1) {
      try {
        const results = await handlers.all(batch.map((b) => b.item)) as R[] | undefined;
        batch.forEach((b, i) => b.resolve(results?.[i] as R));
        return;
      } catch (error) {
        if (handlers.retryAlone && !handlers.retryAlone(error)) {
          for (const b of batch) b.reject(error);
          return;
        }
        // Fall through: one by one.
      }
    }
    for (const b of batch) {
      try {
        b.resolve(await handlers.one(b.item));
      } catch (error) {
        b.reject(error);
      }
    }
  }

  return (item) => new Promise<R>((resolve, reject) => {
    queue.push({ item, resolve, reject });
    // setImmediate runs after this turn's I/O callbacks: every request that arrived with this one adds its
    // item first.
    if (queue.length === 1) setImmediate(() => { void flush(); });
    else if (queue.length === handlers.flushAt) void flush();
  });
}
