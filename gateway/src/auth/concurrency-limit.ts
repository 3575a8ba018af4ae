/**
 * Runs at most `maxRunning` tasks at once; the others wait in line, first come first served, and at
 * most `maxWaiting` of them: `full` says when one more would have to be refused.
 */
export class ConcurrencyLimit {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(
    private readonly maxRunning: number,
    private readonly maxWaiting: number,
  ) {}

  get full(): boolean {
    return this.running >= this.maxRunning && this.waiting.length >= this.maxWaiting;
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.running < this.maxRunning) this.running++;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    try {
      return await task();
    } finally {
      // The slot passes straight to the next in line, so that no newcomer can take it first.
      const next = this.waiting.shift();
      if (next === undefined) this.running--;
      else next();
    }
  }
}
