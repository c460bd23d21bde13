import type { Context } from 'koa';
import type { RequestFacts } from '../auth/audit.js';

/** Where a request came from, for the audit trail and the throttle. */
export const requestFacts = (ctx: Context, clientId?: unknown): RequestFacts & { ip: string } => ({
  ip: ctx.ip,
  userAgent: ctx.get('user-agent') || undefined,
  clientId: typeof clientId === 'string' ? clientId : undefined,
  requestId: (ctx.state as { requestId?: string }).requestId,
});
