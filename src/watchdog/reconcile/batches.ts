/**
 * How many GitHub reads one detection keeps in flight: enough to hide the round trip of
 * hundreds of conditional GETs, few enough not to look like a burst to GitHub's secondary
 * rate limits.
 */
export const READS_IN_FLIGHT = 4;

/** Maps `items` through `work`, READS_IN_FLIGHT at a time, keeping their order. */
export async function inBatches<T, R>(
  items: readonly T[],
  work: (item: T) => Promise<R>,
  inFlight = READS_IN_FLIGHT,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  // After a failure the other lanes take no new item: the caller is already failing.
  const lane = async () => {
    while (next < items.length && !failed) {
      const index = next++;
      try {
        results[index] = await work(items[index] as T);
      } catch (error) {
        failed = true;
        throw error;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(inFlight, items.length) }, lane));
  return results;
}
