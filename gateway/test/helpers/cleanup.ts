// Stops what the helpers start (gateways in this process, gateway processes) even when a test fails
// midway, before it reaches its own stop: whatever is started during a test (or its beforeEach) is
// stopped after that test, whatever a beforeAll started after the file, unless stopped already.
// Jest runs these hooks after those of the file's describe blocks but before the file's top-level
// after-hooks (they are declared first, on import), so a stop registered here must be idempotent:
// the file's afterAll may call it again.

type Stop = () => Promise<unknown>;

const perTest = new Set<Stop>();
const perFile = new Set<Stop>();
let inTest = false;

/** Registers `stop` for the end of the current test, or of the file; returns a function that forgets it. */
export function stopAfterwards(stop: Stop): () => void {
  const owner = inTest ? perTest : perFile;
  owner.add(stop);
  return () => owner.delete(stop);
}

/** Runs every stop, latest first, and throws the first failure once all have run. */
async function stopAll(stops: Set<Stop>): Promise<void> {
  const pending = [...stops].reverse();
  stops.clear();
  const failures: unknown[] = [];
  for (const stop of pending) {
    try {
      await stop();
    } catch (error) {
      failures.push(error);
    }
  }
  if (failures.length > 0) throw failures[0];
}

// Only under jest: bench/ imports no helper today, but a script that does must not fail on import.
if (typeof afterEach === 'function') {
  beforeEach(() => {
    inTest = true;
  });
  afterEach(async () => {
    inTest = false;
    await stopAll(perTest);
  });
  afterAll(() => stopAll(perFile));
}
