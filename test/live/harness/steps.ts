/**
 * Waiting for live data, and saying what was seen when it never came.
 */

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Thrown when a condition did not hold in time; the message holds the last value seen. */
export class StepFailed extends Error {
  constructor(stepName: string, detail: string) {
    super(`live-signal step "${stepName}" failed: ${detail}`);
    this.name = 'StepFailed';
  }
}

function show(value: unknown): string {
  const text = typeof value === 'string' ? value : JSON.stringify(value, null, 1);
  return text.length > 3000 ? `${text.slice(0, 3000)}…` : text;
}

/**
 * Polls `read` until `accept` holds for its value, and returns that value. After `timeoutMs` it throws a
 * {@link StepFailed} naming the step and the last value (or error) it saw.
 */
export async function eventually<T>(
  stepName: string,
  read: () => Promise<T>,
  accept: (value: T) => boolean,
  timeoutMs = 20_000,
  intervalMs = 500,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: { value?: T; error?: Error } = {};
  while (true) {
    try {
      const value = await read();
      if (accept(value)) return value;
      last = { value };
    } catch (error) {
      last = { error: error as Error };
    }
    if (Date.now() >= deadline) break;
    await sleep(intervalMs);
  }
  const saw = last.error ? `the last attempt threw: ${last.error.message}` : `the last value seen was ${show(last.value)}`;
  throw new StepFailed(stepName, `not reached within ${timeoutMs} ms; ${saw}`);
}

/** Runs one step; a failure is rethrown with the step's name and `context` (e.g. the query that was run). */
export async function step<T>(name: string, run: () => Promise<T> | T, context?: () => string): Promise<T> {
  try {
    return await run();
  } catch (error) {
    if (error instanceof StepFailed) throw error;
    const extra = context ? `\n${context()}` : '';
    throw new StepFailed(name, `${(error as Error).message}${extra}`);
  }
}

export { show };
