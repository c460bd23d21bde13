/**
 * The one error type of wrnexus-sso. `code` is stable (OAuth-style where one fits), `status` is the HTTP
 * status a handler answers with, and `expose` says whether `message` may be shown to the user; when it
 * is false the user sees a generic text and only the log gets the detail.
 */
export class AppError extends Error {
  readonly code: string;
  readonly status: number;
  readonly expose: boolean;
  /** Why, for the audit trail and the log only (never shown to the user): which check refused. */
  readonly reason?: string;

  constructor(code: string, message: string, options: { status?: number; expose?: boolean; cause?: unknown; reason?: string } = {}) {
    super(message, { cause: options.cause });
    this.name = 'AppError';
    this.code = code;
    this.status = options.status ?? 400;
    this.expose = options.expose ?? this.status < 500;
    this.reason = options.reason;
  }
}

/**
 * Throws an AppError unless `condition` holds (Logto's `assertThat`). The error comes from a function,
 * called only when the check fails: an Error built up front captures a stack trace on every call, and on
 * the sign-in path that was ≈ 33 µs per sign-in spent on errors nobody threw.
 */
export function assertThat(condition: unknown, error: () => AppError): asserts condition {
  if (!condition) throw error();
}
